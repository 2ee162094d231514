"""Console sessions and the login rate limit, kept in Redis so any API process can check them.

The cookie holds a random token; Redis holds only its SHA-256 (`omni:session:<sha256>`), so a dump of
Redis hands out no usable cookie, and logout deletes the key: a copied cookie dies with the session.
Each session carries its own CSRF token, which state-changing requests must echo in a header.
Failed logins are counted per email and client address (`omni:login:<sha256>`) for five minutes.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass

from redis.asyncio import Redis

SESSION_TTL_SECONDS = 12 * 3600  # idle time after which a session lapses (renewed on every use)
LOGIN_WINDOW_SECONDS = 300
LOGIN_FAILURES_ALLOWED = 5


def _digest(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def session_key(token: str) -> str:
    return f"omni:session:{_digest(token)}"


def login_failures_key(email: str, client: str) -> str:
    return f"omni:login:{_digest(f'{email.strip().lower()}|{client}')}"


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
    """At most `LOGIN_FAILURES_ALLOWED` wrong passwords per email and address in the window."""

    def __init__(self, redis: Redis) -> None:
        self.redis = redis

    async def blocked(self, email: str, client: str) -> bool:
        failures = await self.redis.get(login_failures_key(email, client))
        return failures is not None and int(failures) >= LOGIN_FAILURES_ALLOWED

    async def failed(self, email: str, client: str) -> None:
        key = login_failures_key(email, client)
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.incr(key)
            pipe.expire(key, LOGIN_WINDOW_SECONDS, nx=True)  # the window starts at the first failure
            await pipe.execute()

    async def succeeded(self, email: str, client: str) -> None:
        await self.redis.delete(login_failures_key(email, client))
