// The agent console: the lists, one conversation, live over a WebSocket. Vanilla JS modules, no build step.
import { CHANNEL_NAMES, api, agentName, badge, el, signOutButton, state } from "./dom.js";
import { renderPane } from "./conversation.js";

function waited(since) {
  if (!since) return "";
  const minutes = Math.max(0, Math.round((Date.now() / 1000 - since) / 60));
  return minutes < 1 ? "just now" : `${minutes} min`;
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
    renderPane(await api(`/conversations/${encodeURIComponent(state.current)}`), { refresh, leave });
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
  document.getElementById("to-campaigns").hidden = !state.me.campaigns;
  signOutButton(document.getElementById("signout"));
  if (!state.me.handles && state.me.campaigns) {  // a marketer: campaigns are all the console holds for them
    location.replace("/console/campaigns");
    return;
  }
  if (!state.me.handles) {
    document.getElementById("live").textContent = "";
    document.getElementById("pane").replaceChildren(el("p", { class: "empty" },
      `A ${state.me.role} has nothing to handle here: the console is for agents, supervisors and marketers.`));
    return;
  }
  document.addEventListener("keydown", keys);
  state.current = decodeURIComponent(location.hash.slice(1)) || null;
  await refresh();
  connect();
}

start();
