"""Reading a partition stream the way every consumer of the hub does.

The consumer is named after the partition (`p3`), not after the process. Whoever holds the partition's
lease first re-reads the entries still pending under that name — the ones a killed owner read but
never acknowledged — and only then reads new ones. The stream is trimmed below the oldest pending
entry, never by length, so an unprocessed entry is never trimmed away.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

from redis.asyncio import Redis
from redis.exceptions import ResponseError

from bot.context import keys

log = logging.getLogger(__name__)

Entry = tuple[str, dict[str, str]]
BatchHandler = Callable[[list[Entry]], Awaitable[None]]
TRIM_EVERY_SECONDS = 5.0


def stream_id(entry_id: str) -> tuple[int, int]:
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)


async def ensure_group(redis: Redis, stream: str) -> None:
    try:
        await redis.xgroup_create(stream, keys.GROUP, id="0", mkstream=True)
    except ResponseError as exc:
        if "BUSYGROUP" not in str(exc):
            raise


async def consume(
    redis: Redis, stream: str, consumer: str, batch: int, halt: asyncio.Event, handle: BatchHandler
) -> None:
    """Feed batches to `handle` until `halt`; `handle` acknowledges what it finished."""
    await ensure_group(redis, stream)
    backlog = True  # start with what a previous owner left pending
    last_trim = 0.0
    while not halt.is_set():
        response = await redis.xreadgroup(
            keys.GROUP, consumer, {stream: "0" if backlog else ">"}, count=batch, block=None if backlog else 500
        )
        entries: list[Entry] = response[0][1] if response else []  # type: ignore[index,assignment]
        if backlog and not entries:
            backlog = False
            continue
        live = [(i, f) for i, f in entries if f]
        if gone := [i for i, f in entries if not f]:  # body trimmed or deleted: nothing left to do
            await redis.xack(stream, keys.GROUP, *gone)
        if live:
            try:
                await handle(live)
            except Exception:
                log.exception("batch on %s failed; its entries stay pending", stream)
                backlog = True
                await asyncio.sleep(0.5)
        if time.monotonic() - last_trim > TRIM_EVERY_SECONDS:
            last_trim = time.monotonic()
            await trim_below_pending(redis, stream)


async def trim_below_pending(redis: Redis, stream: str) -> None:
    summary = await redis.xpending(stream, keys.GROUP)
    if summary["pending"]:
        floor = summary["min"]
    else:
        groups = await redis.xinfo_groups(stream)
        floor = next((g["last-delivered-id"] for g in groups if g["name"] == keys.GROUP), None)
        if floor is None or floor == "0-0":
            return
        ms, seq = stream_id(floor)
        floor = f"{ms}-{seq + 1}"
    await redis.xtrim(stream, minid=floor, approximate=True)
