"""Where an event is written so that it exists if and only if its effect was committed, once.

The feed is one stream per partition, `omni:ev:{p<n>}` (field `e` = the CloudEvent JSON, `c` = the
contact), in the partition's hash slot; a contact's events are all in its partition's stream, in the
order they happened. Three kinds of writer, three ways to keep the rule:

- **A worker's turn or command** commits its effects in the contact's MULTI and its replies and
  acknowledgement in the partition's — two slots, so no one MULTI can hold both. The events are staged
  in the contact's MULTI, into the contact's outbox `omni:{cid}:ev` (`stage`): they are there iff the
  effects are. The partition's MULTI then appends them to the stream together with the XACK of the
  entry that caused them (`append`): they are in the feed iff the entry is finished, so exactly once.
  A crash between the two MULTIs replays the entry; the worker sees it was saved (the conversation's
  `last`) and takes its events back from the outbox (`saved`), as it takes its replies back from the
  history. The outbox is only that bridge: capped, and it expires an hour after the contact's last turn.
- **The sender** acknowledges a sent message and appends its `message.sent` (or `failed`) in one
  script on the partition's slot (`bot.pipeline.sender`): XACK returning 0 (someone acknowledged it
  already) appends nothing.
- **Everyone else** (merge, erase, the SLA clock, the router, a subscription disabled) commits first and
  then emits with `emit_once`, which appends only if the event id was not appended before (a dedupe
  key in the partition's slot, kept for `DEDUPE_SECONDS`). Their ids are derived from the cause (the
  merge journal, the deadline), so a step redone after a crash emits the same event, which is dropped.

Streams are trimmed by the delivery side (`bot.crm.delivery`), below what every consumer finished and
older than the retention, so a `--since` replay can still read them.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import orjson
from redis.asyncio import Redis

from bot.context import keys
from bot.crm.events import CloudEvent

OUTBOX_CAP = 200  # events kept per contact for a replay; a turn emits a handful
OUTBOX_SECONDS = 3600
DEDUPE_SECONDS = 7 * 24 * 3600

_EMIT_ONCE = """
if redis.call('SET', KEYS[2], '1', 'NX', 'EX', ARGV[3]) then
  return redis.call('XADD', KEYS[1], '*', 'e', ARGV[1], 'c', ARGV[2])
end
return false
"""


def stage(pipe: Any, cid: str, events: Iterable[CloudEvent], cause: str) -> None:
    """Queue `events` of entry `cause` into the contact's outbox, on the contact's MULTI."""
    rows = [orjson.dumps({"src": cause, "e": event.model_dump()}) for event in events]
    if rows:
        pipe.rpush(keys.outbox(cid), *rows)
        pipe.ltrim(keys.outbox(cid), -OUTBOX_CAP, -1)
        pipe.expire(keys.outbox(cid), OUTBOX_SECONDS)


async def saved(redis: Redis, cid: str, cause: str) -> list[CloudEvent]:
    """The events entry `cause` staged, when it was saved before a crash and is replayed."""
    rows = [orjson.loads(raw) for raw in await redis.lrange(keys.outbox(cid), 0, -1)]
    return [CloudEvent.model_validate(row["e"]) for row in rows if row.get("src") == cause]


def append(pipe: Any, p: int, events: Iterable[CloudEvent]) -> None:
    """Queue `events` onto partition p's feed, on the partition's MULTI (with the acknowledgement)."""
    for event in events:
        pipe.xadd(keys.events(p), {"e": event.body(), "c": event.subject})


class Emitter:
    """`emit_once` for writers outside the worker: appends an event unless its id was appended already."""

    def __init__(self, redis: Redis, partitions: int) -> None:
        self.redis = redis
        self.partitions = partitions
        self._emit = redis.register_script(_EMIT_ONCE)

    async def emit_once(self, event: CloudEvent) -> bool:
        p = keys.partition_of(event.subject, self.partitions)
        added = await self._emit(keys=[keys.events(p), keys.event_seen(p, event.id)],
                                 args=[event.body(), event.subject, DEDUPE_SECONDS])
        return added is not None


async def recorded(redis: Redis, partitions: int, event_type: str | None = None) -> list[CloudEvent]:
    """Every event still in the feed, oldest first across partitions (for tests and inspection)."""
    found: list[tuple[tuple[int, int], CloudEvent]] = []
    for p in range(partitions):
        for entry_id, fields in await redis.xrange(keys.events(p)) or []:
            if fields:
                event = CloudEvent.read(fields["e"])
                if event_type is None or event.type == event_type:
                    ms, _, seq = str(entry_id).partition("-")
                    found.append(((int(ms), int(seq)), event))
    return [event for _, event in sorted(found, key=lambda pair: pair[0])]
