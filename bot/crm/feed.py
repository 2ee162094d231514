"""The feed's consumers in one process: which sinks exist, a reader for each on each owned partition.

`Feed.run(p, halt)` runs beside a partition's worker and sender while this process holds the
partition's lease. Once a second it looks at the subscriptions (one read per process, shared by its
partitions) and the configured CRM adapters, starts a `SinkReader` for a sink that appeared, stops
the reader of one that was disabled or deleted, and now and then trims the partition's stream.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Sequence

from redis.asyncio import Redis

from bot.crm.bitrix24 import Bitrix24Sink
from bot.crm.delivery import SinkReader, trim
from bot.crm.events import CloudEvent, SubscriptionDisabled
from bot.crm.outbox import Emitter
from bot.crm.poster import Poster
from bot.crm.sinks import Sink
from bot.crm.subscriptions import Subscriptions
from bot.crm.webhooks import WebhookSink
from bot.pipeline.streams import pause
from bot.redis_server import REDIS_FAILURES
from bot.settings import CrmSettings

log = logging.getLogger(__name__)
LOOK_EVERY_SECONDS = 1.0
TRIM_EVERY_SECONDS = 10.0


class Feed:
    def __init__(self, redis: Redis, settings: CrmSettings, subscriptions: Subscriptions, emitter: Emitter,
                 adapters: Sequence[Sink] = ()) -> None:
        self.redis, self.settings, self.subscriptions, self.emitter = redis, settings, subscriptions, emitter
        self.adapters = list(adapters)
        self.webhooks: dict[str, WebhookSink] = {}
        self.looked_at = 0.0
        self.looking = asyncio.Lock()
        self.poster = Poster()

    async def close(self) -> None:
        await self.poster.aclose()
        for adapter in self.adapters:
            if isinstance(adapter, Bitrix24Sink):
                await adapter.aclose()

    async def run(self, p: int, halt: asyncio.Event) -> None:
        readers: dict[str, tuple[asyncio.Task[None], asyncio.Event]] = {}
        last_trim = time.monotonic()
        try:
            while not halt.is_set():
                try:
                    sinks = await self.sinks()
                    for name, sink in sinks.items():
                        if name not in readers or readers[name][0].done():
                            readers[name] = self._start(p, sink)
                    for name in [n for n in readers if n not in sinks]:
                        readers.pop(name)[1].set()
                    if time.monotonic() - last_trim > TRIM_EVERY_SECONDS:
                        last_trim = time.monotonic()
                        await trim(self.redis, p, set(sinks), self.settings.retention_hours * 3600)
                except REDIS_FAILURES as exc:
                    log.warning("feed p%s: Redis error (%s)", p, exc)
                await pause(halt, LOOK_EVERY_SECONDS)
        finally:
            for _, stop in readers.values():
                stop.set()
            await asyncio.gather(*(task for task, _ in readers.values()), return_exceptions=True)

    def _start(self, p: int, sink: Sink) -> tuple[asyncio.Task[None], asyncio.Event]:
        stop = asyncio.Event()
        s = self.settings
        reader = SinkReader(self.redis, p, sink, s.retry_schedule_seconds, s.concurrency, stop, self._gone,
                            s.disable_after_days * 86400)
        return asyncio.create_task(reader.run(), name=f"feed {sink.name} p{p}"), stop

    async def sinks(self) -> dict[str, Sink]:
        """Every sink that should be delivered to now, by name (subscriptions read at most once a second)."""
        async with self.looking:
            if time.monotonic() - self.looked_at > LOOK_EVERY_SECONDS:
                active = {s.id: s for s in await self.subscriptions.all() if s.status == "active"}
                for sub_id in [i for i in self.webhooks if i not in active]:
                    del self.webhooks[sub_id]
                for sub_id, sub in active.items():
                    if sub_id in self.webhooks:
                        self.webhooks[sub_id].subscription = sub  # a rotated secret, an edited filter
                    else:
                        self.webhooks[sub_id] = WebhookSink(sub, self.poster, self.settings.timeout_seconds)
                self.looked_at = time.monotonic()
        return {sink.name: sink for sink in [*self.webhooks.values(), *self.adapters]}

    async def _gone(self, sink: Sink, reason: str) -> None:
        if not isinstance(sink, WebhookSink):
            log.error("sink %s says it is gone (%s); it is configured, so it is retried", sink.name, reason)
            return
        sub = sink.subscription
        before = await self.subscriptions.get(sub.id)
        await self.subscriptions.disable(sub.id, reason)
        self.looked_at = 0.0  # look again at once: this reader and its siblings stop
        if before is not None and before.status == "active":
            log.error("webhook subscription %s (%s) disabled: %s", sub.id, sub.url, reason)
            data = SubscriptionDisabled(subscription_id=sub.id, reason=reason)
            with contextlib.suppress(*REDIS_FAILURES):
                await self.emitter.emit_once(CloudEvent.of(data, sub.id, f"{sub.id}/{int(time.time() // 60)}"))
