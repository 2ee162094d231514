// One conversation: the history with channel badges and ticks, the actions, the reply box, the profile.
import { CHANNEL_NAMES, act, agentName, badge, el, state } from "./dom.js";

const TICKS = { queued: "🕓", sent: "✓", delivered: "✓✓", read: "✓✓", failed: "✗", undelivered: "✗", blocked: "⛔" };
const REPLY_HINT = "Write to the customer… (Enter sends)";

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

function transferForm(view, leave) {  // to an online colleague (an absent one would bounce it back), or a queue
  const chosen = document.querySelector("#pane select.transfer-to");
  const options = [el("option", { value: "" }, "Transfer to…"),
    ...state.agents.filter((a) => a.id !== view.assignee && a.online)
      .map((a) => el("option", { value: `agent:${a.id}` }, a.name)),
    ...state.teams.map((t) => el("option", { value: `team:${t}` }, `Team ${t} (queue)`))];
  const select = el("select", { class: "transfer-to", "aria-label": "Transfer to" }, ...options);
  if (chosen) select.value = chosen.value;  // a live re-render keeps what the agent was choosing
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

function replyForm(view, canned, refresh) {
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

export function renderPane(data, { refresh, leave }) {
  const view = data.conversation;
  const mineNow = view.assignee === state.me.id;
  const answers = view.mode === "assigned" && (mineNow || state.me.oversees);
  const actions = el("div", { class: "actions" },
    view.mode === "queued" ? el("button", { type: "button", onclick: async () => {
      if (await act(`/conversations/${view.id}/claim`)) await refresh();
    } }, "Claim") : null,
    view.mode !== "resolved" ? transferForm(view, leave) : null,
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
    footer.replaceChildren(replyForm(view, data.canned, refresh));
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
