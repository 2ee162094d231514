"""Sending events again to one sink: its dead letters, or everything since a moment.

Both work the same way: the event is appended to its partition's feed again with `only` = the sink,
so it travels the ordinary way (the contact's queue, the schedule, the signature) and every other
sink passes over it. The body and so the `webhook-id` are the original's: a receiver that had it
already sees a duplicate by id and can drop it.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel
from redis.asyncio import Redis

from bot.context import keys
from bot.crm.events import CloudEvent

PAGE = 1000


class DeadEvent(BaseModel):
    id: str  # "<partition>:<entry id>" of the dead letter
    sink: str
    error: str
    attempts: int
    event: dict[str, Any]


def _split(letter_id: str) -> tuple[int, str]:
    p, _, entry_id = letter_id.partition(":")
    if not p.isdigit() or not entry_id:
        raise ValueError(f"not a dead letter id: {letter_id!r}")
    return int(p), entry_id


async def dead_letters(client: Redis, partitions: int, sink: str | None = None, limit: int = 100) -> list[DeadEvent]:
    """The newest dead letters first, of one sink or of all."""
    redis: Any = client  # decoded replies: str, which redis-py's stubs cannot know
    found: list[tuple[str, DeadEvent]] = []
    for p in range(partitions):
        for entry_id, fields in await redis.xrevrange(keys.delivery_dead(p), count=limit) or []:
            if sink is None or fields.get("sink") == sink:
                found.append((str(entry_id), DeadEvent(
                    id=f"{p}:{entry_id}", sink=fields["sink"], error=fields.get("error", ""),
                    attempts=int(fields.get("attempts", 0)), event=CloudEvent.read(fields["e"]).model_dump())))
    found.sort(key=lambda pair: tuple(int(x) for x in pair[0].split("-")), reverse=True)
    return [letter for _, letter in found[:limit]]


async def redeliver(client: Redis, letter_id: str, sink: str | None = None) -> bool:
    """Put a dead letter back in the feed for its sink; False if there is no such letter (of `sink`)."""
    redis: Any = client
    p, entry_id = _split(letter_id)
    found = await redis.xrange(keys.delivery_dead(p), entry_id, entry_id)
    if not found or (sink is not None and found[0][1].get("sink") != sink):
        return False
    fields = found[0][1]
    async with redis.pipeline(transaction=True) as pipe:  # one slot: the partition's
        pipe.xadd(keys.events(p), {"e": fields["e"], "c": fields.get("c", ""), "only": fields["sink"]})
        pipe.xdel(keys.delivery_dead(p), entry_id)
        await pipe.execute()
    return True


async def replay(client: Redis, partitions: int, sink: str, since: datetime, types: Any = None) -> int:
    """Append again, for `sink`, every event of the feed since `since` (that `types(type)` accepts);
    returns how many. Copies made by an earlier replay are not copied again."""
    redis: Any = client
    start, count = f"{int(since.timestamp() * 1000)}-0", 0
    for p in range(partitions):
        newest = await redis.xrevrange(keys.events(p), count=1)
        if not newest:
            continue
        cursor, end = start, str(newest[0][0])  # not into the copies this makes
        while page := await redis.xrange(keys.events(p), cursor, end, count=PAGE):
            async with redis.pipeline(transaction=False) as pipe:
                for _, fields in page:
                    if not fields or "only" in fields:
                        continue
                    if types is not None and not types(CloudEvent.read(fields["e"]).type):
                        continue
                    pipe.xadd(keys.events(p), {"e": fields["e"], "c": fields.get("c", ""), "only": sink})
                    count += 1
                await pipe.execute()
            if len(page) < PAGE:
                break
            cursor = "(" + str(page[-1][0])
    return count
