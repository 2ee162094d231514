"""Console sessions and the login rate limit, kept in Redis so any API process can check them.

The cookie holds a random token; Redis holds only its SHA-256 (`omni:session:<sha256>`), so a dump of
Redis hands out no usable cookie, and logout deletes the key: a copied cookie dies with the session.
Each session carries its own CSRF token, which state-changing requests must echo in a header.
Failed logins are counted for five minutes per email and client address, and per address alone with a
higher limit (`omni:login:<sha256>`), so one address cannot try a password on many emails either.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass

from redis.asyncio import Redis

SESSION_TTL_SECONDS = 12 * 3600  # idle time after which a session lapses (renewed on every use)
LOGIN_WINDOW_SECONDS = 300
LOGIN_FAILURES_ALLOWED = 5  # per email and address
ADDRESS_FAILURES_ALLOWED = 50  # per address, whatever the emails


def _digest(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def session_key(token: str) -> str:
    return f"omni:session:{_digest(token)}"


def login_failures_key(email: str | None, client: str) -> str:
    """The failure counter of an email at an address, or (email None) of the address alone."""
    who = f"{email.strip().lower()}|{client}" if email is not None else f"address|{client}"
    return f"omni:login:{_digest(who)}"


@dataclass(frozen=True)
class Session:
    token: str
    agent_id: str
    csrf: str

    def csrf_matches(self, presented: str | None) -> bool:
        return presented is not None and secrets.compare_digest(presented.encode(), self.csrf.encode())


class Sessions:
    def __init__(self, redis: Redis, ttl: int = SESSION_TTL_SECONDS) -> None:
        self.redis, self.ttl = redis, ttl

    async def open(self, agent_id: str) -> Session:
        session = Session(secrets.token_urlsafe(32), agent_id, secrets.token_urlsafe(32))
        key = session_key(session.token)
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hset(key, mapping={"agent": agent_id, "csrf": session.csrf})
            pipe.expire(key, self.ttl)
            await pipe.execute()
        return session

    async def find(self, token: str | None) -> Session | None:
        """The live session of a cookie's token (its idle timer restarted), or None."""
        if not token:
            return None
        key = session_key(token)
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.hgetall(key)
            pipe.expire(key, self.ttl)
            stored, _ = await pipe.execute()
        if not stored or "agent" not in stored or "csrf" not in stored:
            return None
        return Session(token, str(stored["agent"]), str(stored["csrf"]))

    async def close(self, token: str) -> None:
        await self.redis.delete(session_key(token))


class LoginLimiter:
    """Wrong passwords allowed in the window: a few per email and address, more per address."""

    def __init__(self, redis: Redis) -> None:
        self.redis = redis

    async def blocked(self, email: str, client: str) -> bool:
        async with self.redis.pipeline(transaction=False) as pipe:  # two keys, maybe two slots: no MULTI
            pipe.get(login_failures_key(email, client))
            pipe.get(login_failures_key(None, client))
            for_email, for_address = await pipe.execute()
        return int(for_email or 0) >= LOGIN_FAILURES_ALLOWED or int(for_address or 0) >= ADDRESS_FAILURES_ALLOWED

    async def failed(self, email: str, client: str) -> None:
        async with self.redis.pipeline(transaction=False) as pipe:
            for key in (login_failures_key(email, client), login_failures_key(None, client)):
                # the window starts at the first failure; the TTL exists before the count does, so no
                # crash can leave a counter that never expires
                pipe.set(key, 0, ex=LOGIN_WINDOW_SECONDS, nx=True)
                pipe.incr(key)
            await pipe.execute()

    async def succeeded(self, email: str, client: str) -> None:
        await self.redis.delete(login_failures_key(email, client))
