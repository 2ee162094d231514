"""The single-slot steps of a journaled merge, fold or unmerge (the protocol is in bot.context.merge).

Each step is one script on one contact's slot, so it is atomic on Redis Cluster too, and each is
idempotent, so a journal can be replayed from its start by anyone — the merger that crashed, a
worker folding late writes, the sweeper:

- `begin` (absorbed's slot): refuse or write the journal `omni:{A}:j`, copy A's keys beside it
  (`omni:{A}:j:<part>`: what the merge moves), and mark A `merging_into` for a merge;
- `apply` (survivor's slot): run the planned writes unless this journal was applied already
  (`omni:{S}:applied`), and only if the survivor is still as it was read (the cluster's stand-in
  for WATCH: the caller reads again and re-plans);
- `seal` (absorbed's slot): replace A's profile (a tombstone, or the restored profile of an
  unmerge) keeping *strays* — what a late turn wrote on A after `begin` — for a fold;
- `close` (absorbed's slot): delete the journal and its copies.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import orjson
from redis.asyncio import Redis

from bot.context import keys
from bot.context.merge_plan import Op, Side

PARTS = ("c", "v", "h", "consent", "dd")


def contact_parts(cid: str) -> list[str]:
    return [keys.contact(cid), keys.conversation(cid), keys.history(cid), keys.consent(cid), keys.deduped(cid)]


def copies(cid: str) -> list[str]:
    return [keys.journal_copy(cid, part) for part in PARTS]


_BEGIN = """
if redis.call('EXISTS', KEYS[6]) == 1 then return {'busy'} end
local into = redis.call('HGET', KEYS[1], 'merged_into')
if ARGV[2] == 'merge' then
  if into then return {'merged', into} end
  if redis.call('EXISTS', KEYS[1], KEYS[2], KEYS[3]) == 0 and ARGV[6] == '[]' then return {'unknown'} end
  redis.call('HSET', KEYS[1], 'merging_into', ARGV[3])
elseif into ~= ARGV[3] then
  if redis.call('EXISTS', KEYS[1]) == 0 then return {'unknown'} end
  return {'not merged', into or ''}
end
redis.call('HSET', KEYS[6], 'id', ARGV[1], 'op', ARGV[2], 'survivor', ARGV[3], 'reason', ARGV[4],
           'at', ARGV[5], 'hints', ARGV[6])
for i = 1, 5 do
  redis.call('DEL', KEYS[i + 6])
  if redis.call('EXISTS', KEYS[i]) == 1 then redis.call('COPY', KEYS[i], KEYS[i + 6]) end
end
return {'ok'}
"""

_SAME = """
local function same_hash(key, want)
  local flat, n, m = redis.call('HGETALL', key), 0, 0
  for i = 1, #flat, 2 do
    if want[flat[i]] ~= flat[i + 1] then return false end
    n = n + 1
  end
  for _ in pairs(want) do m = m + 1 end
  return n == m
end
local function same_list(key, want)
  return redis.call('LLEN', key) == want[1] and (redis.call('LINDEX', key, -1) or '') == want[2]
end
"""

_APPLY = _SAME + """
if redis.call('HGET', KEYS[6], ARGV[1]) == ARGV[2] then return 'done' end
local want = cjson.decode(ARGV[3])
if not (same_hash(KEYS[1], want.c) and same_hash(KEYS[2], want.v) and same_list(KEYS[3], want.h)
        and same_list(KEYS[4], want.s)) then return 'changed' end
for _, op in ipairs(cjson.decode(ARGV[4])) do
  local args = {op[1], KEYS[op[2]]}
  for i = 3, #op do args[#args + 1] = op[i] end
  redis.call(unpack(args))
end
redis.call('HSET', KEYS[6], ARGV[1], ARGV[2])
return 'applied'
"""

# Strays: profile and conversation fields whose value differs from the journal's copy, list entries
# the copy does not hold. A restored profile (unmerge) keeps the rest of A as it is.
_SEAL = """
if redis.call('HGET', KEYS[6], 'id') ~= ARGV[1] or redis.call('HGET', KEYS[6], 'sealed') then return -1 end
local strays = 0
local function changed_fields(key, copy)
  local old, found = {}, {}
  local flat = redis.call('HGETALL', copy)
  for i = 1, #flat, 2 do old[flat[i]] = flat[i + 1] end
  flat = redis.call('HGETALL', key)
  for i = 1, #flat, 2 do
    if old[flat[i]] ~= flat[i + 1] then found[#found + 1] = flat[i]; found[#found + 1] = flat[i + 1] end
  end
  return found
end
local function new_entries(key, copy)
  local old, found = {}, {}
  for _, e in ipairs(redis.call('LRANGE', copy, 0, -1)) do old[e] = true end
  for _, e in ipairs(redis.call('LRANGE', key, 0, -1)) do
    if not old[e] then found[#found + 1] = e end
  end
  return found
end
local profile = changed_fields(KEYS[1], KEYS[7])
redis.call('DEL', KEYS[1])
for name, value in pairs(cjson.decode(ARGV[2])) do redis.call('HSET', KEYS[1], name, value) end
if #profile > 0 then redis.call('HSET', KEYS[1], unpack(profile)); strays = strays + #profile / 2 end
if ARGV[3] ~= 'restore' then
  local conversation = changed_fields(KEYS[2], KEYS[8])
  local history, consent = new_entries(KEYS[3], KEYS[9]), new_entries(KEYS[4], KEYS[10])
  redis.call('DEL', KEYS[2], KEYS[3], KEYS[4], KEYS[5])
  if #conversation > 0 then redis.call('HSET', KEYS[2], unpack(conversation)) end
  if #history > 0 then redis.call('RPUSH', KEYS[3], unpack(history)) end
  if #consent > 0 then redis.call('RPUSH', KEYS[4], unpack(consent)) end
  strays = strays + #conversation / 2 + #history + #consent
end
redis.call('HSET', KEYS[6], 'sealed', '1')
return strays
"""

_REMEMBER = """
if redis.call('HGET', KEYS[1], 'id') ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], 'plan', ARGV[2])
return 1
"""

_CLOSE = """
if redis.call('HGET', KEYS[1], 'id') ~= ARGV[1] then return 0 end
redis.call('DEL', unpack(KEYS))
return 1
"""


@dataclass(frozen=True)
class Journal:
    id: str
    op: str  # merge | fold | unmerge
    survivor: str
    absorbed: str
    reason: str
    hints: list[str]
    plan: dict[str, Any]  # what `apply` must reproduce on a replay: the tombstone, or the undo


def expected(side: Side) -> bytes:
    """What `apply` checks the survivor still is (compared field by field, not hashed)."""
    return orjson.dumps({
        "c": dict(side.profile) or {}, "v": dict(side.conversation) or {},
        "h": [len(side.history), side.history[-1] if side.history else ""],
        "s": [len(side.consent), side.consent[-1] if side.consent else ""],
    })


class Steps:
    def __init__(self, redis: Redis) -> None:
        self.redis = redis
        self._begin = redis.register_script(_BEGIN)
        self._apply = redis.register_script(_APPLY)
        self._remember = redis.register_script(_REMEMBER)
        self._seal = redis.register_script(_SEAL)
        self._close = redis.register_script(_CLOSE)

    async def begin(self, jid: str, op: str, survivor: str, absorbed: str, reason: str, hints: Sequence[str],
                    now: float) -> list[str]:
        await self.redis.zadd(keys.JOURNALS, {absorbed: now})  # before the journal: the sweeper finds it
        found = await self._begin(
            keys=[*contact_parts(absorbed), keys.journal(absorbed), *copies(absorbed)],
            args=[jid, op, survivor, reason, f"{now:.3f}", orjson.dumps(sorted(hints))])
        return [str(f) for f in found]

    async def journal(self, absorbed: str) -> Journal | None:
        found: dict[str, str] = await self.redis.hgetall(keys.journal(absorbed))  # type: ignore[assignment]
        if not found:
            return None
        return Journal(found["id"], found["op"], found["survivor"], absorbed, found["reason"],
                       orjson.loads(found["hints"]), orjson.loads(found.get("plan", "{}")))

    async def remember(self, journal: Journal, plan: dict[str, Any]) -> None:
        """Keep `plan` in the journal, unless the journal was closed meanwhile (not to recreate it)."""
        await self._remember(keys=[keys.journal(journal.absorbed)], args=[journal.id, orjson.dumps(plan)])

    async def read(self, cid: str, copy: bool = False) -> Side:
        """One contact, consistently (a read-only MULTI on its slot); `copy`: the journal's copy."""
        c, v, h, s, _ = copies(cid) if copy else contact_parts(cid)
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hgetall(c)
            pipe.hgetall(v)
            pipe.lrange(h, 0, -1)
            pipe.lrange(s, 0, -1)
            profile, conversation, history, consent = await pipe.execute()
        return Side(cid, profile, conversation, history, consent)

    async def copied_dedupes(self, absorbed: str) -> list[tuple[str, float]]:
        found: list[tuple[str, float]] = await self.redis.zrange(  # type: ignore[assignment]
            keys.journal_copy(absorbed, "dd"), 0, -1, withscores=True)
        return [(str(member), float(score)) for member, score in found]

    async def apply(self, journal: Journal, side: Side, ops: list[Op]) -> str:
        """'applied', 'done' (by an earlier run of this journal) or 'changed' (read again, re-plan)."""
        result = await self._apply(
            keys=[*contact_parts(journal.survivor), keys.applied(journal.survivor)],
            args=[journal.absorbed, journal.id, expected(side), orjson.dumps(ops)])
        return str(result)

    async def seal(self, journal: Journal, profile: dict[str, str], restore: bool) -> int:
        """Replace the absorbed profile; returns how many strays were kept (-1: sealed before)."""
        found = await self._seal(keys=[*contact_parts(journal.absorbed), keys.journal(journal.absorbed),
                                       *copies(journal.absorbed)],
                                 args=[journal.id, orjson.dumps(profile), "restore" if restore else "tombstone"])
        return int(found)

    async def close(self, journal: Journal) -> None:
        await self._close(keys=[keys.journal(journal.absorbed), *copies(journal.absorbed)], args=[journal.id])
        await self.redis.zrem(keys.JOURNALS, journal.absorbed)

    async def stale(self, older_than: float, now: float) -> list[str]:
        return [str(a) for a in await self.redis.zrangebyscore(keys.JOURNALS, "-inf", now - older_than)]
