"""Which contact a channel identity or a phone number belongs to.

Index keys (`omni:id:<channel>:<user id>`, `omni:id:phone:<E.164>`) map identities to contact ids; the
contact's profile lists the same identities (`i:<channel>:<user id>`), its main `phone` and any further
numbers that resolve to it (`p:<E.164>`, gained in merges). The two must agree, so every index key that
may point at a contact is derived from its profile in one place, `index_keys`: merge repoints exactly
these keys and erase deletes exactly these.

WhatsApp and SMS identities resolve through the phone index, so one number is one contact on both
from the first message; the number is normalised first, so every spelling of it meets.
"""

from __future__ import annotations

import time
from collections.abc import Collection, Mapping
from typing import Any

from redis.asyncio import Redis

from bot.context import keys
from bot.context.phones import BadPhone, normalise
from bot.context.store import ContextStore

MAX_CHAIN = 8  # merged_into hops followed; a longer chain means something rewrote tombstones by hand

# Index keys change only if they still say what the caller expects when the script runs, so merge and
# erase need no WATCH on them; each is a one-key script, as Redis Cluster wants.
_REPOINT = """
local owner = redis.call('GET', KEYS[1])
if owner == false or owner == ARGV[1] then redis.call('SET', KEYS[1], ARGV[2]) end
return 0
"""
_DROP_OWNED = """
local value = redis.call('GET', KEYS[1])
if not value then return 0 end
local owner = string.match(value, '^[^:]*')
for i = 1, #ARGV do
  if owner == ARGV[i] then return redis.call('DEL', KEYS[1]) end
end
return 0
"""


def stage_repoint(pipe: Any, key: str, old: str, new: str) -> None:
    """Queue on a pipeline: point `key` at `new` if it then points at `old` or at no one."""
    pipe.eval(_REPOINT, 1, key, old, new)


def stage_drop_owned(pipe: Any, key: str, owners: Collection[str]) -> None:
    """Queue on a pipeline: delete `key` if its value (`<cid>` or `<cid>:...`) then names one of `owners`."""
    pipe.eval(_DROP_OWNED, 1, key, *owners)


class Identities:
    def __init__(self, redis: Redis, store: ContextStore, region: str) -> None:
        self.redis = redis
        self.store = store
        self.region = region

    def user(self, channel: str, user_id: str) -> str:
        """The user id as the index stores it: E.164 on phone channels. Raises `BadPhone`."""
        return normalise(user_id, self.region) if channel in keys.PHONE_CHANNELS else user_id

    def _lenient_user(self, channel: str, user_id: str) -> str:
        """As `user`, but a provider's unreadable number is kept as sent: the message must not be lost."""
        try:
            return self.user(channel, user_id)
        except BadPhone:
            return user_id

    async def resolve(self, channel: str, user_id: str) -> str:
        """The contact of an inbound identity, created on first sight (race-free, see ContextStore)."""
        return await self.store.resolve(channel, self._lenient_user(channel, user_id))

    async def owner(self, channel: str, user_id: str) -> str | None:
        """Who an inbound identity resolves to now (None: nobody — never seen, or erased)."""
        found = await self.redis.get(keys.identity(channel, self._lenient_user(channel, user_id)))
        return str(found) if found else None

    def key(self, channel: str, user_id: str) -> str:
        """The index key of an identity given by a caller (raises `BadPhone` on a phone channel)."""
        return keys.identity(channel, self.user(channel, user_id))

    async def lookup(self, channel: str, user_id: str) -> str | None:
        found = await self.redis.get(self.key(channel, user_id))
        return str(found) if found else None

    async def by_phone(self, raw: str) -> str | None:
        """The contact a number resolves to; raises `BadPhone`."""
        found = await self.redis.get(keys.phone(normalise(raw, self.region)))
        return str(found) if found else None

    def index_keys(self, profile: Mapping[str, str]) -> set[str]:
        """Every index key that may point at the contact with this profile."""
        found = set()
        for name in profile:
            if name.startswith("i:"):
                channel, _, user_id = name[2:].partition(":")
                found.add(keys.identity(channel, self._lenient_user(channel, user_id)))
            elif name.startswith("p:"):
                found.add(keys.phone(name[2:]))
        if phone := profile.get("phone"):
            found.add(keys.phone(phone))
        return found

    async def live(self, cid: str) -> str:
        """Follow `merged_into` (or `merging_into`: a merge under way) markers to the contact that
        absorbed `cid` (itself when not merged)."""
        for _ in range(MAX_CHAIN):
            merged, merging = await self.redis.hmget(keys.contact(cid), "merged_into", "merging_into")
            if not (merged or merging):
                return cid
            cid = str(merged or merging)
        raise RuntimeError(f"merged_into chain longer than {MAX_CHAIN} from {cid}")

    async def claim_phone(self, cid: str, e164: str) -> str:
        """Give an unknown number to `cid`; returns the number's owner (`cid`, or who had it already)."""
        key = keys.phone(e164)
        if not await self.redis.set(key, cid, nx=True):
            owner = await self.redis.get(key)
            if owner:
                return str(owner)
            return await self.claim_phone(cid, e164)  # its owner was erased in between
        profile = keys.contact(cid)
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hsetnx(profile, "phone", e164)
            pipe.hsetnx(profile, "created", f"{time.time():.0f}")  # the turn sets it only on an empty profile
            pipe.hget(profile, "phone")
            _, _, main = await pipe.execute()
        if main != e164:  # a second number of the same customer
            await self.redis.hset(profile, f"p:{e164}", "1")
        return cid
