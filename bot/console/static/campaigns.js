// The Campaigns page: the list, one campaign's funnel per channel, its figures, pause / resume / cancel.
// The figures are polled every 2 s while a campaign runs (the live socket carries conversation notices).
import { CHANNEL_NAMES, api, badge, el, signOutButton, state } from "./dom.js";
import { funnel } from "./funnel.js";

const RUNNING_EVERY = 2000, IDLE_EVERY = 15000;
const STATUS_NAMES = { draft: "Draft", running: "Running", paused: "Paused", done: "Done", cancelled: "Cancelled" };
const STAGES = [["sent", "Sent"], ["delivered", "Delivered"], ["read", "Read"], ["replied", "Replied"],
  ["converted", "Converted"]];
const COLUMNS = [["sent", "Sent"], ["delivered", "Delivered"], ["read", "Read"], ["replied", "Replied"],
  ["converted", "Converted"], ["failed", "Failed"], ["skipped", "Skipped"], ["late_reads", "Late reads"],
  ["cost", "Cost"], ["cost_per_conversion", "Cost per conversion"], ["median_seconds_to_read", "Median time to read"]];
const page = { items: [], current: null, detail: null, timer: null };

const channelName = (channel) => (channel === "none" ? "No channel" : CHANNEL_NAMES[channel] || channel);
const when = (epoch) => (epoch ? new Date(epoch * 1000).toLocaleString([], { dateStyle: "short", timeStyle: "short" }) : "—");

function duration(seconds) {
  if (seconds === null || seconds === undefined) return "—";
  if (seconds < 90) return `${Math.round(seconds)} s`;
  if (seconds < 5400) return `${Math.round(seconds / 60)} min`;
  return `${(seconds / 3600).toFixed(1)} h`;
}

function cell(key, value) {
  if (key === "median_seconds_to_read") return duration(value);
  if (key === "cost" || key === "cost_per_conversion") return value === null ? "—" : value.toFixed(2);
  return String(value);
}

function progress(item) {
  if (item.progress === null) return item.status === "draft" ? "not started" : "—";
  return el("span", { class: "progress" },
    el("progress", { max: Math.max(1, item.recipients), value: item.progress,
      "aria-label": `${item.name}: ${item.progress} of ${item.recipients} settled` }),
    ` ${item.progress} / ${item.recipients}`);
}

function renderList() {
  const body = document.querySelector("#campaign-list tbody");
  body.replaceChildren(...page.items.map((item) => el("tr", { class: item.id === page.current ? "current" : "" },
    el("th", { scope: "row" }, el("button", { type: "button", class: "link", onclick: () => open(item.id),
      "aria-current": item.id === page.current ? "true" : "false" }, item.name)),
    el("td", {}, el("span", { class: `status ${item.status}` }, STATUS_NAMES[item.status] || item.status)),
    el("td", { class: "n" }, String(item.recipients)),
    el("td", {}, progress(item)),
    el("td", {}, when(item.started_at)))));
  if (!page.items.length) {
    body.append(el("tr", {}, el("td", { colSpan: 5, class: "none" },
      "No campaigns yet: define one with omnihub campaign run FILE or POST /api/v1/campaigns.")));
  }
}

function say(message) {
  const alert = document.querySelector("#campaign [role=alert]");
  if (alert) alert.textContent = message;
}

async function steer(id, action) {
  if (action === "cancel" && !window.confirm("Cancel this campaign? Steps still due will not be sent.")) return;
  try { await api(`/campaigns/${encodeURIComponent(id)}/${action}`, {}); say(""); } catch (error) { say(error.message); }
  await refresh();
}

function controls(campaign) {
  const buttons = [];
  if (campaign.status === "running") buttons.push(["pause", "Pause"]);
  if (campaign.status === "paused") buttons.push(["resume", "Resume"]);
  if (["draft", "running", "paused"].includes(campaign.status)) buttons.push(["cancel", "Cancel campaign"]);
  return el("div", { class: "actions" },
    ...buttons.map(([action, label]) => el("button", { type: "button", class: action,
      onclick: () => steer(campaign.id, action) }, label)),
    el("a", { class: "export", href: `/console/api/campaigns/${encodeURIComponent(campaign.id)}/stats.csv`,
      download: `${campaign.id}.csv` }, "Export CSV"));
}

function funnels(campaign, figures) {
  const all = [["audience", "Audience", figures.recipients], ...STAGES.map(([key, label]) => [key, label, figures.totals[key]])];
  const charts = [el("figure", { class: "chart" }, el("figcaption", {}, "All channels"),
    funnel("All channels funnel", all.map(([key, label, value]) => ({ key, label, value })), "all"))];
  for (const [channel, counted] of Object.entries(figures.channels)) {
    if (channel === "none") continue;  // skipped before any channel was chosen: in the table and the reasons
    charts.push(el("figure", { class: "chart" }, el("figcaption", {}, badge(channel)),
      funnel(`${channelName(channel)} funnel`, STAGES.map(([key, label]) => ({ key, label, value: counted[key] })),
        channel)));
  }
  return el("section", { class: "funnels", "aria-label": "Funnel per channel" }, ...charts);
}

function table(figures) {
  const rows = [...Object.entries(figures.channels), ["all", figures.totals]];
  return el("table", { class: "figures", "aria-label": "Figures per channel" },
    el("thead", {}, el("tr", {}, el("th", { scope: "col" }, "Channel"),
      ...COLUMNS.map(([, label]) => el("th", { scope: "col" }, label)))),
    el("tbody", {}, ...rows.map(([channel, counted]) => el("tr", { class: channel === "all" ? "total" : "" },
      el("th", { scope: "row" }, channel === "all" ? "All channels" : channelName(channel)),
      ...COLUMNS.map(([key]) => el("td", { class: "n", "data-metric": key }, cell(key, counted[key])))))));
}

function reasons(figures) {
  const found = Object.entries(figures.skipped_because).sort((a, b) => b[1] - a[1]);
  return el("section", { class: "reasons", "aria-labelledby": "skipped-title" },
    el("h3", { id: "skipped-title" }, "Skipped because"),
    found.length ? el("ul", { "aria-labelledby": "skipped-title" },
      ...found.map(([why, count]) => el("li", {}, `${why}: ${count}`))) : el("p", { class: "meta" }, "Nobody was skipped."));
}

function steps(definition) {
  return el("ol", { class: "steps", "aria-label": "Steps" }, ...definition.steps.map((step) => el("li", {},
    `${step.channel === "preferred" ? "Preferred channel" : channelName(step.channel)} · until ${step.until} · within ${duration(step.within)}`)));
}

function renderDetail() {
  const pane = document.getElementById("campaign");
  const { campaign, figures } = page.detail;
  pane.replaceChildren(
    el("header", {}, el("h2", {}, campaign.name),
      el("span", { class: `status ${campaign.status}`, "aria-label": `Status: ${STATUS_NAMES[campaign.status]}` },
        STATUS_NAMES[campaign.status] || campaign.status), controls(campaign)),
    el("p", { class: "error", role: "alert" }),
    el("p", { class: "meta" }, `${campaign.purpose} · ${campaign.recipients} recipients · started ${when(campaign.started_at)}`
      + (campaign.pending !== null ? ` · ${campaign.pending} steps still due` : "")),
    steps(campaign.definition), funnels(campaign, figures), table(figures), reasons(figures));
}

async function open(id) {
  page.current = id;
  history.replaceState(null, "", `#${encodeURIComponent(id)}`);
  await refresh();
}

async function refresh() {
  const list = await api("/campaigns");
  page.items = list.items;
  renderList();
  if (!page.current) return;
  const alert = document.querySelector("#campaign [role=alert]");
  const kept = alert ? alert.textContent : "";
  try {
    page.detail = await api(`/campaigns/${encodeURIComponent(page.current)}`);
    renderDetail();
    say(kept);  // a refusal stays on screen across the next poll
  } catch (error) {
    page.detail = null;
    document.getElementById("campaign").replaceChildren(el("p", { class: "empty" }, `No such campaign: ${error.message}`));
  }
}

function schedule() {  // poll fast while something runs, slowly otherwise (a campaign started elsewhere appears)
  const running = page.items.some((item) => item.status === "running");
  const live = document.getElementById("live");
  live.textContent = running ? "Live · every 2 s" : "Up to date";
  live.className = running ? "live on" : "live";
  page.timer = setTimeout(async () => { await refresh().catch(() => {}); schedule(); },
    running ? RUNNING_EVERY : IDLE_EVERY);
}

async function start() {
  state.me = await api("/me");
  document.getElementById("who").textContent = `${state.me.name} · ${state.me.role}`;
  document.getElementById("to-conversations").hidden = !state.me.handles;
  signOutButton(document.getElementById("signout"));
  if (!state.me.campaigns) {
    document.getElementById("live").textContent = "";
    document.getElementById("campaign").replaceChildren(el("p", { class: "empty" },
      `A ${state.me.role} has no campaigns to see here: the page is for marketers, supervisors and admins.`));
    return;
  }
  page.current = decodeURIComponent(location.hash.slice(1)) || null;
  await refresh();
  schedule();
}

start();
