"""Privacy requests: export everything held about a contact, and erase it.

What a contact is made of, and so what erase removes:

- its keys (`omni:{cid}:c|v|h|consent|dd`) and, for every contact it absorbed, the tombstone and its
  undo record (which keeps that contact's original profile);
- every index key derived from those profiles (`Identities.index_keys`) — deleted only while it
  still points at one of these ids, so a number that moved on to someone else is left alone;
- segment index entries (tags, channels, consent, language, attributes, dates: `indexes.forget`),
  mode index entries, its live link code, its identities' link-code try counters;
- the dedupe keys of its messages, found through `omni:{cid}:dd` (their names hold provider ids,
  not the contact's), so the work is bounded by the messages of the last dedupe TTL, never a SCAN;
- its entries still in the partition streams (not yet trimmed, or not yet processed — those are
  then never answered), the feed's events of it not yet delivered among them, found by reading
  those streams, whose length the trimming bounds; its outbox (`omni:{cid}:ev`).

Erase runs without WATCH as steps of one slot each, in an order a crash cannot spoil: the contact's
profile is what says what to delete, so it goes last. First it gets a stable erase id (`erasing`),
then the derived keys go — index keys and link codes by a check-and-delete script, only if they still
name one of these ids — then tag and mode entries, dedupe keys, stream entries and the tombstones,
then the contact's own keys. Run again after a crash, it finds the same things (and the same id). A
turn that loaded the contact before the erase and commits after it recreates keys; the worker
notices (`Linker.settle`) and erases again. The `contact.erased` event (ids only) is derived from the
erase id, so a repeat emits nothing new (`bot.crm.outbox.Emitter`).
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any, cast

import orjson
from redis.asyncio import Redis

from bot.context import indexes, keys
from bot.context.consent import consent_trail
from bot.context.identity import Identities, stage_drop_owned
from bot.context.journal import contact_parts, copies
from bot.crm.events import CloudEvent, ContactErased
from bot.crm.outbox import Emitter

STREAM_PAGE = 1000


class Privacy:
    def __init__(self, redis: Redis, identities: Identities, partitions: int) -> None:
        self.redis = redis
        self.identities = identities
        self.partitions = partitions
        self.emitter = Emitter(redis, partitions)

    async def export(self, cid: str) -> dict[str, Any] | None:
        """Every record held about `cid`, raw; None when there is no such contact."""
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.hgetall(keys.contact(cid))
            pipe.hgetall(keys.conversation(cid))
            pipe.lrange(keys.history(cid), 0, -1)
            profile, conversation, history = await pipe.execute()
        if not profile or "merged_into" in profile:
            return None
        absorbed = await self._tombstones(profile)
        return {
            "id": cid,
            "exported_at": datetime.now(UTC).isoformat(),
            "profile": profile,
            "conversation": conversation,
            "history": await self.identities.store.phrases.spelled([orjson.loads(e) for e in history]),
            "consent": await consent_trail(self.redis, cid),
            "merged": [{"id": a, **{k: v for k, v in t.items() if k != "undo"}, "profile": _original(t)}
                       for a, t in absorbed.items()],
        }

    async def erase(self, cid: str) -> str | None:
        """Erase `cid`; returns the `contact.erased` event id, None when there was nothing to erase."""
        async with self.redis.pipeline(transaction=False) as read:
            read.hgetall(keys.contact(cid))
            read.exists(keys.conversation(cid), keys.history(cid))
            profile, other_keys = await read.execute()
        if "merged_into" in profile or not (profile or other_keys):
            return None  # nothing, or a tombstone (erased with its survivor)
        await self.redis.hsetnx(keys.contact(cid), "erasing", uuid.uuid4().hex)
        profile = cast(dict[str, str], await self.redis.hgetall(keys.contact(cid)))
        event_id = profile["erasing"]
        absorbed = await self._tombstones(profile)
        owners = {cid, *absorbed}
        profiles = [profile, *absorbed.values(), *(_original(t) for t in absorbed.values())]
        index = set().union(*(self.identities.index_keys(p) for p in profiles))
        index |= {keys.link_code(p["lc"]) for p in profiles if "lc" in p}
        async with self.redis.pipeline(transaction=False) as pipe:
            self._stage_derived(pipe, owners, profiles, index, await self._dedupe_keys(owners))
            await pipe.execute()
        await self._drop_stream_entries(owners)
        event = CloudEvent.of(ContactErased(contact_id=cid, absorbed=sorted(absorbed)), cid, event_id)
        await self.emitter.emit_once(event)
        for owner in [*absorbed, cid]:  # the contact's own profile last: it lists what to delete
            await self.redis.delete(*contact_parts(owner), keys.applied(owner), keys.journal(owner), *copies(owner),
                                    keys.outbox(owner), keys.campaign_states(owner))
        return event.id

    async def _tombstones(self, profile: dict[str, str]) -> dict[str, dict[str, str]]:
        absorbed = [name[2:] for name in profile if name.startswith("m:")]
        async with self.redis.pipeline(transaction=False) as pipe:
            for a in absorbed:
                pipe.hgetall(keys.contact(a))
            return dict(zip(absorbed, await pipe.execute(), strict=True))

    @staticmethod
    def _stage_derived(
        pipe: Any, owners: set[str], profiles: list[dict[str, str]], index: set[str], dedupes: list[str]
    ) -> None:
        for key in index:
            stage_drop_owned(pipe, key, owners)
        for profile in profiles:
            for name in profile:
                if name.startswith("i:"):
                    channel, _, user_id = name[2:].partition(":")
                    pipe.delete(keys.link_tries(channel, user_id))
        indexes.forget(pipe, owners, profiles)  # tags and every other segment index
        for mode in indexes.MODES:
            pipe.zrem(keys.by_mode(mode), *owners)
        for key in dedupes:  # one key a command: they are in the slots of their partitions
            pipe.delete(key)

    async def _dedupe_keys(self, owners: set[str]) -> list[str]:
        async with self.redis.pipeline(transaction=False) as pipe:
            for owner in owners:
                pipe.zrange(keys.deduped(owner), 0, -1)
            return [key for found in await pipe.execute() for key in found]

    async def _drop_stream_entries(self, owners: set[str]) -> None:
        """Delete the contacts' entries still in their partitions' streams: inbound, outbound, and the
        feed's events not yet delivered (they carry names, phones and texts)."""
        for p in {keys.partition_of(o, self.partitions) for o in owners}:
            for stream in (keys.inbound(p), keys.inbound_bulk(p), keys.outbound(p), keys.bulk(p), keys.events(p)):
                doomed: list[str] = []
                start = "-"
                while page := await self._page(stream, start):
                    doomed += [entry_id for entry_id, fields in page if _names(fields, owners)]
                    if len(page) < STREAM_PAGE:
                        break
                    start = "(" + page[-1][0]
                if doomed:
                    await self.redis.xdel(stream, *doomed)

    async def _page(self, stream: str, start: str) -> list[tuple[str, dict[str, str]]]:
        found = await self.redis.xrange(stream, start, "+", count=STREAM_PAGE)
        page = cast(list[tuple[str, dict[str, str] | None]], found)
        return [(entry_id, fields or {}) for entry_id, fields in page]  # a deleted entry has no fields


def _names(fields: dict[str, str], owners: set[str]) -> bool:
    if fields.get("c") in owners:
        return True
    message = fields.get("m")
    return message is not None and orjson.loads(message).get("contact_id") in owners


def _original(tombstone: dict[str, str]) -> dict[str, str]:
    undo = tombstone.get("undo")
    profile: dict[str, str] = orjson.loads(undo)["profile"] if undo else {}
    return profile
