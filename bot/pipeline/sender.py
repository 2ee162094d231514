"""The sender: decide whether an outbound message may go out, render it for its channel, hand it to
the connector, record the outcome. `bot.pipeline.dispatch` feeds it one contact's messages in order.

A retryable refusal (429, 5xx, network) is retried with exponential backoff, honouring the provider's
`retry_after`, and only that contact waits; a permanent one fails the message with the provider's
reason. When the provider says the whole sender is throttled (Twilio, Viber: their 429 is never about
one recipient) the sender's rate bucket is paused, so every worker holds back, not only this one.
Sends are paced by the rate limits in Redis (`bot.pipeline.ratelimit`).

The outcome (status, provider id, SMS segments, encoding, cost, template, error) goes onto the
message's history entry and the stream entry is acknowledged in the same round trip, as soon as the
message is sent — a status callback may follow within a fraction of a second and must find the
provider id there. The acknowledgement and the feed's `message.sent` / `message.failed` are one
script on the partition's slot: the event is appended only if this XACK finished the entry.

This is the one place that decides whether a message may go out at all, so no path (bot, agent,
campaign, API) can skip the checks:

- consent (`bot.context.consent`): a message whose purpose the contact refused on its channel is
  not sent; its entry becomes `st: "blocked"` with the reason. Replies to SMS keywords are exempt.
- the WhatsApp 24-hour window: a free-form message to a contact whose last WhatsApp message is older
  than 24 hours is replaced by the approved template `twilio.whatsapp_fallback_template` (a Content
  SID whose variable "1" gets the first 100 characters of the text, ending in "…" when cut), or fails
  with the reason when none is configured. A message that is a template already goes out as it is.

At-least-once towards the provider: a process killed while a send is in flight leaves that entry
pending, and the next owner sends it again. No provider API takes an idempotency key, so this window
cannot be closed; it is one message per contact, as small as one HTTP round trip, and `XPENDING` on
the stream shows it. A message queued without a history entry (not a bot reply) gets its entry right
after the acknowledgement.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Mapping
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import NoScriptError

from bot.context import consent, keys, whatsapp_window
from bot.context.history import Delivery, HistoryEntry
from bot.context.store import Changes, ContextStore
from bot.context.whatsapp_window import SEEN_WHATSAPP
from bot.crm.derive import outcome_event
from bot.models import Channel, OutboundMessage, Reply, Template
from bot.pipeline.dispatch import Dispatch, Held
from bot.pipeline.ratelimit import RateLimiter
from bot.pipeline.streams import Backoff, pause
from bot.redis_server import REDIS_FAILURES
from bot.rendering import RenderedPart, render
from connectors.base import Connector, SendError

log = logging.getLogger(__name__)
TEMPLATE_PREVIEW = 100  # characters of the text passed to the fallback template
# Channels whose "too many requests" is about the sender (account, number, bot), never one recipient.
# Telegram's 429 is per chat: a bot over its global limit is kept below it by its rate bucket.
SENDER_THROTTLES: frozenset[Channel] = frozenset({"sms", "whatsapp", "viber"})


# KEYS: the lane stream, the partition's feed; ARGV: group, entry id, event JSON, contact id.
_ACK_AND_EMIT = """
local acked = redis.call('XACK', KEYS[1], ARGV[1], ARGV[2])
if acked == 1 then redis.call('XADD', KEYS[2], '*', 'e', ARGV[3], 'c', ARGV[4]) end
return acked
"""
RECORD_GRACE_SECONDS = 10.0  # how long a sent message's outcome is retried after its partition was handed over


class Halted(Exception):
    """The partition was handed over while a message waited: it stays pending for the next owner."""


class Sender:
    def __init__(
        self,
        redis: Redis,
        store: ContextStore,
        connectors: dict[Channel, Connector],
        batch: int,
        attempts: int,
        concurrency: int,
        limiter: RateLimiter,
        whatsapp_template: str | None = None,
        prices: Mapping[str, float] | None = None,
    ) -> None:
        """`prices` (`sms_cost`) per channel: per SMS segment, per message part elsewhere;
        `concurrency`: contacts sending at once per partition (bulk gets a share of its own)."""
        self.redis = redis
        self.store = store
        self.connectors = connectors
        self.batch = batch
        self.attempts = attempts
        self.concurrency = concurrency
        self.limiter = limiter
        self.whatsapp_template = whatsapp_template
        self.prices = dict(prices or {})
        self._ack_and_emit = redis.register_script(_ACK_AND_EMIT)

    async def run(self, p: int, halt: asyncio.Event) -> None:
        await Dispatch(self.redis, p, self, self.batch, self.concurrency, halt).run()

    async def send(self, held: Held, slots: asyncio.Semaphore, halt: asyncio.Event, bulk: bool = False) -> bool:
        """Deliver one entry and record its outcome, which acknowledges it. False if the partition was
        handed over first: the entry stays pending and its next owner sends it."""
        backoff = Backoff()
        while True:
            try:
                outcome = await self.deliver(held.message, slots, halt, bulk)
                break
            except Halted:
                return False
            except REDIS_FAILURES as exc:  # the checks could not read the profile: nothing went out yet
                log.warning("send %s waits for Redis (%s)", held.message.id, exc)
            except Exception:  # a bug must not stall the contact's queue for good
                log.exception("send %s failed unexpectedly", held.message.id)
                outcome = {"st": "failed", "err": "not sent: internal error"}
                break
            await pause(halt, backoff.next_delay())
            if halt.is_set():
                return False
        return await self._record(held, outcome, halt)

    async def _record(self, held: Held, outcome: dict[str, Any], halt: asyncio.Event) -> bool:
        """Write the outcome and acknowledge, until Redis takes it (a sent message must not be sent
        again because Redis blinked); a message queued without a history entry (a campaign or API
        send) gets its entry now, so that every send, and every refusal, is in the history."""
        backoff, gave_up_at = Backoff(), None
        while True:
            try:
                if not await self._update_and_ack(held, outcome):
                    entry = HistoryEntry.outbound(held.message, time.time()).delivered(Delivery.model_validate(outcome))
                    await self.store.commit(held.message.contact_id, Changes(history=[entry]))
                return True
            except REDIS_FAILURES as exc:
                # Handed over (or Redis away longer than a lease) after the message went out: keep
                # trying for a while rather than leave it pending for the next owner to send again —
                # this process takes the partition back only once this task has finished.
                gave_up_at = gave_up_at or (time.monotonic() + RECORD_GRACE_SECONDS if halt.is_set() else None)
                if gave_up_at is not None and time.monotonic() > gave_up_at:
                    return False
                log.warning("outcome of %s waits for Redis (%s)", held.message.id, exc)
                await asyncio.sleep(backoff.next_delay())

    async def _update_and_ack(self, held: Held, outcome: dict[str, Any]) -> bool:
        """One round trip: the outcome onto the history entry, then XACK with its event; False if there
        is no entry."""
        message, match = held.message, ("id", held.message.id)
        ack_keys = [held.stream, keys.events(held.partition)]
        event = outcome_event(message, outcome).body()
        ack_args: list[str | bytes] = [keys.GROUP, held.entry_id, event, message.contact_id]
        async with self.redis.pipeline(transaction=False) as pipe:
            await self.store.update_history(message.contact_id, match, outcome, client=pipe)
            # raw EVALSHA, as in ContextStore.update_history: no SCRIPT EXISTS round trip first
            pipe.execute_command("EVALSHA", self._ack_and_emit.sha, 2, *ack_keys, *ack_args)
            found, acked = await pipe.execute(raise_on_error=False)
        if isinstance(found, NoScriptError):  # Redis restarted and forgot the script: load it again
            found = await self.store.update_history(message.contact_id, match, outcome) is not None
        if isinstance(acked, NoScriptError):
            acked = await self._ack_and_emit(keys=ack_keys, args=ack_args)
        for result in (found, acked):
            # NOGROUP: Redis lost the group, and the entry with it; nothing is left to acknowledge
            if isinstance(result, Exception) and "NOGROUP" not in str(result):
                raise result
        return bool(found)

    async def deliver(
        self, message: OutboundMessage, slots: asyncio.Semaphore, halt: asyncio.Event, bulk: bool = False
    ) -> dict[str, Any]:
        """Check the message may go out, send every rendered part; return what to record on its entry."""
        connector = self.connectors.get(message.channel)
        if connector is None:
            return {"st": "failed", "err": f"channel {message.channel} is not enabled"}
        profile = await self._profile(message)
        refusal = None if message.keyword_reply else consent.refusal(profile, message.channel, message.purpose)
        if refusal:
            return {"st": "blocked", "err": f"not sent: {refusal}"}
        reply, noted = message.reply, {}
        closed = message.channel == "whatsapp" and not whatsapp_window.is_open(profile.get(SEEN_WHATSAPP))
        if closed and reply.template is None:
            if self.whatsapp_template is None:
                return {"st": "failed", "err": "not sent: outside the WhatsApp 24-hour window, and no "
                        "twilio.whatsapp_fallback_template is configured"}
            reply = Reply(template=Template(name=self.whatsapp_template, variables=_preview(reply)))
            noted = {"tpl": self.whatsapp_template}
        parts = render(reply, connector.capabilities)
        return {**noted, **await self._send(message, connector, parts, slots, halt, bulk)}

    async def _profile(self, message: OutboundMessage) -> dict[str, str]:
        """The profile fields the checks read, and only those."""
        names = [consent.field(message.channel, message.purpose), SEEN_WHATSAPP]
        values = await self.redis.hmget(keys.contact(message.contact_id), names)
        return {name: str(value) for name, value in zip(names, values, strict=True) if value is not None}

    async def _send(
        self, message: OutboundMessage, connector: Connector, parts: list[RenderedPart],
        slots: asyncio.Semaphore, halt: asyncio.Event, bulk: bool,
    ) -> dict[str, Any]:
        provider_ids: list[str] = []
        for part in parts:
            try:
                provider_id = await self._send_part(message, connector, part, slots, halt, bulk)
            except SendError as exc:
                log.warning("send %s on %s failed: %s", message.id, message.channel, exc)
                return {"st": "failed", "err": str(exc)}
            if provider_id:
                provider_ids.append(provider_id)
        outcome: dict[str, Any] = {"st": "sent", "pid": provider_ids[-1] if provider_ids else ""}
        segments = [part.sms for part in parts if part.sms]
        units = len(parts)
        if segments:
            units = sum(s.segments for s in segments)
            outcome.update(seg=units, enc=segments[0].encoding)
        if message.channel in self.prices:
            outcome["cost"] = round(units * self.prices[message.channel], 6)
        return outcome

    async def _send_part(
        self, message: OutboundMessage, connector: Connector, part: RenderedPart,
        slots: asyncio.Semaphore, halt: asyncio.Event, bulk: bool,
    ) -> str | None:
        """One part, paced and retried; a slot is held only while the provider is being asked, so a
        contact waiting out a refusal leaves room for the others."""
        attempt = 1
        while True:
            if not await self.limiter.wait(message.channel, message.user_id, halt, bulk):
                raise Halted
            async with slots:
                try:
                    return await connector.send(message.user_id, part)
                except SendError as exc:
                    refusal = exc
            if refusal.permanent or attempt >= self.attempts:
                raise refusal
            delay = refusal.retry_after if refusal.retry_after is not None else min(0.2 * 2**attempt, 10.0)
            if refusal.retry_after is not None and message.channel in SENDER_THROTTLES:
                await self.limiter.pause_sender(message.channel, delay)
            await pause(halt, delay + random.uniform(0, 0.05))
            if halt.is_set():
                raise Halted
            attempt += 1


def _preview(reply: Reply) -> dict[str, str]:
    """The fallback template's variables: {"1": the text, cut to TEMPLATE_PREVIEW characters}."""
    text = (reply.text or "").strip()
    if len(text) > TEMPLATE_PREVIEW:
        text = text[: TEMPLATE_PREVIEW - 1].rstrip() + "…"
    return {"1": text} if text else {}
