"""The sender side of a partition: render each outbound message for its channel and hand it to the connector.

Messages of one contact go out strictly in order; different contacts concurrently (bounded). A
retryable refusal (429, 5xx, network) is retried with exponential backoff, honouring the provider's
`retry_after`; a permanent one fails the message with the provider's reason. The outcome (provider
id, status, SMS segments) is written onto the message's history entry, then the entry is acknowledged.

At-least-once towards the provider: a process killed while a send is in flight leaves that entry
pending, and the next owner sends it again. No provider API takes an idempotency key, so this window
cannot be closed; it is as small as one HTTP round trip, and `XPENDING` on the stream shows it.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections import defaultdict
from typing import Any

from redis.asyncio import Redis

from bot.context import keys
from bot.context.store import ContextStore
from bot.models import Channel, OutboundMessage
from bot.pipeline.streams import Entry, consume
from bot.rendering import render
from connectors.base import Connector, SendError

log = logging.getLogger(__name__)


class Sender:
    def __init__(
        self,
        redis: Redis,
        store: ContextStore,
        connectors: dict[Channel, Connector],
        batch: int,
        attempts: int,
        concurrency: int,
    ) -> None:
        self.redis = redis
        self.store = store
        self.connectors = connectors
        self.batch = batch
        self.attempts = attempts
        self._slots = asyncio.Semaphore(concurrency)

    async def run(self, p: int, halt: asyncio.Event) -> None:
        await consume(self.redis, keys.outbound(p), f"p{p}", self.batch, halt, lambda e: self._batch(p, e))

    async def _batch(self, p: int, entries: list[Entry]) -> None:
        by_contact: dict[str, list[OutboundMessage]] = defaultdict(list)
        for _, fields in entries:
            message = OutboundMessage.model_validate_json(fields["m"])
            by_contact[message.contact_id].append(message)
        outcomes = await asyncio.gather(*(self._contact(messages) for messages in by_contact.values()))
        async with self.redis.pipeline(transaction=False) as pipe:
            for message, result in (pair for outcome in outcomes for pair in outcome):
                await self.store.update_history(message.contact_id, ("id", message.id), result, client=pipe)
            pipe.xack(keys.outbound(p), keys.GROUP, *(entry_id for entry_id, _ in entries))
            await pipe.execute()

    async def _contact(self, messages: list[OutboundMessage]) -> list[tuple[OutboundMessage, dict[str, Any]]]:
        async with self._slots:
            return [(m, await self.deliver(m)) for m in messages]

    async def deliver(self, message: OutboundMessage) -> dict[str, Any]:
        """Send every rendered part; return what to record on the history entry."""
        connector = self.connectors.get(message.channel)
        if connector is None:
            return {"st": "failed", "err": f"channel {message.channel} is not enabled"}
        parts = render(message.reply, connector.capabilities)
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
        if segments:
            outcome.update(seg=sum(s.segments for s in segments), enc=segments[0].encoding)
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
