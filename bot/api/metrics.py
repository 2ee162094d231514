"""Prometheus metrics of this process, plus figures read from Redis at scrape time (stream depths,
the CRM feed per sink), so every process of the hub tells the same."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator, Sequence

from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, Counter, Gauge, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from redis.asyncio import Redis

from bot.context import keys
from bot.crm.sinks import Sink
from bot.crm.stats import SinkStats, sink_stats
from bot.crm.subscriptions import Subscriptions
from bot.redis_server import REDIS_FAILURES

WEBHOOKS = Counter("omnihub_webhooks_total", "Webhook requests by provider and HTTP status", ["provider", "status"])
STREAM_DEPTH = Gauge("omnihub_stream_pending", "Entries read but not yet acknowledged", ["stream"])


class FeedCollector:
    """The event feed's figures per sink (`wh:<subscription id>`, `crm:bitrix24`), as last read by
    `refresh`. A custom collector rather than labelled gauges: a deleted subscription's series go
    with it, and a scrape that could not read Redis shows no figures rather than stale ones."""

    def __init__(self) -> None:
        self.stats: dict[str, SinkStats] = {}

    async def refresh(self, redis: Redis, partitions: int, subscriptions: Subscriptions,
                      adapters: Sequence[Sink]) -> None:
        try:
            sinks = [s.sink_name for s in await subscriptions.all()] + [a.name for a in adapters]
            found = await asyncio.gather(*(sink_stats(redis, partitions, sink) for sink in sinks))
        except REDIS_FAILURES:
            self.stats = {}
            return
        self.stats = dict(zip(sinks, found, strict=True))

    def collect(self) -> Iterator[Metric]:
        delivered = CounterMetricFamily("omnihub_events_delivered", "Feed events delivered, per sink", labels=["sink"])
        retried = CounterMetricFamily("omnihub_events_retried", "Failed delivery attempts tried again", labels=["sink"])
        dead = CounterMetricFamily("omnihub_events_dead", "Feed events dead-lettered", labels=["sink"])
        lag = GaugeMetricFamily("omnihub_events_lag", "Feed events the sink has not finished", labels=["sink"])
        oldest = GaugeMetricFamily("omnihub_events_oldest_pending_seconds",
                                   "Age of the oldest event the sink holds unfinished (0: none)", labels=["sink"])
        for sink, stats in sorted(self.stats.items()):
            delivered.add_metric([sink], stats.delivered)
            retried.add_metric([sink], stats.retried)
            dead.add_metric([sink], stats.dead)
            lag.add_metric([sink], stats.lag)
            oldest.add_metric([sink], stats.oldest_pending_seconds or 0.0)
        yield from (delivered, retried, dead, lag, oldest)


class RasaCollector:
    """Turns a Rasa server did not answer, per mode and reason (bot.rasa.client), counted by every
    worker in Redis and read at scrape time."""

    def __init__(self) -> None:
        self.counts: dict[str, int] = {}

    async def refresh(self, redis: Redis) -> None:
        try:
            self.counts = {str(k): int(v) for k, v in (await redis.hgetall(keys.RASA_FALLBACKS)).items()}
        except REDIS_FAILURES:
            self.counts = {}

    def collect(self) -> Iterator[Metric]:
        fallbacks = CounterMetricFamily("omnihub_rasa_fallbacks", "Turns the built-in engine answered because "
                                        "Rasa did not", labels=["mode", "reason"])
        for field, count in sorted(self.counts.items()):
            mode, _, reason = field.partition(":")
            fallbacks.add_metric([mode, reason], count)
        yield fallbacks


FEED = FeedCollector()
REGISTRY.register(FEED)
RASA = RasaCollector()
REGISTRY.register(RASA)

__all__ = ["CONTENT_TYPE_LATEST", "FEED", "RASA", "REGISTRY", "STREAM_DEPTH", "WEBHOOKS", "generate_latest"]
