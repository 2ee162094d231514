"""Read and write a contact's context in Redis, a few fields at a time.

A contact is four keys under one hash tag: a profile hash, a conversation hash, a history list and a
consent trail.
A turn reads both hashes in one round trip and writes only the fields it changed, plus the new
history entries, in one MULTI — never the whole blob (the mistake of Rasa's tracker store).
History entries whose text is one of the dialogs' fixed words are written naming them by digest
(bot.context.phrases) and read back with the words filled in.

Profile hash fields: `name`, `phone`, `lang`, `pref` (preferred channel), `created`,
`i:<channel>:<user id>` (identities, value = first seen), `seen:<channel>` (last inbound),
`a:<attribute>`, `t:<tag>`, `cs:<channel>:<purpose>` (consent, see context.consent).
Conversation hash fields: `mode` (bot | queued | assigned | resolved), `ch`/`uid` (where the customer
wrote last; replies go there), `st` (dialog state JSON), `opt` (numbered options on offer), `last` (the
last inbound stream entry whose effects are saved — how a replay after a crash is recognised), `lastb`
(the same for the bulk inbound lane: bot.pipeline.worker), `at`.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson
from redis.asyncio import Redis

from bot.context import indexes, keys
from bot.context.history import HistoryEntry
from bot.context.phrases import Phrases, buttons_of, buttons_words
from bot.crm import outbox
from bot.crm.events import CloudEvent

LAST_BULK = "lastb"  # the conversation's `last` for the bulk inbound lane
CONSENT_TRAIL_CAP = 500  # consent changes kept per contact (see bot.context.consent)

# A message's status only moves forward: callbacks arrive late and out of order, and a "delivered"
# posted after "read" must not undo it. failed / undelivered / blocked end the story.
STATUS_RANK = {"queued": 0, "sent": 1, "delivered": 2, "read": 3, "failed": 4, "undelivered": 4, "blocked": 4}

# Update one history entry, found by a field value among the newest entries, without racing a
# concurrent RPUSH/LTRIM (a script runs atomically). cjson ships with Redis' Lua. A status (`st`,
# with its `err`) that does not rank above the entry's current one is left out; other fields apply.
_UPDATE_HISTORY = """
local rank = cjson.decode(ARGV[5])
local entries = redis.call('LRANGE', KEYS[1], -tonumber(ARGV[3]), -1)
local needle = '"' .. ARGV[1] .. '":"' .. ARGV[2] .. '"'
for i = #entries, 1, -1 do
  if string.find(entries[i], needle, 1, true) then
    local entry = cjson.decode(entries[i])
    local changes = cjson.decode(ARGV[4])
    local new, old = rank[changes.st or ''], rank[entry.st or '']
    if new and old and new <= old then
      changes.st, changes.err = nil, nil
    end
    for k, v in pairs(changes) do entry[k] = v end
    local updated = cjson.encode(entry)
    redis.call('LSET', KEYS[1], i - #entries - 1, updated)
    return updated
  end
end
return false
"""
_RANKS = orjson.dumps(STATUS_RANK)


def new_id(prefix: str = "") -> str:
    return prefix + secrets.token_hex(8)


@dataclass
class Snapshot:
    """A contact's profile and conversation as read at the start of a turn, and where each campaign
    it is in stands (campaign id -> JSON, bot.campaigns.steps)."""

    cid: str
    profile: dict[str, str]
    conversation: dict[str, str]
    campaigns: dict[str, str] = field(default_factory=dict)

    @property
    def attributes(self) -> dict[str, str]:
        return {k[2:]: v for k, v in self.profile.items() if k.startswith("a:")}

    @property
    def tags(self) -> list[str]:
        return sorted(k[2:] for k in self.profile if k.startswith("t:"))

    @property
    def identities(self) -> list[dict[str, str]]:
        found = []
        for k in self.profile:
            if k.startswith("i:"):
                channel, _, user_id = k[2:].partition(":")
                found.append({"channel": channel, "id": user_id})
        return found

    @property
    def mode(self) -> str:
        return self.conversation.get("mode", "bot")


@dataclass
class Changes:
    """What one turn changes; empty parts cost nothing."""

    profile: dict[str, str] = field(default_factory=dict)
    conversation: dict[str, str] = field(default_factory=dict)
    history: list[HistoryEntry] = field(default_factory=list)
    drop_conversation_fields: list[str] = field(default_factory=list)
    drop_profile_fields: list[str] = field(default_factory=list)
    consent: list[dict[str, Any]] = field(default_factory=list)  # audit rows (bot.context.consent)
    mode: tuple[str, str] | None = None  # (old, new) when the conversation changes mode
    events: list[CloudEvent] = field(default_factory=list)  # for the CRM feed, into the outbox (bot.crm.outbox)
    campaigns: dict[str, str] = field(default_factory=dict)  # campaign id -> the contact's new state in it
    cause: str = ""  # the stream entry of the turn (bot.pipeline.worker.Lane.source): its events' outbox tag


class ContextStore:
    def __init__(self, redis: Redis, history_cap: int = 200) -> None:
        self.redis = redis
        self.history_cap = history_cap
        self.phrases = Phrases(redis)
        self._update_history = redis.register_script(_UPDATE_HISTORY)

    async def resolve(self, channel: str, user_id: str) -> str:
        """The contact id of a channel identity, created on first sight (race-free: SET NX)."""
        key = keys.identity(channel, user_id)
        found = await self.redis.get(key)
        if found:
            return str(found)
        candidate = new_id("c")
        if await self.redis.set(key, candidate, nx=True):
            return candidate
        return str(await self.redis.get(key))

    async def load(self, cid: str) -> Snapshot:
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.hgetall(keys.contact(cid))
            pipe.hgetall(keys.conversation(cid))
            pipe.hgetall(keys.campaign_states(cid))
            profile, conversation, campaigns = await pipe.execute()
        return Snapshot(cid, profile, conversation, campaigns)

    async def commit(self, cid: str, changes: Changes) -> tuple[bool, str | None]:
        """Write a turn's changes; returns whether the profile existed and its `merged_into` (or
        `merging_into`) as the MULTI found them — how a worker learns that the contact was erased or
        merged away while the turn ran (see bot.context.linking, `settle`).

        The MULTI touches the contact's slot only; a mode change is entered in the global mode index
        before it and left after it, and so are the segment indexes the profile fields it sets and
        drops name (bot.context.indexes); the MULTI reads the old language and attribute values it
        replaces, whose entries are then left."""
        since = time.time()
        entered = indexes.entries(changes.profile)
        replaced = indexes.replaced([*changes.profile, *changes.drop_profile_fields])
        if changes.mode or entered:
            async with self.redis.pipeline(transaction=False) as before:
                if changes.mode:
                    indexes.enter_mode(before, cid, changes.mode[1], since)
                indexes.enter(before, cid, entered)
                await before.execute()
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.exists(keys.contact(cid))
            pipe.hmget(keys.contact(cid), "merged_into", "merging_into", *replaced)
            pipe.hget(keys.conversation(cid), indexes.MODE_SINCE)
            self.stage(pipe, cid, changes, since)
            existed, (merged_into, merging_into, *old), old_since, *_ = await pipe.execute()
        left = changes.mode is not None and changes.mode[0] and changes.mode[0] != changes.mode[1]
        gone, revealed = indexes.left(dict(zip(replaced, old, strict=True)), changes.profile,
                                      changes.drop_profile_fields)
        if left or gone or revealed:
            async with self.redis.pipeline(transaction=False) as after:
                if changes.mode and left:
                    indexes.leave_mode(after, cid, changes.mode[0], old_since)
                indexes.leave(after, [cid], gone)
                indexes.enter(after, cid, indexes.Entries(revealed))
                await after.execute()
        return bool(existed), merged_into or merging_into

    def stage(self, pipe: Any, cid: str, changes: Changes, since: float) -> None:
        """Queue a turn's writes to the contact's keys on a MULTI; `since`: the mode index score."""
        conversation = dict(changes.conversation)
        if changes.mode:
            conversation[indexes.MODE_SINCE] = repr(since)
        if changes.profile:
            pipe.hset(keys.contact(cid), mapping=changes.profile)
        if changes.drop_profile_fields:
            pipe.hdel(keys.contact(cid), *changes.drop_profile_fields)
        if conversation:
            pipe.hset(keys.conversation(cid), mapping=conversation)
        if changes.drop_conversation_fields:
            pipe.hdel(keys.conversation(cid), *changes.drop_conversation_fields)
        if changes.history:
            pipe.rpush(keys.history(cid), *(orjson.dumps(self._phrased(e).stored()) for e in changes.history))
            pipe.ltrim(keys.history(cid), -self.history_cap, -1)
        if changes.consent:
            pipe.rpush(keys.consent(cid), *(orjson.dumps(row) for row in changes.consent))
            pipe.ltrim(keys.consent(cid), -CONSENT_TRAIL_CAP, -1)
        if changes.campaigns:
            pipe.hset(keys.campaign_states(cid), mapping=changes.campaigns)
        outbox.stage(pipe, cid, changes.events, changes.cause)

    async def update_history(
        self, cid: str, match: tuple[str, str], changes: dict[str, Any], depth: int = 100, client: Any = None
    ) -> HistoryEntry | None:
        """Set fields on the newest history entry whose `match[0]` equals `match[1]`; the entry as it is
        now, or None when there is none.

        With a pipeline as `client` the call is only queued (and the answer — the entry's JSON or None —
        comes with its results; this returns None),
        by SHA: redis-py would otherwise send SCRIPT EXISTS before the pipeline, a round trip of its
        own. Redis forgets scripts only when it restarts; then that result is a `NoScriptError`, and
        a call without a pipeline loads the script again.
        """
        args: list[str | int | bytes] = [match[0], match[1], depth, orjson.dumps(changes), _RANKS]
        if client is not None:
            # a raw EVALSHA: redis-py's cluster pipeline blocks its `evalsha` method but routes this by its keys
            client.execute_command("EVALSHA", self._update_history.sha, 1, keys.history(cid), *args)
            return None
        updated = await self._update_history(keys=[keys.history(cid)], args=args)
        return (await self._read([updated]))[0] if updated is not None else None

    async def history(self, cid: str, start: int = 0, limit: int = 50) -> tuple[int, list[HistoryEntry]]:
        """Entries oldest first, `start` counting from the oldest kept; returns (total, page)."""
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.llen(keys.history(cid))
            pipe.lrange(keys.history(cid), start, start + limit - 1)
            total, raw = await pipe.execute()
        return int(total), await self._read(raw)

    async def recent_history(self, cid: str, count: int) -> list[HistoryEntry]:
        return await self._read(await self.redis.lrange(keys.history(cid), -count, -1))

    def _phrased(self, entry: HistoryEntry) -> HistoryEntry:
        """The entry naming its text and buttons by digest where they are fixed words of the dialogs."""
        named = {"phrase": self.phrases.named(entry.text) if entry.phrase is None else None,
                 "buttons_phrase": self.phrases.named(buttons_words(entry.buttons))
                 if entry.buttons and entry.buttons_phrase is None else None}
        update = {field: digest for field, digest in named.items() if digest}
        return entry.model_copy(update=update) if update else entry

    async def _read(self, raw: Sequence[str | bytes]) -> list[HistoryEntry]:
        """Stored entries with the words of their phrases filled in."""
        entries = [HistoryEntry.read(r) for r in raw]
        texts = {e.phrase for e in entries if e.phrase and e.text is None}
        rows = {e.buttons_phrase for e in entries if e.buttons_phrase and not e.buttons}
        if not texts and not rows:
            return entries
        words = await self.phrases.words(texts | rows)
        return [self._spelled(e, words) for e in entries]

    @staticmethod
    def _spelled(entry: HistoryEntry, words: dict[str, str]) -> HistoryEntry:
        update: dict[str, Any] = {}
        if entry.phrase and entry.text is None:
            update["text"] = words.get(entry.phrase)
        if entry.buttons_phrase and not entry.buttons and entry.buttons_phrase in words:
            update["buttons"] = buttons_of(words[entry.buttons_phrase])
        return entry.model_copy(update=update) if update else entry
