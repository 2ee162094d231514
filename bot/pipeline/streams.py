"""Reading a partition stream the way every consumer of the hub does.

The consumer is named after the partition (`p3`), not after the process. Whoever holds the partition's
lease first re-reads the entries still pending under that name — the ones a killed owner read but
never acknowledged — and only then reads new ones. The stream is trimmed below the oldest pending
entry, never by length, so an unprocessed entry is never trimmed away.

The loop outlives Redis: any `RedisError` (the server restarting, a failover, a lost consumer group)
is logged, waited out with jittered backoff, and the loop carries on where the group says it was. A
batch handler that raises leaves its entries pending; the loop goes back to the pending list after a
pause, so nothing is skipped and nothing is read out of order.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Awaitable, Callable

from redis.asyncio import Redis
from redis.exceptions import ResponseError

from bot.context import keys
from bot.redis_server import REDIS_FAILURES

log = logging.getLogger(__name__)

Entry = tuple[str, dict[str, str]]
BatchHandler = Callable[[list[Entry]], Awaitable[None]]
TRIM_EVERY_SECONDS = 5.0
MAX_BACKOFF_SECONDS = 2.0


def stream_id(entry_id: str) -> tuple[int, int]:
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)


def after(entry_id: str) -> str:
    """The smallest stream id greater than `entry_id` (for trimming: MINID keeps what is not below it).
    Not for paging a pending list: XREADGROUP with an id already returns the entries after it, and
    starting from this one would skip the entry one sequence number later (an XADD of the same MULTI)."""
    ms, seq = stream_id(entry_id)
    return f"{ms}-{seq + 1}"


async def ensure_group(redis: Redis, stream: str) -> None:
    """Create the consumer group (and the stream) unless it exists: at start, and again after a
    Redis that lost its data answers NOGROUP."""
    try:
        await redis.xgroup_create(stream, keys.GROUP, id="0", mkstream=True)
    except ResponseError as exc:
        if "BUSYGROUP" not in str(exc):
            raise


class Backoff:
    """Jittered exponential waits for a loop whose dependency is away; `reset` once it answers."""

    def __init__(self, first: float = 0.1, ceiling: float = MAX_BACKOFF_SECONDS) -> None:
        self.first, self.ceiling, self.failures = first, ceiling, 0

    def next_delay(self) -> float:
        self.failures += 1
        delay: float = min(self.ceiling, self.first * 2 ** (self.failures - 1))
        return delay * random.uniform(0.5, 1.0)

    def reset(self) -> None:
        self.failures = 0


async def pause(halt: asyncio.Event, seconds: float) -> None:
    """Sleep, but wake at once when the partition is handed over."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(halt.wait(), seconds)


async def consume(
    redis: Redis, stream: str, consumer: str, batch: int, halt: asyncio.Event, handle: BatchHandler,
    *, retry_seconds: float = 0.5, left_pending: Callable[[], bool] = lambda: True,
) -> None:
    """Feed batches to `handle` until `halt`; `handle` acknowledges what it finished.

    Entries it leaves unacknowledged (a contact waiting for a retry) stay pending: the loop pages
    through the pending list again `retry_seconds` later — if `left_pending()` says there are such
    entries — and reads new entries in between only if `handle` leaves them pending in turn when they
    must wait (see `bot.pipeline.worker`).
    """
    backoff = Backoff()
    group_ready = False
    cursor: str | None = "0"  # a pending-list page to read next; None: read new entries
    last_trim = last_backlog = time.monotonic()
    while not halt.is_set():
        try:
            if not group_ready:
                await ensure_group(redis, stream)
                group_ready = True
            if cursor is None and time.monotonic() - last_backlog > retry_seconds and left_pending():
                cursor = "0"  # time to look at what was left pending
            response = await redis.xreadgroup(
                keys.GROUP, consumer, {stream: cursor or ">"}, count=batch, block=None if cursor else 500
            )
            entries: list[Entry] = response[0][1] if response else []  # type: ignore[index,assignment]
            if cursor is not None:
                if entries:
                    cursor = entries[-1][0]  # XREADGROUP reads the pending entries *after* this id
                else:
                    cursor, last_backlog = None, time.monotonic()
            live = [(i, f) for i, f in entries if f]
            if gone := [i for i, f in entries if not f]:  # body trimmed or deleted: nothing left to do
                await redis.xack(stream, keys.GROUP, *gone)
            if live:
                await handle(live)
            if time.monotonic() - last_trim > TRIM_EVERY_SECONDS:
                last_trim = time.monotonic()
                await trim_below_pending(redis, stream)
            backoff.reset()
        except REDIS_FAILURES as exc:
            if "NOGROUP" in str(exc):
                group_ready = False  # the server lost the group (restarted empty, or FLUSH): make it again
            cursor = "0"  # whatever was read but not finished is still pending
            delay = backoff.next_delay()
            log.warning("%s: Redis error (%s); retrying in %.2f s", stream, exc, delay)
            await pause(halt, delay)
        except Exception:
            cursor = "0"
            log.exception("batch on %s failed; its entries stay pending", stream)
            await pause(halt, backoff.next_delay())


async def waiting(redis: Redis, stream: str) -> int:
    """Entries of a stream not yet done: read and pending, or not read yet (all of them while no
    consumer group exists)."""
    try:
        groups = await redis.xinfo_groups(stream)
    except ResponseError as exc:
        if "no such key" in str(exc).lower():
            return 0
        raise
    if not groups:
        return int(await redis.xlen(stream))
    return sum(int(g["pending"]) + int(g.get("lag") or 0) for g in groups)


async def trim_below_pending(redis: Redis, stream: str) -> None:
    summary = await redis.xpending(stream, keys.GROUP)
    if summary["pending"]:
        floor = summary["min"]
    else:
        groups = await redis.xinfo_groups(stream)
        last = next((g["last-delivered-id"] for g in groups if g["name"] == keys.GROUP), None)
        if last is None or last == "0-0":
            return
        floor = after(last)
    await redis.xtrim(stream, minid=floor, approximate=True)
