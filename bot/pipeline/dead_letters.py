"""Dead letters: inbound entries that failed every attempt, kept with their error for a person to judge.

Each partition has its own dead-letter stream (`omni:dead:{p<n>}`, capped), in the partition's slot,
so moving an entry there and acknowledging it is one MULTI, and so is putting it back: `retry`
appends the original fields to the partition's inbound stream again (as a new entry, behind whatever
the contact sent since) and removes the letter. Letters are named `<partition>:<stream id>`.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass

from redis.asyncio import Redis

from bot.context import keys

DEAD_LETTER_CAP = 10_000  # per partition
ERROR_CHARS = 500


@dataclass(frozen=True)
class DeadLetter:
    entry_id: str
    contact_id: str
    body: dict[str, str]  # the entry's own fields: `e` (an event) or `k` (a command)
    error: str
    attempts: int
    at: float

    @classmethod
    def of(cls, entry_id: str, fields: dict[str, str], exc: BaseException, attempts: int) -> DeadLetter:
        body = {name: value for name, value in fields.items() if name in ("e", "k")}
        error = f"{type(exc).__name__}: {exc}"[:ERROR_CHARS]
        return cls(entry_id, fields.get("c", ""), body, error, attempts, time.time())


@dataclass(frozen=True)
class StoredLetter:
    id: str  # "<partition>:<dead-letter stream id>"
    partition: int
    letter: DeadLetter


def stage(pipe: object, p: int, letter: DeadLetter) -> None:
    """Queue the letter on a MULTI of partition `p` (the caller acknowledges the entry in it too)."""
    fields = {"c": letter.contact_id, "src": letter.entry_id, "err": letter.error,
              "n": str(letter.attempts), "at": f"{letter.at:.3f}", **letter.body}
    pipe.xadd(keys.dead(p), fields, maxlen=DEAD_LETTER_CAP, approximate=True)  # type: ignore[attr-defined]


class BadLetterId(ValueError):
    """Not a dead-letter id of this hub."""


_LETTER_ID = re.compile(r"([0-9]{1,4}):([0-9]{1,20}-[0-9]{1,20})")


def parse_id(letter_id: str, partitions: int) -> tuple[int, str]:
    found = _LETTER_ID.fullmatch(letter_id)
    if found is not None and int(found.group(1)) < partitions:
        return int(found.group(1)), found.group(2)
    raise BadLetterId(f"{letter_id!r} is not a dead-letter id (expected '<partition>:<stream id>')")


class DeadLetters:
    def __init__(self, redis: Redis, partitions: int) -> None:
        self.redis = redis
        self.partitions = partitions

    async def list(self, limit: int = 100) -> list[StoredLetter]:
        """The newest letters of every partition, newest first."""
        async with self.redis.pipeline(transaction=False) as pipe:
            for p in range(self.partitions):
                pipe.xrevrange(keys.dead(p), count=limit)
            pages = await pipe.execute()
        letters = [_stored(p, entry_id, fields) for p, page in enumerate(pages) for entry_id, fields in page]
        letters.sort(key=lambda stored: stored.letter.at, reverse=True)
        return letters[:limit]

    async def get(self, letter_id: str) -> StoredLetter | None:
        p, entry_id = parse_id(letter_id, self.partitions)
        found = await self.redis.xrange(keys.dead(p), entry_id, entry_id)
        return _stored(p, *found[0]) if found else None  # type: ignore[arg-type]

    async def retry(self, letter_id: str) -> bool:
        """Put the entry back on its partition's inbound stream; False if there is no such letter."""
        stored = await self.get(letter_id)
        if stored is None:
            return False
        p, entry_id = parse_id(letter_id, self.partitions)
        async with self.redis.pipeline(transaction=True) as pipe:
            fields: dict[str, str] = {"c": stored.letter.contact_id, **stored.letter.body}
            pipe.xadd(keys.inbound(p), fields)  # type: ignore[arg-type]
            pipe.xdel(keys.dead(p), entry_id)
            await pipe.execute()
        return True

    async def drop(self, letter_id: str) -> bool:
        p, entry_id = parse_id(letter_id, self.partitions)
        return bool(await self.redis.xdel(keys.dead(p), entry_id))


def _stored(p: int, entry_id: str, fields: dict[str, str]) -> StoredLetter:
    body = {name: value for name, value in fields.items() if name in ("e", "k")}
    letter = DeadLetter(fields.get("src", ""), fields.get("c", ""), body, fields.get("err", ""),
                        int(fields.get("n", "0")), float(fields.get("at", "0")))
    return StoredLetter(f"{p}:{entry_id}", p, letter)
