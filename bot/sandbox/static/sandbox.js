/* The sandbox page: one phone-like pane per channel. Each pane plays one customer through its
   channel's emulator — POST <emulator>/_/inbound for what the customer does, a long-polled
   GET <emulator>/_/outbox/<user> for what the bot sent — and shows the bot's messages the way that
   channel shows them. Plain JavaScript with no build step and no CDN: the page must work on an
   offline machine, straight from the Python package. */
"use strict";

const POLL_SECONDS = 25;
const RETRY_MS = 2000;
const RECEIPT_CHECKS_MS = [600, 1200, 2500, 5000]; // receipts arrive ~0.2 s apart in the sandbox
const DEFAULT_NAME = "Anna";
const TICKS = {queued: "…", sent: "✓", delivered: "✓✓", read: "✓✓", failed: "failed", undelivered: "failed"};
const FINAL = new Set(["read", "failed", "undelivered"]);

/* What differs per channel: the identity fields it carries, how the bot's buttons show ("inline"
   under the message, a "keyboard" under the input, or "numbered" options already in the text),
   whether the provider reports receipts, and how a customer's action becomes the emulator's
   /_/inbound body (the same bodies as bot/sandbox/client.py inbound_body). */
const CHANNELS = {
  telegram: {
    title: "Telegram",
    fields: [
      {key: "user", label: "Chat id", inputmode: "numeric"},
      {key: "name", label: "Name"},
      {key: "language", label: "Language hint", choices: ["en", "ru"]},
      {key: "phone", label: "Phone to share", type: "tel"},
    ],
    buttons: "inline",
    receipts: false, // Telegram tells a bot nothing about delivery or reading
    body(who, act) {
      const body = {user_id: who.user, first_name: who.name, language_code: who.language};
      if (act.button !== undefined) body.callback_data = act.button;
      else if (act.phone !== undefined) body.contact_phone = act.phone;
      else body.text = act.text;
      return body;
    },
  },
  whatsapp: {
    title: "WhatsApp",
    fields: [{key: "user", label: "Phone", type: "tel"}, {key: "name", label: "Profile name"}],
    note: "The same phone as on SMS: one customer.",
    buttons: "numbered",
    receipts: true,
    body: (who, act) => ({channel: "whatsapp", from: who.user, text: act.text, profile_name: who.name}),
  },
  viber: {
    title: "Viber",
    fields: [
      {key: "user", label: "Viber id"},
      {key: "name", label: "Name"},
      {key: "language", label: "Language hint", choices: ["en", "ru"]},
    ],
    buttons: "keyboard",
    receipts: true,
    body(who, act) {
      const body = {user_id: who.user, name: who.name, language: who.language};
      if (act.button !== undefined) body.button_payload = act.button;
      else body.text = act.text;
      return body;
    },
  },
  sms: {
    title: "SMS",
    fields: [{key: "user", label: "Phone", type: "tel"}],
    note: "SMS carries no name. The same phone as on WhatsApp: one customer.",
    buttons: "numbered",
    receipts: true,
    segments: true,
    body: (who, act) => ({channel: "sms", from: who.user, text: act.text}),
  },
};

/** A DOM element; strings among `children` become text nodes, so no message is ever parsed as HTML. */
function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else if (value === true) node.setAttribute(key, "");
    else if (value !== undefined && value !== false) node.setAttribute(key, value);
  }
  node.append(...children.filter((child) => child !== null && child !== undefined));
  return node;
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
const clock = (date) => date.toLocaleTimeString([], {hour: "2-digit", minute: "2-digit"});

async function postJson(url, body) {
  const response = await fetch(url, {
    method: "POST",
    headers: {"content-type": "application/json"},
    body: JSON.stringify(body),
  });
  return {ok: response.ok, status: response.status, answer: await response.json().catch(() => ({}))};
}

/** "UCS-2 · 2 segments", as the hub counts them (bot/rendering.py sms_info, via /sandbox/sms-info). */
async function smsInfo(text) {
  const {ok, answer} = await postJson("/sandbox/sms-info", {text});
  if (!ok) throw new Error("sms-info failed");
  return {
    summary: `${answer.encoding} · ${answer.segments} segment${answer.segments === 1 ? "" : "s"}`,
    detail: `${answer.units} ${answer.encoding === "GSM-7" ? "septets" : "UTF-16 units"}`,
  };
}

class Pane {
  constructor(channel, setup, phone) {
    this.channel = channel;
    this.spec = CHANNELS[channel];
    this.emulator = setup.emulator;
    this.who = {user: setup.user, name: DEFAULT_NAME, language: "en", phone};
    this.generation = 0; // bumped when the customer changes: stale polls and checks stop
    this.after = 0; // the last outbox seq seen for this customer
    this.unread = new Map(); // seq -> ticks element of bot messages not yet read (or failed)
    this.receiptRound = 0;
    this.following = false; // a receipt check loop is running
    this.abort = null; // stops the current long poll
    this.element = this.render();
  }

  // --- the pane ---------------------------------------------------------------------------------
  render() {
    this.log = el("ol", {class: "log", role: "log", "aria-label": "Messages", "aria-live": "polite"});
    this.input = el("input", {type: "text", "aria-label": "Message", placeholder: "Message",
                              autocomplete: "off", enterkeyhint: "send"});
    this.controls = [this.input, el("button", {type: "submit", class: "send"}, "Send")];
    const composer = el("form", {class: "composer", onsubmit: (event) => this.submit(event)}, ...this.controls);
    const extra = [];
    if (this.channel === "telegram") {
      const share = el("button", {type: "button", class: "share", onclick: () => this.sharePhone()}, "Share phone");
      this.controls.push(share);
      extra.push(el("div", {class: "reply-keyboard"}, share));
    }
    if (this.spec.segments) {
      this.counter = el("p", {class: "counter", "aria-live": "polite"});
      this.input.addEventListener("input", () => this.count());
      extra.push(this.counter);
    }
    this.keyboard = el("div", {class: "keyboard", role: "group", "aria-label": "Keyboard", hidden: true});
    this.identity = el("span", {});
    const summary = el("summary", {}, this.identity, el("span", {class: "edit", "aria-hidden": "true"}, "edit"));
    this.showIdentity();
    return el("section", {class: `phone phone--${this.channel}`, "aria-label": this.spec.title},
      el("header", {class: "bar"},
        el("span", {class: "avatar", "aria-hidden": "true"}, "O"),
        el("span", {class: "peer"}, el("strong", {}, "Omnishop"), el("small", {}, this.spec.title))),
      el("details", {class: "who"}, summary,
        el("div", {class: "fields"}, ...this.spec.fields.map((field) => this.field(field))),
        this.spec.note ? el("p", {class: "hint"}, this.spec.note) : null),
      this.log, ...extra, composer, this.keyboard);
  }

  field({key, label, type, inputmode, choices}) {
    const id = `${this.channel}-${key}`;
    const control = choices
      ? el("select", {id}, ...choices.map((c) => el("option", {value: c, selected: c === this.who[key]}, c)))
      : el("input", {id, type: type || "text", inputmode, value: this.who[key], autocomplete: "off"});
    control.addEventListener("change", () => this.changeIdentity(key, control.value.trim()));
    return el("div", {class: "field"}, el("label", {for: id}, label), control);
  }

  showIdentity() {
    const name = this.spec.fields.some((f) => f.key === "name") ? `${this.who.name} · ` : "";
    this.identity.textContent = `Customer: ${name}${this.who.user}`;
  }

  changeIdentity(key, value) {
    if (!value || value === this.who[key]) return;
    this.who[key] = value;
    this.showIdentity();
    if (key === "user") this.start(); // another customer: a new chat
  }

  setReady(ready) {
    for (const control of this.controls) control.disabled = !ready;
    this.element.setAttribute("aria-busy", String(!ready));
  }

  scrollDown() {
    this.log.scrollTop = this.log.scrollHeight;
  }

  note(text, kind = "info") {
    const item = el("li", {class: `note note--${kind}`}, text);
    this.log.append(item);
    this.scrollDown();
    return item;
  }

  bubble(side, text, time) {
    const meta = el("span", {class: "meta"}, el("time", {}, clock(time)));
    const item = el("li", {class: `msg msg--${side}`},
      el("div", {class: "bubble"},
        el("span", {class: "visually-hidden"}, side === "bot" ? "Bot: " : "You: "),
        el("p", {class: "text"}, text), meta));
    this.log.append(item);
    this.scrollDown();
    if (this.spec.segments && text) this.measure(meta, text);
    return item;
  }

  async measure(meta, text) {
    try {
      const info = await smsInfo(text);
      meta.prepend(el("span", {class: "segments", title: info.detail}, info.summary));
    } catch {
      // the message is shown anyway; only its segment count is missing
    }
  }

  async count() {
    const text = this.input.value;
    const info = text ? await smsInfo(text).catch(() => null) : null;
    if (text === this.input.value) this.counter.textContent = info ? `${info.summary} (${info.detail})` : "";
  }

  // --- what the customer does -------------------------------------------------------------------
  submit(event) {
    event.preventDefault();
    const text = this.input.value.trim();
    if (!text) return;
    this.input.value = "";
    if (this.counter) this.counter.textContent = "";
    this.bubble("me", text, new Date());
    this.send({text});
  }

  press(button) {
    if (this.spec.buttons === "inline") this.note(`You pressed “${button.title}”`, "press");
    else this.bubble("me", button.title, new Date()); // a Viber keyboard button sends a reply
    this.send({button: button.payload});
  }

  sharePhone() {
    this.bubble("me", `Shared contact: ${this.who.name}, ${this.who.phone}`, new Date());
    this.send({phone: this.who.phone});
  }

  async send(act) {
    try {
      const {ok, status, answer} = await postJson(`${this.emulator}/_/inbound`, this.spec.body(this.who, act));
      if (!ok) this.note(`Not sent: ${answer.error || `the emulator answered HTTP ${status}`}`, "error");
      else if (answer.status >= 300) {
        const detail = answer.body && answer.body.detail ? `: ${answer.body.detail}` : "";
        this.note(`The hub refused the message (HTTP ${answer.status}${detail})`, "error");
      }
    } catch (error) {
      this.note(`Not sent: could not reach the hub (${error.message})`, "error");
    }
  }

  // --- what the bot sends -----------------------------------------------------------------------
  async start() {
    if (this.abort) this.abort.abort();
    this.abort = new AbortController();
    const generation = ++this.generation;
    this.unread.clear();
    this.showKeyboard([]);
    this.log.replaceChildren(el("li", {class: "note"}, "Say hello — “hi” or “где мой заказ?”"));
    this.setReady(false);
    this.listen(generation, this.abort.signal);
  }

  async outbox(after, wait, signal) {
    const user = encodeURIComponent(this.who.user);
    const response = await fetch(`${this.emulator}/_/outbox/${user}?after=${after}&wait=${wait}`, {signal});
    if (!response.ok) throw new Error(`the outbox answered HTTP ${response.status}`);
    return (await response.json()).items;
  }

  /** Twilio keeps a phone's SMS and WhatsApp messages in one outbox; each records its channel. */
  mine(item) {
    return item.raw.channel === undefined || item.raw.channel === this.channel;
  }

  /** Long-poll the outbox: first where it ends now (earlier messages belong to an earlier visit),
      then every new message. */
  async listen(generation, signal) {
    let baseline = true;
    let offline = null;
    while (generation === this.generation) {
      let items;
      try {
        items = await this.outbox(this.after, baseline ? 0 : POLL_SECONDS, signal);
      } catch {
        if (signal.aborted) return;
        offline = offline || this.note("Lost the connection to the hub; retrying…", "error");
        await sleep(RETRY_MS);
        continue;
      }
      if (offline) offline.remove();
      offline = null;
      const last = items.reduce((seq, item) => Math.max(seq, item.seq), this.after);
      const fresh = baseline ? [] : items.filter((item) => this.mine(item));
      fresh.forEach((item) => this.show(item));
      this.after = last;
      if (baseline) this.setReady(true);
      baseline = false;
      if (fresh.length && this.spec.receipts) this.followReceipts(generation);
    }
  }

  show(item) {
    const message = this.bubble("bot", item.text || "", new Date(item.at * 1000));
    const body = message.querySelector(".bubble");
    for (const media of item.media) body.insertBefore(el("p", {class: "media"}, `Attachment: ${media}`), body.lastChild);
    if (this.spec.buttons === "inline" && item.buttons.length) {
      message.append(el("div", {class: "inline-keyboard", role: "group", "aria-label": "Buttons"},
        ...item.buttons.map((button) => el("button", {type: "button", onclick: () => this.press(button)}, button.title))));
    }
    if (this.spec.buttons === "keyboard") this.showKeyboard(item.buttons); // each message sets or clears it
    if (this.spec.receipts) {
      const ticks = el("span", {class: "ticks"});
      message.querySelector(".meta").append(ticks);
      this.unread.set(item.seq, ticks);
      this.receipt(item);
    }
  }

  showKeyboard(buttons) {
    this.keyboard.replaceChildren(
      ...buttons.map((button) => el("button", {type: "button", onclick: () => this.press(button)}, button.title)));
    this.keyboard.hidden = !buttons.length;
  }

  receipt(item) {
    const ticks = this.unread.get(item.seq);
    if (!ticks) return;
    ticks.textContent = TICKS[item.status] || item.status;
    ticks.title = item.status;
    ticks.setAttribute("aria-label", item.status);
    ticks.className = `ticks ticks--${item.status}`;
    if (FINAL.has(item.status) || (this.channel === "sms" && item.status === "delivered")) this.unread.delete(item.seq);
  }

  /** The outbox long poll only reports new messages; a few re-reads pick up their receipts. A new
      message restarts the rounds. */
  async followReceipts(generation) {
    this.receiptRound = 0;
    if (this.following) return;
    this.following = true;
    try {
      while (this.receiptRound < RECEIPT_CHECKS_MS.length && this.unread.size && generation === this.generation) {
        await sleep(RECEIPT_CHECKS_MS[this.receiptRound++]);
        const oldest = Math.min(...this.unread.keys());
        const items = await this.outbox(oldest - 1, 0).catch(() => []);
        if (generation === this.generation) items.forEach((item) => this.receipt(item));
      }
    } finally {
      this.following = false;
    }
  }
}

function livePane(channel) {
  return el("section", {class: `phone phone--${channel} phone--off`, "aria-label": CHANNELS[channel].title},
    el("header", {class: "bar"}, el("span", {class: "peer"}, el("strong", {}, CHANNELS[channel].title))),
    el("p", {class: "off"}, "This channel runs with real credentials: chat with the bot in the real app."));
}

async function boot() {
  const root = document.getElementById("phones");
  try {
    const response = await fetch("/sandbox/config");
    if (!response.ok) throw new Error(`HTTP ${response.status}`);
    const config = await response.json();
    const setups = new Map(config.channels.map((setup) => [setup.channel, setup]));
    const panes = [...setups.keys()].map((channel) => new Pane(channel, setups.get(channel), config.phone));
    const byChannel = new Map(panes.map((pane) => [pane.channel, pane]));
    root.replaceChildren(...Object.keys(CHANNELS).map(
      (channel) => (byChannel.has(channel) ? byChannel.get(channel).element : livePane(channel))));
    panes.forEach((pane) => pane.start());
  } catch (error) {
    root.replaceChildren(el("p", {class: "loading"}, `Could not load the sandbox (${error.message}).`));
  }
}

/** The demo campaign: a cascade through the panes (bot/sandbox/page.py demo_campaign). */
function demoButton() {
  const button = document.getElementById("demo-campaign");
  const status = document.getElementById("demo-status");
  button.addEventListener("click", async () => {
    button.disabled = true;
    const {ok, answer} = await postJson("/sandbox/demo-campaign", {});
    status.textContent = ok ? `Campaign ${answer.id}: ${answer.recipients} customer(s); watch the panes.`
      : (answer.detail || "the demo campaign could not start");
    button.disabled = false;
  });
}

boot();
demoButton();
