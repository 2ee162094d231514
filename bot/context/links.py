"""One-time link codes: "continue in WhatsApp" proves that two channel identities are one customer.

A code is 6 characters of an alphabet without look-alikes (no 0/O, 1/I/L), always mixing letters and
digits, so an order number or a word is never mistaken for one. It is valid for `ttl` seconds and
once; its key is kept for a day after issue (value "used" once redeemed) so that a customer who
comes back late hears "expired" or "already used" rather than nothing. A contact holds at most one
live code (`lc` on its profile): issuing a new one deletes the previous, and erase finds it there.

Guessing is limited per identity: after `max_tries` wrong codes within `window` seconds, that identity
cannot redeem any code until the window passes. Attempts of one identity are processed one at a
time (they share a partition), so the count cannot be raced; 31^6 ≈ 887 million codes against 5
guesses per 10 minutes per identity.
"""

from __future__ import annotations

import re
import secrets
import time
from dataclasses import dataclass
from typing import Literal

from redis.asyncio import Redis

from bot.context import keys

ALPHABET = "ABCDEFGHJKMNPQRSTUVWXYZ23456789"
LENGTH = 6
RETENTION = 86_400  # how long a code's key outlives its validity, to tell "expired" from "unknown"
_SHAPE = re.compile(rf"[{ALPHABET}]{{{LENGTH}}}")

Status = Literal["ok", "expired", "used", "unknown", "locked"]

# Redeem once, atomically: two identities racing for one code cannot both get it.
_REDEEM = """
local value = redis.call('GET', KEYS[1])
if not value then return {'unknown'} end
if value == 'used' then return {'used'} end
local cid, expires = string.match(value, '^(.*):([%d.]+)$')
if tonumber(ARGV[1]) > tonumber(expires) then return {'expired'} end
redis.call('SET', KEYS[1], 'used', 'KEEPTTL')
return {'ok', cid}
"""


def as_code(text: str | None) -> str | None:
    """The code `text` spells (any case, spaces around), or None when it cannot be one."""
    if not text:
        return None
    candidate = text.strip().upper()
    if not _SHAPE.fullmatch(candidate) or candidate.isalpha() or candidate.isdigit():
        return None
    return candidate


def new_code() -> str:
    while True:
        code = "".join(secrets.choice(ALPHABET) for _ in range(LENGTH))
        if as_code(code):
            return code


@dataclass(frozen=True)
class Redemption:
    status: Status
    contact: str | None = None  # who issued the code, when `status` is "ok"


class LinkCodes:
    def __init__(self, redis: Redis, ttl: int = 600, max_tries: int = 5, window: int = 600) -> None:
        self.redis = redis
        self.ttl = ttl
        self.max_tries = max_tries
        self.window = window
        self._redeem = redis.register_script(_REDEEM)

    async def issue(self, cid: str) -> str:
        """A fresh code for `cid`; its previous code stops working."""
        expires = time.time() + self.ttl
        code = new_code()
        while not await self.redis.set(keys.link_code(code), f"{cid}:{expires:.3f}", nx=True, ex=RETENTION):
            code = new_code()  # taken by another contact's live code
        previous = await self.redis.hget(keys.contact(cid), "lc")
        await self.redis.hset(keys.contact(cid), "lc", code)
        if previous:
            await self.forget(cid, str(previous))
        return code

    async def forget(self, cid: str, code: str) -> None:
        """Delete `code` if it is still `cid`'s (a redeemed code's key no longer names anyone)."""
        key = keys.link_code(code)
        value = await self.redis.get(key)
        if value and str(value).startswith(f"{cid}:"):
            await self.redis.delete(key)

    async def redeem(self, code: str, channel: str, user_id: str) -> Redemption:
        """Use `code` from the identity `channel`/`user_id`; a failure counts against that identity."""
        tries = keys.link_tries(channel, user_id)
        if int(await self.redis.get(tries) or 0) >= self.max_tries:
            return Redemption("locked")
        status, *issuer = await self._redeem(keys=[keys.link_code(code)], args=[f"{time.time():.3f}"])
        if status == "ok":
            return Redemption("ok", str(issuer[0]))
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.set(tries, 0, nx=True, ex=self.window)  # the window starts at the first wrong code
            pipe.incr(tries)
            await pipe.execute()
        return Redemption(status)
