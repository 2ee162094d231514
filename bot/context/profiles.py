"""What a CRM writes onto a contact: name, language, preferred channel, attributes and tags.

Tags are profile fields (`t:<tag>`) and members of a tag index set (`omni:tag:<tag>`), so "contacts
tagged vip" is one SSCAN, never a scan of profiles. Both change in one MULTI, under a WATCH of the
profile so that a merge or an erase running at the same time wins cleanly: the patch is then
retried, and refused if the contact is gone or was merged away.

The preferred channel is learned — `pref`, the channel of the last inbound message, written by
every turn — unless someone set one explicitly (`pref_set`), which then wins until it is cleared.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from redis.asyncio import Redis

from bot.context import keys
from bot.context.watched import until_committed


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

    async def change(self, cid: str, change: ProfileChange) -> None:
        """Apply `change`; raises `GoneContact`."""
        await until_committed(
            lambda: self._change(cid, change), lambda: RuntimeError(f"contact {cid} kept changing while being updated"))

    async def _change(self, cid: str, change: ProfileChange) -> None:
        profile_key = keys.contact(cid)
        async with self.redis.pipeline(transaction=True) as pipe:
            await pipe.watch(profile_key)
            async with self.redis.pipeline(transaction=False) as read:
                read.exists(profile_key)
                read.hget(profile_key, "merged_into")
                exists, merged_into = await read.execute()
            if merged_into or not exists:
                raise GoneContact(cid, merged_into)
            pipe.multi()  # type: ignore[no-untyped-call]
            self._stage(pipe, cid, change)
            await pipe.execute()

    @staticmethod
    def _stage(pipe: Any, cid: str, change: ProfileChange) -> None:
        now = f"{time.time():.0f}"
        values = {name: value for name, value in change.fields.items() if value is not None}
        values.update({f"t:{tag}": now for tag in change.add_tags})
        gone = [name for name, value in change.fields.items() if value is None]
        gone += [f"t:{tag}" for tag in change.remove_tags]
        if values:
            pipe.hset(keys.contact(cid), mapping=values)
        if gone:
            pipe.hdel(keys.contact(cid), *gone)
        for tag in change.add_tags:
            pipe.sadd(keys.tag(tag), cid)
        for tag in change.remove_tags:
            pipe.srem(keys.tag(tag), cid)

    async def tagged(self, tag: str, cursor: int, count: int) -> tuple[int, list[str]]:
        """A page of the contacts carrying `tag`: (next cursor, 0 at the end; contact ids)."""
        next_cursor, members = await self.redis.sscan(keys.tag(tag), cursor, count=count)
        return int(next_cursor), sorted(str(m) for m in members)
