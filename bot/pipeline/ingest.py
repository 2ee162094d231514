"""Accept provider events: resolve the contact, drop provider retries, append to the partition stream.

A webhook is answered 2xx only after `ingest` returns, i.e. after the events are in Redis. The dedupe
key and the stream share the partition's hash tag, so the check-and-append is one atomic script even
on Redis Cluster; a retry that arrives while the first copy is being processed is still dropped.
"""

from __future__ import annotations

from redis.asyncio import Redis

from bot.context import keys
from bot.context.store import ContextStore
from bot.models import InboundEvent

_APPEND_ONCE = """
if redis.call('SET', KEYS[1], '1', 'NX', 'EX', ARGV[1]) then
  return redis.call('XADD', KEYS[2], '*', 'c', ARGV[2], 'e', ARGV[3])
end
return false
"""


class Ingest:
    def __init__(self, redis: Redis, store: ContextStore, partitions: int, dedupe_ttl: int) -> None:
        self.redis = redis
        self.store = store
        self.partitions = partitions
        self.dedupe_ttl = dedupe_ttl
        self._append_once = redis.register_script(_APPEND_ONCE)

    async def __call__(self, events: list[InboundEvent]) -> int:
        """Store the events durably; returns how many were new (the rest were provider retries)."""
        if not events:
            return 0
        contacts = [await self.store.resolve(e.channel, e.user_id) for e in events]
        async with self.redis.pipeline(transaction=False) as pipe:
            for event, cid in zip(events, contacts, strict=True):
                p = keys.partition_of(cid, self.partitions)
                await self._append_once(
                    keys=[keys.dedupe(p, event.dedupe_key), keys.inbound(p)],
                    args=[self.dedupe_ttl, cid, event.model_dump_json(exclude_defaults=True)],
                    client=pipe,
                )
            results = await pipe.execute()
        return sum(1 for r in results if r)
