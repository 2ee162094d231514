"""Reading what a CRM wrote onto a contact: the preferred channel, and contacts by tag.

Tags are profile fields (`t:<tag>`) and members of a tag index set (`omni:tag:<tag>`), so "contacts
tagged vip" is one SSCAN, never a scan of profiles. Writes go through the contact's partition as an
`UpdateContact` command (bot.pipeline.commands), so the worker is their one writer and the feed gets
their events; the tag index is kept around that commit as a superset (bot.context.store, indexes).

The preferred channel is learned — `pref`, the channel of the last inbound message, written by
every turn — unless someone set one explicitly (`pref_set`), which then wins until it is cleared.
"""

from __future__ import annotations

from collections.abc import Mapping

from redis.asyncio import Redis

from bot.context import keys


def preferred_channel(profile: Mapping[str, str]) -> str | None:
    return profile.get("pref_set") or profile.get("pref")


class Profiles:
    def __init__(self, redis: Redis) -> None:
        self.redis = redis

    async def tagged(self, tag: str, cursor: int, count: int) -> tuple[int, list[str]]:
        """A page of the contacts carrying `tag`: (next cursor, 0 at the end; contact ids)."""
        next_cursor, members = await self.redis.sscan(keys.tag(tag), cursor, count=count)
        return int(next_cursor), sorted(str(m) for m in members)
