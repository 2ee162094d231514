"""Merge two contacts into one, atomically, and take a merge back.

The two contacts' keys live under different hash tags, so no single MULTI on Redis Cluster covers
them. On one Redis (or Sentinel) this module uses optimistic locking: WATCH both contacts' keys, read,
compute the result (`merge_plan`), write everything in one MULTI; if anything watched changed in
between, nothing is written and the merge starts over. Index keys are repointed by a compare-and-set
inside that MULTI (`stage_repoint`), so they need no WATCH. A reader sees either two contacts or one,
never half of each. The Cluster protocol (journaled,
idempotent steps) is described in docs/architecture.md, "Identity and merge".

Workers write a contact without WATCH (one owner per partition makes it unnecessary), so a turn that
loaded the absorbed contact before the merge may commit after it, onto the tombstone. The worker
sees that in its commit (the profile has `merged_into`) and calls `fold`, which moves those late
writes to the survivor by the same rules.
"""

from __future__ import annotations

import time
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

import orjson
from redis.asyncio import Redis

from bot.context import keys
from bot.context.events import stage_event
from bot.context.identity import Identities, stage_repoint
from bot.context.merge_plan import TOMBSTONE, Plan, Side, plan
from bot.context.store import CONSENT_TRAIL_CAP, MODES
from bot.context.watched import until_committed


class MergeError(Exception):
    """A merge or unmerge refused; `status` is the HTTP answer the API gives."""

    status = 409


class SameContact(MergeError):
    status = 422


class UnknownContact(MergeError):
    status = 404


class Busy(MergeError):
    status = 503


@dataclass(frozen=True)
class Merged:
    survivor: str
    absorbed: str
    event_id: str | None  # the `contact.merged` event; None for a fold


def _busy() -> Busy:
    return Busy("the contacts kept changing while merging; try again")


def contact_keys(cid: str) -> list[str]:
    return [keys.contact(cid), keys.conversation(cid), keys.history(cid), keys.consent(cid)]


class Merger:
    def __init__(self, redis: Redis, identities: Identities, history_cap: int, dedupe_ttl: int) -> None:
        self.redis = redis
        self.identities = identities
        self.history_cap = history_cap
        self.dedupe_ttl = dedupe_ttl

    async def merge(self, survivor: str, absorbed: str, reason: str, hints: Collection[str] = ()) -> Merged:
        """Absorb `absorbed` into `survivor`. `hints`: index keys known to point at `absorbed` that its
        profile may not list yet (a contact whose first message is still in its stream)."""
        if survivor == absorbed:
            raise SameContact(f"cannot merge contact {survivor!r} with itself")
        return await until_committed(lambda: self._merge(survivor, absorbed, reason, set(hints)), _busy)

    async def fold(self, absorbed: str) -> Merged | None:
        """Move writes that landed on a tombstone after its merge to the contact that absorbed it."""

        async def attempt() -> Merged | None:
            survivor = await self.identities.live(absorbed)
            return None if survivor == absorbed else await self._merge(survivor, absorbed, "fold", set())

        return await until_committed(attempt, _busy)

    async def unmerge(self, survivor: str, absorbed: str) -> str:
        """Give `absorbed` back its identities, phones, tags and profile; returns the event id.
        History, consent trail and attributes learned since stay with the survivor."""
        return await until_committed(lambda: self._unmerge(survivor, absorbed), _busy)

    async def _read(self, *cids: str) -> list[Side]:
        async with self.redis.pipeline(transaction=False) as pipe:
            for cid in cids:
                pipe.hgetall(keys.contact(cid))
                pipe.hgetall(keys.conversation(cid))
                pipe.lrange(keys.history(cid), 0, -1)
                pipe.lrange(keys.consent(cid), 0, -1)
            found = await pipe.execute()
        return [Side(cid, *found[4 * n : 4 * n + 4]) for n, cid in enumerate(cids)]

    async def _merge(self, survivor: str, absorbed: str, reason: str, hints: set[str]) -> Merged:
        fold = reason == "fold"
        async with self.redis.pipeline(transaction=True) as pipe:
            await pipe.watch(*contact_keys(survivor), *contact_keys(absorbed))
            s, a = await self._read(survivor, absorbed)
            if s.merged_into:
                raise MergeError(f"contact {survivor!r} was merged into {s.merged_into!r}")
            if a.merged_into and not fold:
                raise MergeError(f"contact {absorbed!r} was merged into {a.merged_into!r} already")
            if a.empty and not hints:
                raise UnknownContact(f"no contact {absorbed!r}")
            now = time.time()
            result = plan(s, a, now, self.history_cap, CONSENT_TRAIL_CAP)
            index = self.identities.index_keys({k: v for k, v in a.profile.items() if k not in TOMBSTONE}) | hints
            pipe.multi()  # type: ignore[no-untyped-call]
            self._stage(pipe, survivor, absorbed, result, index, now)
            event = None if fold else stage_event(
                pipe, "contact.merged", survivor, {"survivor": survivor, "absorbed": absorbed, "reason": reason}
            )
            await pipe.execute()
        return Merged(survivor, absorbed, event["id"] if event else None)

    def _stage(
        self, pipe: Any, survivor: str, absorbed: str, p: Plan, index: Collection[str], now: float
    ) -> None:
        if p.profile:
            pipe.hset(keys.contact(survivor), mapping=p.profile)
        if p.conversation is not None:
            if p.replace_conversation:
                pipe.delete(keys.conversation(survivor))
            pipe.hset(keys.conversation(survivor), mapping=p.conversation)
        for key, entries in ((keys.history(survivor), p.history), (keys.consent(survivor), p.consent)):
            if entries is not None:
                pipe.delete(key)
                pipe.rpush(key, *entries)
        pipe.zunionstore(keys.deduped(survivor), [keys.deduped(survivor), keys.deduped(absorbed)], aggregate="MAX")
        pipe.expire(keys.deduped(survivor), self.dedupe_ttl)
        for key in index:
            stage_repoint(pipe, key, absorbed, survivor)
        for tag in p.tags:
            pipe.srem(keys.tag(tag), absorbed)
            pipe.sadd(keys.tag(tag), survivor)
        for mode in MODES:
            pipe.zrem(keys.by_mode(mode), absorbed)
        if p.mode:
            old, new = p.mode
            if old:
                pipe.zrem(keys.by_mode(old), survivor)
            pipe.zadd(keys.by_mode(new), {survivor: now})
        pipe.delete(*contact_keys(absorbed), keys.deduped(absorbed))
        pipe.hset(keys.contact(absorbed), mapping=p.tombstone)

    async def _unmerge(self, survivor: str, absorbed: str) -> str:
        async with self.redis.pipeline(transaction=True) as pipe:
            await pipe.watch(keys.contact(survivor), keys.contact(absorbed))
            s, a = await self._read(survivor, absorbed)
            if a.empty:
                raise UnknownContact(f"no contact {absorbed!r}")
            if a.merged_into != survivor:
                raise MergeError(f"contact {absorbed!r} is not merged into {survivor!r}")
            undo = orjson.loads(a.profile["undo"])
            index = self.identities.index_keys(undo["profile"])
            pipe.multi()  # type: ignore[no-untyped-call]
            self._stage_unmerge(pipe, s, absorbed, undo, index)
            event = stage_event(pipe, "contact.unmerged", survivor, {"survivor": survivor, "absorbed": absorbed})
            await pipe.execute()
        return str(event["id"])

    @staticmethod
    def _stage_unmerge(pipe: Any, s: Side, absorbed: str, undo: dict[str, Any], index: Collection[str]) -> None:
        original: dict[str, str] = undo["profile"]
        moved: list[str] = undo["moved"]
        if gone := [f for f in moved if f in s.profile]:
            pipe.hdel(keys.contact(s.cid), *gone)
        phone, before = original.get("phone"), undo["phone_before"]
        if phone and s.profile.get("phone") == phone and phone != before:
            if before:
                pipe.hset(keys.contact(s.cid), "phone", before)
            else:
                pipe.hdel(keys.contact(s.cid), "phone")
        pipe.delete(keys.contact(absorbed))
        pipe.hset(keys.contact(absorbed), mapping={**original, "unmerged_at": f"{time.time():.3f}"})
        for key in index:
            stage_repoint(pipe, key, s.cid, absorbed)
        for name in original:
            if name.startswith("t:"):
                pipe.sadd(keys.tag(name[2:]), absorbed)
                if name in moved:
                    pipe.srem(keys.tag(name[2:]), s.cid)
