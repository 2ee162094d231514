"""The sender side of a partition: render each outbound message for its channel and hand it to the connector.

Messages of one contact go out strictly in order; different contacts concurrently (bounded). A
retryable refusal (429, 5xx, network) is retried with exponential backoff, honouring the provider's
`retry_after`; a permanent one fails the message with the provider's reason. The outcome (provider
id, status, SMS segments, encoding and cost) is written onto the message's history entry as soon as
the message is sent — a status callback may follow within a fraction of a second and must find the
provider id there — and the stream entries are acknowledged after the batch.

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
cannot be closed; it is as small as one HTTP round trip, and `XPENDING` on the stream shows it.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections import defaultdict
from collections.abc import Mapping
from typing import Any

from redis.asyncio import Redis

from bot.context import consent, keys
from bot.context.history import Delivery, HistoryEntry
from bot.context.store import Changes, ContextStore
from bot.models import Channel, OutboundMessage, Reply, Template
from bot.pipeline.streams import Entry, consume
from bot.rendering import RenderedPart, render
from connectors.base import Connector, SendError

log = logging.getLogger(__name__)
WHATSAPP_WINDOW_SECONDS = 24 * 3600
SEEN_WHATSAPP = "seen:whatsapp"  # profile field: epoch of the contact's last WhatsApp message (set by the turn)
TEMPLATE_PREVIEW = 100  # characters of the text passed to the fallback template


class Sender:
    def __init__(
        self,
        redis: Redis,
        store: ContextStore,
        connectors: dict[Channel, Connector],
        batch: int,
        attempts: int,
        concurrency: int,
        whatsapp_template: str | None = None,
        prices: Mapping[str, float] | None = None,
    ) -> None:
        """`prices` (`sms_cost`) per channel: per SMS segment, per message part elsewhere."""
        self.redis = redis
        self.store = store
        self.connectors = connectors
        self.batch = batch
        self.attempts = attempts
        self.whatsapp_template = whatsapp_template
        self.prices = dict(prices or {})
        self._slots = asyncio.Semaphore(concurrency)

    async def run(self, p: int, halt: asyncio.Event) -> None:
        await consume(self.redis, keys.outbound(p), f"p{p}", self.batch, halt, lambda e: self._batch(p, e))

    async def _batch(self, p: int, entries: list[Entry]) -> None:
        by_contact: dict[str, list[OutboundMessage]] = defaultdict(list)
        for _, fields in entries:
            message = OutboundMessage.model_validate_json(fields["m"])
            by_contact[message.contact_id].append(message)
        await asyncio.gather(*(self._contact(messages) for messages in by_contact.values()))
        await self.redis.xack(keys.outbound(p), keys.GROUP, *(entry_id for entry_id, _ in entries))

    async def _contact(self, messages: list[OutboundMessage]) -> None:
        async with self._slots:
            for message in messages:
                await self._record(message, await self.deliver(message))

    async def _record(self, message: OutboundMessage, outcome: dict[str, Any]) -> None:
        """Write the outcome on the message's history entry; a message queued without one (a campaign
        or API send) gets its entry now, so that every send, and every refusal, is in the history."""
        if not await self.store.update_history(message.contact_id, ("id", message.id), outcome):
            entry = HistoryEntry.outbound(message, time.time()).delivered(Delivery.model_validate(outcome))
            await self.store.commit(message.contact_id, Changes(history=[entry]))

    async def deliver(self, message: OutboundMessage) -> dict[str, Any]:
        """Check the message may go out, send every rendered part; return what to record on its entry."""
        connector = self.connectors.get(message.channel)
        if connector is None:
            return {"st": "failed", "err": f"channel {message.channel} is not enabled"}
        profile = await self._profile(message)
        refusal = None if message.keyword_reply else consent.refusal(profile, message.channel, message.purpose)
        if refusal:
            return {"st": "blocked", "err": f"not sent: {refusal}"}
        reply, noted = message.reply, {}
        if message.channel == "whatsapp" and reply.template is None and not _in_window(profile.get(SEEN_WHATSAPP)):
            if self.whatsapp_template is None:
                return {"st": "failed", "err": "not sent: outside the WhatsApp 24-hour window, and no "
                        "twilio.whatsapp_fallback_template is configured"}
            reply = Reply(template=Template(name=self.whatsapp_template, variables=_preview(reply)))
            noted = {"tpl": self.whatsapp_template}
        return {**noted, **await self._send(message, connector, render(reply, connector.capabilities))}

    async def _profile(self, message: OutboundMessage) -> dict[str, str]:
        """The profile fields the checks read, and only those."""
        names = [consent.field(message.channel, message.purpose), SEEN_WHATSAPP]
        values = await self.redis.hmget(keys.contact(message.contact_id), names)
        return {name: str(value) for name, value in zip(names, values, strict=True) if value is not None}

    async def _send(self, message: OutboundMessage, connector: Connector, parts: list[RenderedPart]) -> dict[str, Any]:
        provider_ids: list[str] = []
        for part in parts:
            try:
                provider_id = await self._send_with_retry(connector, message.user_id, part)
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

    async def _send_with_retry(self, connector: Connector, user_id: str, part: Any) -> str | None:
        attempt = 1
        while True:
            try:
                return await connector.send(user_id, part)
            except SendError as exc:
                if exc.permanent or attempt >= self.attempts:
                    raise
                delay = exc.retry_after if exc.retry_after is not None else min(0.2 * 2**attempt, 10.0)
                await asyncio.sleep(delay + random.uniform(0, 0.05))
                attempt += 1


def _in_window(seen: str | None) -> bool:
    return seen is not None and time.time() - float(seen) < WHATSAPP_WINDOW_SECONDS


def _preview(reply: Reply) -> dict[str, str]:
    """The fallback template's variables: {"1": the text, cut to TEMPLATE_PREVIEW characters}."""
    text = (reply.text or "").strip()
    if len(text) > TEMPLATE_PREVIEW:
        text = text[: TEMPLATE_PREVIEW - 1].rstrip() + "…"
    return {"1": text} if text else {}
