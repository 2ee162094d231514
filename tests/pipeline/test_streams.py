"""Reading a partition stream: a new owner gets every entry the old one left pending, in order."""

from __future__ import annotations

import asyncio
import contextlib

from redis.asyncio import Redis

from bot.context import keys
from bot.pipeline.streams import Entry, consume, ensure_group

STREAM = keys.inbound(0)


async def test_paging_through_a_dead_owners_pending_entries_skips_none(redis: Redis) -> None:
    await ensure_group(redis, STREAM)
    async with redis.pipeline(transaction=True) as pipe:  # one MULTI: consecutive sequence numbers
        for n in range(9):
            pipe.xadd(STREAM, {"n": str(n)})
        await pipe.execute()
    await redis.xreadgroup(keys.GROUP, "p0", {STREAM: ">"})  # read by an owner that then died
    seen: list[str] = []
    halt, all_nine = asyncio.Event(), asyncio.Event()

    async def handle(entries: list[Entry]) -> None:
        seen.extend(fields["n"] for _, fields in entries)
        await redis.xack(STREAM, keys.GROUP, *(entry_id for entry_id, _ in entries))
        if len(seen) >= 9:
            all_nine.set()

    reading = asyncio.create_task(consume(redis, STREAM, "p0", 2, halt, handle))
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(all_nine.wait(), 5)
    halt.set()
    await reading
    assert seen == [str(n) for n in range(9)]
