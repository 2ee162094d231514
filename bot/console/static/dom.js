// What every part of the console shares: the signed-in agent's state, the API, building DOM nodes.
// Data goes on the page with textContent, never as HTML.

export const CHANNEL_NAMES = { telegram: "Telegram", whatsapp: "WhatsApp", sms: "SMS", viber: "Viber" };
export const state = { me: null, current: null, lists: { queue: [], mine: [], others: [] }, agents: [], teams: [], order: [] };

export function el(tag, props = {}, ...children) {
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

export async function api(path, body) {
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

export function say(message) {
  const status = document.querySelector("#pane [role=alert]");
  if (status) status.textContent = message;
}

export async function act(path, body = {}) {
  try { await api(path, body); say(""); return true; } catch (error) { say(error.message); return false; }
}

export function badge(channel) {
  return el("span", { class: `badge ${channel || ""}` }, CHANNEL_NAMES[channel] || channel || "?");
}

export function agentName(id) {
  const agent = state.agents.find((a) => a.id === id);
  return agent ? agent.name : id;
}

export function signOutButton(button) {  // ends the session (its CSRF token proves this page asked), then the form
  button.addEventListener("click", async () => {
    await fetch("/console/logout", { method: "POST", credentials: "same-origin",
      headers: { "X-CSRF-Token": state.me.csrf } }).catch(() => {});
    location.assign("/console/login");
  });
}
