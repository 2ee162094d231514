"""What a CRM writes onto a contact: name, language, preferred channel, attributes and tags.

Tags are profile fields (`t:<tag>`) and members of a tag index set (`omni:tag:<tag>`), so "contacts
tagged vip" is one SSCAN, never a scan of profiles. The profile changes in one script on the
contact's slot that first checks the contact is there and not merged (or being merged) away — a
merge or an erase running at the same time wins cleanly, and the patch is refused. The tag index is
kept outside it as a superset of the profiles (bot.context.indexes): added to before, removed from
after.

The preferred channel is learned — `pref`, the channel of the last inbound message, written by
every turn — unless someone set one explicitly (`pref_set`), which then wins until it is cleared.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson
from redis.asyncio import Redis

from bot.context import indexes, keys

_CHANGE = """
if redis.call('EXISTS', KEYS[1]) == 0 then return {0} end
local away = redis.call('HMGET', KEYS[1], 'merged_into', 'merging_into')
if away[1] or away[2] then return {0, away[1] or away[2]} end
for name, value in pairs(cjson.decode(ARGV[1])) do redis.call('HSET', KEYS[1], name, value) end
local gone = cjson.decode(ARGV[2])
if #gone > 0 then redis.call('HDEL', KEYS[1], unpack(gone)) end
return {1}
"""


class GoneContact(LookupError):
    """No such contact, or it was merged into another (`merged_into`)."""

    def __init__(self, cid: str, merged_into: str | None = None) -> None:
        super().__init__(f"contact {cid!r} was merged into {merged_into!r}" if merged_into else f"no contact {cid!r}")
        self.merged_into = merged_into


def preferred_channel(profile: Mapping[str, str]) -> str | None:
    return profile.get("pref_set") or profile.get("pref")


@dataclass(frozen=True)
class ProfileChange:
    """Profile fields to set (a value) or remove (None), and tags to add and remove."""

    fields: Mapping[str, str | None] = field(default_factory=dict)
    add_tags: Iterable[str] = ()
    remove_tags: Iterable[str] = ()


class Profiles:
    def __init__(self, redis: Redis) -> None:
        self.redis = redis
        self._change = redis.register_script(_CHANGE)

    async def change(self, cid: str, change: ProfileChange) -> None:
        """Apply `change`; raises `GoneContact`."""
        added, removed = list(change.add_tags), list(change.remove_tags)
        now = f"{time.time():.0f}"
        values = {name: value for name, value in change.fields.items() if value is not None}
        values.update({f"t:{tag}": now for tag in added})
        gone = [name for name, value in change.fields.items() if value is None] + [f"t:{tag}" for tag in removed]
        await self._index(lambda pipe: indexes.tag(pipe, cid, added))
        done, *away = await self._change(keys=[keys.contact(cid)], args=[orjson.dumps(values), orjson.dumps(gone)])
        if not done:
            await self._index(lambda pipe: indexes.untag(pipe, [cid], added))
            raise GoneContact(cid, str(away[0]) if away else None)
        await self._index(lambda pipe: indexes.untag(pipe, [cid], removed))

    async def _index(self, stage: Callable[[Any], None]) -> None:
        async with self.redis.pipeline(transaction=False) as pipe:
            stage(pipe)
            if len(pipe):
                await pipe.execute()

    async def tagged(self, tag: str, cursor: int, count: int) -> tuple[int, list[str]]:
        """A page of the contacts carrying `tag`: (next cursor, 0 at the end; contact ids)."""
        next_cursor, members = await self.redis.sscan(keys.tag(tag), cursor, count=count)
        return int(next_cursor), sorted(str(m) for m in members)
