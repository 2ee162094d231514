"""Merge two contacts into one, and take a merge back — as a journal of single-slot steps.

The two contacts' keys live under different hash tags, so no MULTI on Redis Cluster covers both. A
merge of A into S is therefore a journaled protocol whose steps each touch one slot and are
idempotent (the scripts are in bot.context.journal); the same protocol runs on one Redis, so there
is one code path, tested on both:

1. `begin` on A's slot: the journal `omni:{A}:j` (listed in `omni:journals` for the sweeper), a copy
   of A's keys, and the mark `merging_into` — from here A's worker forwards A's events to S;
2. `apply` on S's slot: the merge rules (`merge_plan`) applied in one script, skipped if this
   journal was applied already, re-planned if S changed since it was read (optimistic, like WATCH);
3. `seal` on A's slot: A becomes its tombstone (`merged_into`, `undo`); what a late turn wrote on A
   after step 1 stays there as strays, and is folded into S by the same protocol;
4. index keys repointed by compare-and-set (`GET == A` → `SET S`), tag and mode entries moved;
5. the `contact.merged` event, whose id is the journal's — delivered at least once, the same id
   on a replay, so a consumer drops a repeat by id (CloudEvents `id`);
6. `close`: the journal and its copies deleted.

A crash anywhere leaves the journal; `sweep` (and anyone who meets the journal) replays it from
step 2. Workers write a contact without WATCH, so a turn that loaded A before step 1 may commit after
it: its commit sees `merging_into`/`merged_into` and the worker calls `fold`. Unmerge is the same
journal with the undo record: S loses what A brought, A gets its profile back, its index keys and
tags return.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Collection
from dataclasses import dataclass
from functools import partial
from typing import Any, cast

import orjson
from redis.asyncio import Redis

from bot.context import indexes, keys
from bot.context.identity import Identities, stage_repoint
from bot.context.journal import Journal, Steps
from bot.context.merge_plan import MERGING, TOMBSTONE, Op, Side, ops, plan
from bot.context.store import CONSENT_TRAIL_CAP
from bot.crm.events import CloudEvent, ContactMerged, ContactUnmerged, event_id
from bot.crm.outbox import Emitter

log = logging.getLogger(__name__)
ATTEMPTS = 50  # re-plans when the survivor keeps changing under the merge
STALE = 60.0  # seconds after which the sweeper replays a journal nobody finished


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


class Merger:
    def __init__(self, redis: Redis, identities: Identities, history_cap: int, dedupe_ttl: int, partitions: int
                 ) -> None:
        self.redis = redis
        self.emitter = Emitter(redis, partitions)
        self.identities = identities
        self.history_cap = history_cap
        self.dedupe_ttl = dedupe_ttl
        self.steps = Steps(redis)

    async def merge(self, survivor: str, absorbed: str, reason: str, hints: Collection[str] = ()) -> Merged:
        """Absorb `absorbed` into `survivor`. `hints`: index keys known to point at `absorbed` that its
        profile may not list yet (a contact whose first message is still in its stream)."""
        if survivor == absorbed:
            raise SameContact(f"cannot merge contact {survivor!r} with itself")
        s = await self.steps.read(survivor)
        if into := s.merged_into or s.profile.get(MERGING):
            raise MergeError(f"contact {survivor!r} was merged into {into!r}")
        journal = await self._begin("merge", survivor, absorbed, reason, hints)
        await self.replay(journal)
        return Merged(survivor, absorbed, event_id(ContactMerged.type, survivor, journal.id))

    async def fold(self, absorbed: str) -> Merged | None:
        """Move writes that landed on a (to be) tombstone after its merge began to the contact that
        absorbed it. A merge still under way is finished first (its seal folds what it finds); a
        write after that seal is folded here."""
        if journal := await self.steps.journal(absorbed):
            await self.replay(journal)
        survivor = await self.identities.live(absorbed)
        if survivor == absorbed or not await self._has_strays(absorbed):
            return None
        journal = await self._begin("fold", await self._direct(absorbed), absorbed, "fold", ())
        await self.replay(journal)
        return Merged(journal.survivor, absorbed, None)

    async def unmerge(self, survivor: str, absorbed: str) -> str:
        """Give `absorbed` back its identities, phones, tags and profile; returns the event id.
        History, consent trail and attributes learned since stay with the survivor."""
        journal = await self._begin("unmerge", survivor, absorbed, "unmerge", ())
        await self.replay(journal)
        return event_id(ContactUnmerged.type, journal.survivor, journal.id)

    async def sweep(self, older_than: float = STALE) -> int:
        """Replay the journals nobody finished within `older_than` seconds; returns how many."""
        done = 0
        for absorbed in await self.steps.stale(older_than, time.time()):
            journal = await self.steps.journal(absorbed)
            if journal is None:  # listed, then crashed before `begin`; or closed meanwhile
                await self.redis.zrem(keys.JOURNALS, absorbed)
                continue
            log.warning("replaying the %s journal %s of contact %s", journal.op, journal.id, absorbed)
            await self.replay(journal)
            done += 1
        return done

    async def _begin(self, op: str, survivor: str, absorbed: str, reason: str, hints: Collection[str]) -> Journal:
        jid = uuid.uuid4().hex
        for _ in range(ATTEMPTS):
            status, *detail = await self.steps.begin(jid, op, survivor, absorbed, reason, list(hints), time.time())
            journal = await self.steps.journal(absorbed)
            if status == "ok" and journal:
                return journal
            if status == "busy" and journal:  # another merge of `absorbed` under way, or crashed: finish it
                await self.replay(journal)
                continue
            await self.redis.zrem(keys.JOURNALS, absorbed)
            if status == "unknown":
                raise UnknownContact(f"no contact {absorbed!r}")
            if status == "merged":
                raise MergeError(f"contact {absorbed!r} was merged into {detail[0]!r} already")
            if status == "not merged":
                raise MergeError(f"contact {absorbed!r} is not merged into {survivor!r}")
        raise Busy("the contacts kept changing while merging; try again")

    async def replay(self, journal: Journal) -> None:
        """Steps 2 to 6 of `journal`; safe to run again, and by several at once."""
        a = await self.steps.read(journal.absorbed, copy=True)
        restore = journal.op == "unmerge"
        sealed_profile = await (self._apply_unmerge(journal, a) if restore else self._apply_merge(journal, a))
        strays = await self.steps.seal(journal, sealed_profile, restore)
        if strays < 0 and await self.steps.journal(journal.absorbed) is None:
            return  # someone else finished this journal meanwhile
        if restore:
            undo = orjson.loads(a.profile.get("undo", '{"profile": {}, "moved": []}'))
            moved = [name[2:] for name in undo["moved"] if name.startswith("t:")]
            await self._indexes(journal, undo["profile"], journal.survivor, journal.absorbed, moved)
            await self._unmerged_segments(journal, undo)
        else:
            await self._indexes(journal, {k: v for k, v in a.profile.items() if k not in TOMBSTONE},
                                journal.absorbed, journal.survivor, None)
        if journal.op != "fold":  # the journal's id is the cause: a journal finished twice emits once
            pair = {"survivor": journal.survivor, "absorbed": journal.absorbed}
            data = ContactUnmerged(**pair) if restore else ContactMerged(**pair, reason=journal.reason)
            await self.emitter.emit_once(CloudEvent.of(data, journal.survivor, journal.id))
        await self.steps.close(journal)
        if strays > 0 and not restore:
            await self.fold(journal.absorbed)

    async def _apply_merge(self, journal: Journal, a: Side) -> dict[str, str]:
        """Step 2 of a merge or fold; returns the tombstone for step 3."""
        for _ in range(ATTEMPTS):
            s = await self.steps.read(journal.survivor)
            now = time.time()
            result = plan(s, a, now, self.history_cap, CONSENT_TRAIL_CAP)
            tombstone = journal.plan.get("tombstone") or result.tombstone
            if "tombstone" not in journal.plan:
                await self.steps.remember(journal, {"tombstone": tombstone})
            commands = ops(result, await self.steps.copied_dedupes(journal.absorbed), self.dedupe_ttl, now)
            new_mode = result.conversation.get("mode") if result.conversation and result.replace_conversation else None
            if new_mode:  # the mode index is a superset: enter before, leave after
                await self._index(partial(indexes.enter_mode, cid=journal.survivor, mode=new_mode, since=now))
            # the segment indexes too: what the survivor gains before, the values it loses after
            await self._index(partial(indexes.enter, cid=journal.survivor, found=indexes.entries(result.profile)))
            status = await self.steps.apply(journal, s, commands)
            if status == "changed":
                continue
            if status == "applied":
                old = {name: s.profile.get(name) for name in indexes.replaced(result.profile)}
                gone, _ = indexes.left(old, result.profile, ())
                await self._index(partial(indexes.leave, cids=[journal.survivor], set_keys=gone))
            old_mode = s.conversation.get("mode")
            if status == "applied" and new_mode and old_mode and old_mode != new_mode:
                since = s.conversation.get(indexes.MODE_SINCE)
                await self._index(partial(indexes.leave_mode, cid=journal.survivor, mode=old_mode, since=since))
            return dict(tombstone)
        raise Busy("the survivor kept changing while merging; try again")

    async def _apply_unmerge(self, journal: Journal, a: Side) -> dict[str, str]:
        """Step 2 of an unmerge: the survivor gives back what `a` brought; returns `a`'s own profile."""
        undo = orjson.loads(a.profile["undo"]) if "undo" in a.profile else {"profile": {}, "moved": []}
        original: dict[str, str] = undo["profile"]
        for _ in range(ATTEMPTS):
            s = await self.steps.read(journal.survivor)
            commands: list[Op] = []
            if gone := [f for f in undo["moved"] if f in s.profile]:
                commands.append(["HDEL", 1, *gone])
            phone, before = original.get("phone"), undo.get("phone_before")
            if phone and s.profile.get("phone") == phone and phone != before:
                commands.append(["HSET", 1, "phone", before] if before else ["HDEL", 1, "phone"])
            if await self.steps.apply(journal, s, commands) != "changed":
                return {**original, "unmerged_at": f"{time.time():.3f}"}
        raise Busy("the survivor kept changing while unmerging; try again")

    async def _indexes(
        self, journal: Journal, profile: dict[str, str], old: str, new: str, untag: list[str] | None
    ) -> None:
        """Step 4: the index keys and tag entries of `profile` move from `old` to `new` (`untag`: only
        these tags leave `old`; all, when None); a merge also moves the mode entries."""
        index = self.identities.index_keys(profile) | set(journal.hints)
        tags = [name[2:] for name in profile if name.startswith("t:")]
        mode, since = [str(v) if v else None for v in
                       await self.redis.hmget(keys.conversation(journal.survivor), "mode", indexes.MODE_SINCE)]

        def stage(pipe: Any) -> None:
            for key in index:
                stage_repoint(pipe, key, old, new)
            indexes.tag(pipe, new, tags)
            indexes.untag(pipe, [old], tags if untag is None else untag)
            if journal.op != "unmerge":
                indexes.forget(pipe, [old], [profile])  # the absorbed contact, out of every segment index
                for name in indexes.MODES:
                    indexes.leave_mode(pipe, journal.absorbed, name, None)
                if mode and since:
                    indexes.enter_mode(pipe, journal.survivor, mode, float(since))

        await self._index(stage)

    async def _unmerged_segments(self, journal: Journal, undo: dict[str, Any]) -> None:
        """Step 4 of an unmerge, for the segment indexes: the absorbed contact is back in those of its
        profile; the survivor leaves the channels whose identities (or phone) went back with it."""
        survivor = cast(dict[str, str], await self.redis.hgetall(keys.contact(journal.survivor)))
        moved = {name: "" for name in undo["moved"] if name.startswith(("i:", "t:"))}
        gone = indexes.entries({**moved, "phone": ""}).sets - indexes.entries(survivor).sets - {keys.EVERYONE}

        def stage(pipe: Any) -> None:
            indexes.enter(pipe, journal.absorbed, indexes.entries(undo["profile"]))
            indexes.leave(pipe, [journal.survivor], gone)

        await self._index(stage)

    async def _index(self, stage: Callable[[Any], None]) -> None:
        async with self.redis.pipeline(transaction=False) as pipe:
            stage(pipe)
            if len(pipe):
                await pipe.execute()

    async def _has_strays(self, cid: str) -> bool:
        profile = await self.redis.hgetall(keys.contact(cid))
        if any(k not in TOMBSTONE for k in profile):
            return True
        return bool(await self.redis.exists(keys.conversation(cid), keys.history(cid), keys.consent(cid)))

    async def _direct(self, absorbed: str) -> str:
        return str(await self.redis.hget(keys.contact(absorbed), "merged_into"))
