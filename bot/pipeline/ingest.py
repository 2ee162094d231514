"""Accept provider events: resolve the contact, drop provider retries, append to the partition stream.

Each partition has two inbound streams (`bulk_lane` picks): the customers' messages and the commands
people and the CRM send go to the live one, receipts and campaign steps to the bulk one.

A webhook is answered 2xx only after `ingest` returns, i.e. after the events are in Redis. The dedupe
key and the stream share the partition's hash tag, so the check-and-append is one atomic script even
on Redis Cluster; a retry that arrives while the first copy is being processed is still dropped.
Each dedupe key is also noted on its contact (`omni:{cid}:dd`, expired members dropped on write):
the key's name is made from the provider's id, not the contact's, and an erase must find it.

A dedupe key lives as long as its provider may retry (`RETRY_SECONDS`), not a fixed day: Twilio's
retries of a webhook end within 15 s, Viber's within an hour, Telegram keeps an unanswered update for
up to 24 h. Commands and forwarded events keep `dedupe_ttl` (an API client's Idempotency-Key).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import orjson
from redis.asyncio import Redis
from redis.exceptions import NoScriptError

from bot.context import keys
from bot.context.identity import Identities
from bot.models import Channel, EventKind, InboundEvent
from bot.pipeline.commands import CampaignStep, Command

# How long each provider retries a webhook it did not get a 2xx for, with a margin: Twilio's connection
# overrides cap all retries at 15 s (`tt`, at most 15,000 ms), Viber "will retry the callback several
# times for an hour" (its FAQ), Telegram keeps an update for 24 h and retries until it is answered.
RETRY_SECONDS: dict[Channel, int] = {"sms": 600, "whatsapp": 600, "viber": 7200, "telegram": 86_400}

# KEYS[3]: the key's name before it was digested (keys.dedupe_legacy), for the day after an upgrade.
_APPEND_ONCE = """
if redis.call('EXISTS', KEYS[3]) == 0 and redis.call('SET', KEYS[1], '1', 'NX', 'EX', ARGV[1]) then
  return redis.call('XADD', KEYS[2], '*', 'c', ARGV[2], ARGV[4], ARGV[3])
end
return false
"""
# The contact's note of a dedupe key, score = its expiry in whole seconds (a listpack keeps an integer
# in 5 bytes, a float's digits in 18); the note expires with the last key it lists (older notes have
# fractional scores, hence the ceil).
_NOTE = """
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', '(' .. ARGV[3])
local last = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')
redis.call('EXPIREAT', KEYS[1], string.format('%d', math.ceil(tonumber(last[2]))))
"""
_COMMANDS_PER_EVENT = 2  # the append, then the note on the contact (see `_stage`)


def bulk_lane(item: InboundEvent | Command) -> bool:
    """Receipts and campaign steps go to the partition's bulk inbound stream: nobody waits on them, a
    campaign brings them by the thousand, and the worker reads the customers' messages first."""
    return isinstance(item, CampaignStep) or (isinstance(item, InboundEvent) and item.kind is EventKind.status)


class NotYetApplied(Exception):
    """The worker has not answered within the wait; the command stays queued and will be applied."""


class Ingest:
    def __init__(self, redis: Redis, identities: Identities, partitions: int, dedupe_ttl: int) -> None:
        self.redis = redis
        self.identities = identities
        self.partitions = partitions
        self.dedupe_ttl = dedupe_ttl
        self._append_once = redis.register_script(_APPEND_ONCE)
        self._note = redis.register_script(_NOTE)

    async def __call__(self, events: list[InboundEvent]) -> int:
        """Store the events durably; returns how many were new (the rest were provider retries)."""
        if not events:
            return 0
        contacts = [await self._contact(e) for e in events]
        staged = [(cid, e.dedupe_key, e, RETRY_SECONDS.get(e.channel, self.dedupe_ttl))
                  for e, cid in zip(events, contacts, strict=True) if cid is not None]
        results = await self._append(staged)
        return sum(1 for r in results[::_COMMANDS_PER_EVENT] if r)

    async def _append(self, staged: Sequence[tuple[str, str, InboundEvent | Command, int]]) -> list[Any]:
        """One round trip. The scripts go by their SHA, skipping the SCRIPT EXISTS round trip redis-py
        makes before every pipeline that holds a script; Redis forgets scripts only when restarted,
        and then the scripts are loaded and the (idempotent) pipeline sent again."""
        for attempt in (1, 2):
            async with self.redis.pipeline(transaction=False) as pipe:
                for cid, event_key, event, ttl in staged:
                    self._stage(pipe, cid, event_key, event, ttl)
                try:
                    return list(await pipe.execute())
                except NoScriptError:
                    if attempt == 2:
                        raise
                    await self.redis.script_load(_APPEND_ONCE)
                    await self.redis.script_load(_NOTE)
        return []

    async def _contact(self, event: InboundEvent) -> str | None:
        """A delivery status is about a message we sent, so its contact exists — unless it was erased
        since, and then there is nothing to update: a status must not bring an erased identity back."""
        if event.kind is EventKind.status:
            return await self.identities.owner(event.channel, event.user_id)
        return await self.identities.resolve(event.channel, event.user_id)

    async def forward(self, cid: str, event: InboundEvent, event_key: str) -> None:
        """Append `event` again, for `cid`: it reached a contact merged or erased since it was accepted.
        `event_key` names the forwarding, so a replayed forwarding is dropped like a provider retry."""
        await self._append([(cid, event_key, event, self.dedupe_ttl)])

    async def command(self, command: Command, cid: str) -> bool:
        """Queue a contact-addressed command on the contact's partition, once per command id; False if
        that id was queued before (an API retry with the same Idempotency-Key)."""
        results = await self._append([(cid, f"cmd:{command.id}", command, self.dedupe_ttl)])
        return bool(results[0])

    async def commands(self, addressed: Sequence[tuple[str, Command]]) -> None:
        """Queue many contact-addressed commands in one round trip (a campaign's due steps)."""
        await self._append([(cid, f"cmd:{command.id}", command, self.dedupe_ttl) for cid, command in addressed])

    async def applied(self, command: Command, cid: str, wait_seconds: float) -> str | None:
        """Queue the command and wait for the partition's worker: its refusal, or None once applied.
        Raises `NotYetApplied` after `wait_seconds` (the command still goes through, in order)."""
        await self.command(command, cid)
        answer = await self.redis.blpop([keys.command_result(cid, command.id)], timeout=wait_seconds)
        if answer is None:
            raise NotYetApplied("the hub has not applied it yet (it will, in order); look again shortly")
        refusal: str | None = orjson.loads(answer[1]).get("refusal")
        return refusal

    def _stage(self, pipe: Any, cid: str, event_key: str, item: InboundEvent | Command, ttl: int) -> None:
        p = keys.partition_of(cid, self.partitions)
        dedupe, now = keys.dedupe(p, event_key), int(time.time())
        if isinstance(item, InboundEvent):
            field, body = "e", item.model_dump_json(exclude_defaults=True)
        else:  # a command keeps its defaults: `kind` tells the worker which command it is
            field, body = "k", item.model_dump_json(exclude_none=True)
        # a raw EVALSHA: redis-py's cluster pipeline blocks its `evalsha` method but routes this by its keys
        stream = keys.inbound_bulk(p) if bulk_lane(item) else keys.inbound(p)
        pipe.execute_command("EVALSHA", self._append_once.sha, 3, dedupe, stream,
                             keys.dedupe_legacy(p, event_key), ttl, cid, body, field)
        pipe.execute_command("EVALSHA", self._note.sha, 1, keys.deduped(cid), dedupe, now + ttl + 1, now)
