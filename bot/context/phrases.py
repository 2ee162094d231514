"""The dialogs' fixed words, kept once: a history entry names them by digest instead of repeating them.

Most of what the bot says is the same for everyone — a text of the dialogs whose template reads no
variable (`Text.fixed`: the opening hours, the delivery terms), in one language, and the rows of
buttons titled by such texts (`Dialogs.fixed_buttons`) — and stored in every entry it was most of a
history's bytes. Instead the entry holds an 11-character digest of the words (`tk` for a text, `bk`
for a row of buttons as JSON, see bot.context.history) and `omni:phrases` maps digests to words.

- Only the dialogs' own fixed words go into the table, never a text rendered with a customer's name
  nor what an agent typed: the table is shared by every contact and an erase leaves it alone.
- A worker writes its dialogs' fixed words into the table when it takes a partition (`publish`), and
  names a phrase in an entry only once that write is done, so a digest in an entry is in the table.
- The table only grows: a digest names the same words forever, so an entry written before the dialogs
  were edited still reads as it was sent, and a reader may cache every digest it has looked up.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterable, Sequence
from typing import Any

import orjson
from redis.asyncio import Redis

from bot.context import keys
from bot.models import Button


def buttons_words(buttons: Sequence[Button]) -> str:
    """A row of buttons as words for the table: their JSON, as an entry would store them."""
    return orjson.dumps([b.model_dump() for b in buttons]).decode()


def buttons_of(words: str) -> tuple[Button, ...]:
    return tuple(Button.model_validate(b) for b in orjson.loads(words))


def digest(words: str) -> str:
    """64 bits of BLAKE2b, URL-safe base64: 11 characters."""
    raw = hashlib.blake2b(words.encode(), digest_size=8).digest()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


class Phrases:
    def __init__(self, redis: Redis) -> None:
        self.redis = redis
        self._mine: dict[str, str] = {}  # words -> digest: the fixed words of this process's dialogs
        self._named: dict[str, str] = {}  # words -> digest: published, so entries may name them
        self._words: dict[str, str] = {}  # digest -> words: every digest this process knows

    def learn(self, words: Iterable[str]) -> None:
        """The fixed words of the dialogs this process answers with (named in entries once published)."""
        self._mine.update((text, digest(text)) for text in words if text)

    async def publish(self) -> None:
        """Write this process's words into the table. A worker does it whenever it takes a partition, so
        a Redis that lost its data (and with it every lease) has them again before a turn names one."""
        if self._mine:
            await self.redis.hset(keys.PHRASES, mapping={d: w for w, d in self._mine.items()})
            self._named = dict(self._mine)
            self._words.update((d, w) for w, d in self._mine.items())

    def named(self, words: str | None) -> str | None:
        """The digest an entry holds instead of `words`, if they are fixed words in the table."""
        return self._named.get(words) if words else None

    async def words(self, digests: Iterable[str]) -> dict[str, str]:
        """The words of each digest (one HMGET for those not known yet); a digest missing from the
        table is left out."""
        wanted = set(digests)
        missing = sorted(wanted - self._words.keys())
        if missing:
            found = await self.redis.hmget(keys.PHRASES, missing)
            self._words.update((d, str(w)) for d, w in zip(missing, found, strict=True) if w is not None)
        return {d: self._words[d] for d in wanted if d in self._words}

    async def spelled(self, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Stored entries as raw dicts (an export) with the words of their phrases put back (`tx`, `btn`)."""
        words = await self.words(row[k] for row in rows for k in ("tk", "bk") if k in row)
        return [_spelled(row, words) for row in rows]


def _spelled(row: dict[str, Any], words: dict[str, str]) -> dict[str, Any]:
    row = dict(row)
    if row.get("tk") in words and "tx" not in row:
        row["tx"] = words[row["tk"]]
    if row.get("bk") in words and "btn" not in row:
        row["btn"] = orjson.loads(words[row["bk"]])
    return row
