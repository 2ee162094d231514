"""How a sink is doing, from Redis (so every process of the hub tells the same): delivered,
retried, dead, and lag — events in the feed it has not finished — with the age of the oldest."""

from __future__ import annotations

import time
from typing import Any

from pydantic import BaseModel
from redis.asyncio import Redis
from redis.exceptions import ResponseError

from bot.context import keys


class SinkStats(BaseModel):
    delivered: int = 0
    retried: int = 0
    dead: int = 0
    lag: int = 0  # entries not yet read, plus read and not finished
    oldest_pending_seconds: float | None = None
    failing_since: float | None = None


async def sink_stats(client: Redis, partitions: int, sink: str) -> SinkStats:
    redis: Any = client
    stats, oldest = SinkStats(), None
    for p in range(partitions):  # counted per partition: a MULTI that acknowledges also counts, in one slot
        delivered, retried, dead, since = await redis.hmget(
            keys.delivery_counts(p), [f"{sink} {name}" for name in ("delivered", "retried", "dead", "failing_since")])
        stats.delivered += int(delivered or 0)
        stats.retried += int(retried or 0)
        stats.dead += int(dead or 0)
        if since:
            stats.failing_since = min(stats.failing_since or float("inf"), float(since))
        try:
            groups = await redis.xinfo_groups(keys.events(p))
        except ResponseError:  # no stream yet
            continue
        for group in groups:
            if group["name"] == sink:
                stats.lag += int(group.get("lag") or 0) + int(group["pending"])
                if group["pending"]:
                    first = (await redis.xpending(keys.events(p), sink))["min"]
                    oldest = min(oldest or float("inf"), int(first.split("-")[0]) / 1000)
    stats.oldest_pending_seconds = round(time.time() - oldest, 3) if oldest else None
    return stats
