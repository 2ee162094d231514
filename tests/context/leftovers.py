"""Every place in Redis that still mentions something: key names and values of every type."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from redis.asyncio import Redis

# The CRM feed keeps the ids of erased contacts on purpose (contact.erased must name who); their
# other events, which hold names, phones and texts, are deleted by the erase (bot.context.privacy).
FEED_PREFIXES = ("omni:ev:", "omni:evs:")


async def values(client: Redis, key: str) -> list[str]:
    redis: Any = client  # decode_responses=True: every reply is str, which the stubs cannot know
    kind = await redis.type(key)
    found: list[Any]
    if kind == "string":
        found = [await redis.get(key)]
    elif kind == "hash":
        found = [f"{k}={v}" for k, v in (await redis.hgetall(key)).items()]
    elif kind == "list":
        found = await redis.lrange(key, 0, -1)
    elif kind == "set":
        found = await redis.smembers(key)
    elif kind == "zset":
        found = await redis.zrange(key, 0, -1)
    elif kind == "stream":
        found = [f"{k}={v}" for _, fields in await redis.xrange(key) for k, v in fields.items()]
    else:
        raise AssertionError(f"{key}: unexpected type {kind}")
    return [str(v) for v in found]


async def references(redis: Redis, needles: Iterable[str]) -> list[str]:
    """`key: value` for every key whose name or any value contains one of `needles`."""
    wanted = [n for n in needles if n]
    found = []
    async for key in redis.scan_iter(count=1000):
        if key.startswith(FEED_PREFIXES):
            continue
        for text in [key, *await values(redis, key)]:
            if any(n in text for n in wanted):
                found.append(f"{key}: {text}")
    return found
