// The agent console: lists, one conversation, live over a WebSocket. Vanilla JS, no build step.
// All data comes from /console/api as JSON and is put on the page with textContent, never as HTML.
"use strict";

const CHANNEL_NAMES = { telegram: "Telegram", whatsapp: "WhatsApp", sms: "SMS", viber: "Viber" };
const TICKS = { queued: "🕓", sent: "✓", delivered: "✓✓", read: "✓✓", failed: "✗", undelivered: "✗", blocked: "⛔" };
const REPLY_HINT = "Write to the customer… (Enter sends)";
const state = { me: null, current: null, lists: { queue: [], mine: [], others: [] }, agents: [], teams: [], order: [] };

function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (key === "class") node.className = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else if (key in node) node[key] = value;
    else node.setAttribute(key, value);
  }
  for (const child of children) if (child !== null && child !== undefined) node.append(child);
  return node;
}

async function api(path, body) {
  const options = { credentials: "same-origin", headers: {} };
  if (body !== undefined) {
    options.method = "POST";
    options.headers = { "Content-Type": "application/json", "X-CSRF-Token": state.me ? state.me.csrf : "" };
    options.body = JSON.stringify(body);
  }
  const response = await fetch(`/console/api${path}`, options);
  if (response.status === 401) { location.assign("/console/login"); throw new Error("signed out"); }
  const answer = await response.json().catch(() => ({}));
  if (!response.ok) throw new Error(answer.detail || `${response.status}`);
  return answer;
}

function say(message) {
  const status = document.querySelector("#pane [role=alert]");
  if (status) status.textContent = message;
}

async function act(path, body = {}) {
  try { await api(path, body); say(""); return true; } catch (error) { say(error.message); return false; }
}

// --- lists ------------------------------------------------------------------------------------------
function badge(channel) {
  return el("span", { class: `badge ${channel || ""}` }, CHANNEL_NAMES[channel] || channel || "?");
}

function waited(since) {
  if (!since) return "";
  const minutes = Math.max(0, Math.round((Date.now() / 1000 - since) / 60));
  return minutes < 1 ? "just now" : `${minutes} min`;
}

function agentName(id) {
  const agent = state.agents.find((a) => a.id === id);
  return agent ? agent.name : id;
}

function renderList(name, items, breaches) {
  const list = document.getElementById(name);
  list.replaceChildren(...items.map((view) => {
    const late = breaches.has(view.contact_id);
    const label = `${view.name || view.user_id || view.contact_id} · ${CHANNEL_NAMES[view.channel] || view.channel}`;
    return el("li", { class: view.id === state.current ? "current" : "" },
      el("button", { type: "button", class: "item", "data-id": view.id, onclick: () => open(view.id) },
        badge(view.channel), el("span", { class: "who" }, view.name || view.user_id || view.contact_id),
        el("span", { class: "meta" }, name === "others" ? `with ${agentName(view.assignee)}`
          : view.mode === "queued" ? `${view.team || ""} · ${waited(view.queued_at)}` : view.team || ""),
        late ? el("span", { class: "late", title: "SLA breached" }, "SLA") : null,
        el("span", { class: "visually-hidden" }, ` (${label})`)));
  }));
  if (!items.length) list.append(el("li", { class: "none" }, name === "queue" ? "Nobody is waiting." : "None."));
}

function renderAgents() {
  document.getElementById("agents").replaceChildren(...state.agents.map((a) =>
    el("li", {}, el("span", { class: a.online ? "dot on" : "dot" }, a.online ? "online" : "offline"),
      ` ${a.name} · ${a.load}/${a.capacity} · ${a.teams.join(", ")}`)));
}

async function loadLists() {
  const [lists, people] = await Promise.all([api("/conversations"), api("/agents")]);
  state.lists = { queue: lists.queue, mine: lists.mine, others: lists.others || [] };
  state.agents = people.agents;
  state.teams = people.teams;
  const breaches = new Set(lists.sla_breaches || []);
  for (const name of ["queue", "mine", "others"]) renderList(name, state.lists[name], breaches);
  state.order = [...state.lists.mine, ...state.lists.queue, ...state.lists.others].map((v) => v.id);
  if (state.me.oversees) renderAgents();
}

// --- one conversation ---------------------------------------------------------------------------------
function entryItem(entry) {
  const note = entry.direction === "note";
  const who = note ? `Internal note · ${agentName(entry.agent_id)}`
    : entry.author === "agent" ? agentName(entry.agent_id) : entry.author;
  const tick = entry.direction === "out" && entry.status
    ? el("span", { class: `tick ${entry.status}`, "aria-label": entry.status, title: entry.status },
      TICKS[entry.status] || entry.status) : null;
  const text = entry.text || (entry.payload ? `[button ${entry.payload}]` : "[attachment]");
  return el("li", { class: `entry ${note ? "note" : entry.direction}` },
    el("div", { class: "head" }, badge(entry.channel), ` ${who} · ${new Date(entry.at * 1000).toLocaleTimeString()}`),
    el("div", { class: "text" }, text),
    entry.buttons && entry.buttons.length
      ? el("div", { class: "buttons" }, entry.buttons.map((b) => b.title).join(" · ")) : null,
    entry.template ? el("div", { class: "meta" }, `sent as template ${entry.template}`) : null,
    entry.error ? el("div", { class: "meta" }, entry.error) : null, tick);
}

function transferForm(view) {
  const options = [el("option", { value: "" }, "Transfer to…"),
    ...state.agents.filter((a) => a.id !== view.assignee).map((a) => el("option", { value: `agent:${a.id}` }, a.name)),
    ...state.teams.map((t) => el("option", { value: `team:${t}` }, `Team ${t} (queue)`))];
  const select = el("select", { "aria-label": "Transfer to" }, ...options);
  return el("form", { class: "transfer", onsubmit: async (event) => {
    event.preventDefault();
    const [kind, target] = [select.value.split(":")[0], select.value.slice(select.value.indexOf(":") + 1)];
    if (!select.value) return;
    const body = kind === "agent" ? { agent_id: target } : { team: target };
    if (await act(`/conversations/${view.id}/transfer`, body)) {
      await (kind === "agent" ? leave(`Transferred to ${agentName(target)}.`) : leave(`Back in the ${target} queue.`));
    }
  } }, select, el("button", { type: "submit" }, "Transfer"));
}

function replyForm(view, canned) {
  const text = el("textarea", { "aria-label": "Reply", rows: 3, placeholder: REPLY_HINT });
  const asNote = el("input", { type: "checkbox", onchange: () => {
    form.classList.toggle("as-note", asNote.checked);
    text.placeholder = asNote.checked ? "Internal note: only agents see it (Enter adds it)" : REPLY_HINT;
  } });
  const buttons = el("input", { "aria-label": "Quick replies", placeholder: "Quick replies, comma-separated" });
  const link = el("input", { "aria-label": "Attachment link", type: "url", placeholder: "https://… (attachment link)" });
  const pick = el("select", { "aria-label": "Canned response", onchange: () => {
    if (pick.value !== "") { text.value = canned[Number(pick.value)].text; pick.value = ""; text.focus(); }
  } }, el("option", { value: "" }, "Canned response…"), ...canned.map((c, i) => el("option", { value: i }, c.title)));
  const form = el("form", { class: "reply", "aria-label": "Reply to the customer", onsubmit: async (event) => {
    event.preventDefault();
    if (!text.value.trim()) return;
    const ok = asNote.checked
      ? await act(`/conversations/${view.id}/notes`, { text: text.value })
      : await act(`/conversations/${view.id}/reply`, { text: text.value, attachment: link.value || null,
        buttons: buttons.value.split(",").map((b) => b.trim()).filter(Boolean) });
    if (ok) { text.value = ""; buttons.value = ""; link.value = ""; await refresh(); }
  } }, text,
  el("div", { class: "row" }, pick, buttons, link),
  el("div", { class: "row" }, el("label", { class: "note-toggle" }, asNote, " Internal note (never sent)"),
    el("button", { type: "submit" }, "Send")));
  text.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) { event.preventDefault(); form.requestSubmit(); }
  });
  return form;
}

function windowNotice(view, template) {
  if (view.channel !== "whatsapp" || view.window_open !== false) return null;
  const offer = template
    ? ` Send your reply as the approved template “${template}” (your text, up to 100 characters, fills it in).`
    : " No template is configured (twilio.whatsapp_fallback_template), so a reply cannot be delivered now.";
  return el("p", { class: "window", role: "note" },
    `WhatsApp's 24-hour window is closed: the customer last wrote more than 24 hours ago.${offer}`);
}

function paneParts(id) {  // the pane's parts, kept while it shows one conversation
  const pane = document.getElementById("pane");
  if (pane.dataset.conversation !== id) {
    pane.replaceChildren(el("header"), el("p", { class: "error", role: "alert" }), el("div"),
      el("ol", { class: "history", role: "log", "aria-label": "History" }), el("div", { class: "footer" }));
    pane.dataset.conversation = id;
  }
  return pane.children;
}

function renderPane(data) {
  const view = data.conversation;
  const mineNow = view.assignee === state.me.id;
  const answers = view.mode === "assigned" && (mineNow || state.me.oversees);
  const actions = el("div", { class: "actions" },
    view.mode === "queued" ? el("button", { type: "button", onclick: async () => {
      if (await act(`/conversations/${view.id}/claim`)) await refresh();
    } }, "Claim") : null,
    view.mode !== "resolved" ? transferForm(view) : null,
    answers ? el("button", { type: "button", onclick: async () => {
      if (await act(`/conversations/${view.id}/resolve`)) await leave("Resolved: the customer is asked for a rating.");
    } }, "Resolve") : null);
  const status = view.mode === "assigned" ? `assigned to ${mineNow ? "you" : agentName(view.assignee)}` : view.mode;
  const [header, , notice, log, footer] = paneParts(view.id);
  header.replaceChildren(el("h2", {}, view.name || view.user_id || view.contact_id), badge(view.channel),
    el("span", { class: "meta" }, ` ${status} · team ${view.team || "—"}${view.handoff_reason
      ? ` · ${view.handoff_reason}` : ""}`), actions);
  notice.replaceChildren(...[windowNotice(view, data.whatsapp_template)].filter(Boolean));
  log.replaceChildren(...data.history.map(entryItem));
  log.scrollTop = log.scrollHeight;
  if (!answers) {  // live re-renders keep the reply form, and with it what the agent is typing
    footer.replaceChildren(el("p", { class: "empty" }, view.mode === "queued" ? "Claim the conversation to answer."
      : "This conversation is not with you."));
  } else if (!footer.querySelector("form.reply")) {
    footer.replaceChildren(replyForm(view, data.canned));
  }
  const send = footer.querySelector("form.reply button[type=submit]");
  if (send) send.textContent = view.window_open === false && data.whatsapp_template ? "Send as template" : "Send";
  renderProfile(data.profile);
}

function renderProfile(profile) {
  const rows = (pairs) => el("dl", {}, ...pairs.flatMap(([k, v]) => [el("dt", {}, k), el("dd", {}, v)]));
  const consent = Object.entries(profile.consent).flatMap(([channel, purposes]) =>
    Object.entries(purposes).map(([purpose, value]) => [`${CHANNEL_NAMES[channel] || channel} ${purpose}`, value]));
  document.getElementById("profile").replaceChildren(
    el("h2", {}, "Profile"),
    rows([["Name", profile.name || "—"], ["Phone", profile.phone || "—"], ["Language", profile.language || "—"],
      ["Channels", profile.identities.map((i) => CHANNEL_NAMES[i.channel] || i.channel).join(", ") || "—"],
      ...(profile.csat ? [["Rating", profile.csat]] : [])]),
    el("h3", {}, "Attributes"), rows(Object.entries(profile.attributes)),
    el("h3", {}, "Tags"), el("p", { class: "tags" }, ...profile.tags.map((t) => el("span", { class: "tag" }, t))),
    el("h3", {}, "Consent"), consent.length ? rows(consent) : el("p", { class: "meta" }, "Nothing recorded."));
}

async function open(id) {
  state.current = id;
  history.replaceState(null, "", `#${encodeURIComponent(id)}`);
  await refresh();
  const box = document.querySelector("#pane textarea");
  if (box) box.focus();
}

async function leave(message) {  // the conversation left this agent: say what became of it
  state.current = null;
  history.replaceState(null, "", location.pathname);
  const pane = document.getElementById("pane");
  delete pane.dataset.conversation;
  pane.replaceChildren(el("p", { class: "empty", "aria-live": "polite" }, message));
  document.getElementById("profile").replaceChildren();
  await loadLists();
}

async function refresh() {
  await loadLists();
  if (!state.current) return;
  try {
    renderPane(await api(`/conversations/${encodeURIComponent(state.current)}`));
  } catch (error) {  // gone from this agent's view (transferred away, resolved and a new one began)
    delete document.getElementById("pane").dataset.conversation;
    document.getElementById("pane").replaceChildren(el("p", { class: "empty" }, `This conversation is closed to you: ${error.message}`));
    document.getElementById("profile").replaceChildren();
  }
}

// --- live ---------------------------------------------------------------------------------------------
let pending = null;
function soon() {  // a burst of notices becomes one re-fetch
  if (!pending) pending = setTimeout(() => { pending = null; refresh().catch(() => {}); }, 50);
}

function connect(delay = 500) {
  const socket = new WebSocket(`${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/console/live`);
  const live = document.getElementById("live");
  let ping = null;
  socket.onopen = () => { live.textContent = "Live"; live.className = "live on"; delay = 500; soon();
    ping = setInterval(() => socket.send("ping"), 20000); };
  socket.onmessage = () => soon();
  socket.onclose = () => {
    clearInterval(ping);
    live.textContent = "Reconnecting…"; live.className = "live";
    setTimeout(() => connect(Math.min(delay * 2, 10000)), delay);
  };
}

function keys(event) {
  if (event.altKey && (event.key === "ArrowDown" || event.key === "ArrowUp") && state.order.length) {
    event.preventDefault();
    const at = state.order.indexOf(state.current);
    const next = event.key === "ArrowDown" ? at + 1 : at - 1;
    open(state.order[(next + state.order.length) % state.order.length]);
  } else if (event.key === "/" && !["TEXTAREA", "INPUT", "SELECT"].includes(document.activeElement.tagName)) {
    const box = document.querySelector("#pane textarea");
    if (box) { event.preventDefault(); box.focus(); }
  }
}

async function start() {
  state.me = await api("/me");
  document.getElementById("who").textContent = `${state.me.name} · ${state.me.role} · ${state.me.teams.join(", ")}`;
  document.getElementById("overseer").hidden = !state.me.oversees;
  document.getElementById("signout").addEventListener("click", async () => {
    await fetch("/console/logout", { method: "POST", credentials: "same-origin",
      headers: { "X-CSRF-Token": state.me.csrf } }).catch(() => {});
    location.assign("/console/login");
  });
  if (!state.me.handles) {
    document.getElementById("live").textContent = "";
    document.getElementById("pane").replaceChildren(el("p", { class: "empty" },
      `A ${state.me.role} has no conversations to handle here: the console is for agents and supervisors.`));
    return;
  }
  document.addEventListener("keydown", keys);
  state.current = decodeURIComponent(location.hash.slice(1)) || null;
  await refresh();
  connect();
}

start();
