"""Agents in Redis: who they are, whether they are online, and how many conversations they hold.

An agent's profile and its load (the contact ids it holds) share the hash tag `{a<id>}`, so the
capacity check and the reservation are one script on one slot — two claims racing for an agent's
last free place cannot both get it, on a single Redis or a Cluster. The email index is a key of its
own taken with `SET NX`: two agents can never share an email. Presence is a zset of last heartbeats;
"online" is a heartbeat within `handoff.idle_seconds`, so an agent whose browser died goes offline
by itself.
"""

from __future__ import annotations

import asyncio
import builtins
import functools
import secrets
import time
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import orjson
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from redis.asyncio import Redis

from bot.context import keys

Role = Literal["agent", "supervisor", "admin", "marketer"]
_hasher = PasswordHasher()


@functools.cache
def _dummy_hash() -> str:
    """Checked when an email is unknown, so a wrong email costs as long as a wrong password."""
    return _hasher.hash(secrets.token_hex(16))


async def _hash(password: str) -> str:
    """argon2 takes tens of milliseconds of CPU: off the event loop, so other requests go on."""
    return await asyncio.to_thread(_hasher.hash, password)


def _matches(stored: str, password: str) -> bool:
    try:
        return _hasher.verify(stored, password)
    except (VerificationError, InvalidHashError):
        return False


_RESERVE = """
if redis.call('ZSCORE', KEYS[1], ARGV[1]) then return 1 end
local agent = redis.call('HMGET', KEYS[2], 'capacity', 'disabled')
if not agent[1] or agent[2] == '1' then return 0 end
if redis.call('ZCARD', KEYS[1]) >= tonumber(agent[1]) then return 0 end
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[1])
return 1
"""


class AgentError(Exception):
    """An agent operation refused; `status` is the HTTP status it maps to."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


class NewAgent(BaseModel):
    """What it takes to create an agent (the API's body; the CLI builds one too)."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    email: str = Field(pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$", max_length=254)
    name: str = Field(min_length=1, max_length=200)
    password: str = Field(min_length=8, max_length=1024)
    role: Role = "agent"
    teams: list[str] = Field(default_factory=lambda: ["support"], max_length=50)
    capacity: int | None = Field(None, ge=1, le=1000)
    languages: list[str] = Field(default_factory=list, max_length=20)  # empty: any language


class Agent(BaseModel):
    """An agent as stored, without the password hash."""

    model_config = ConfigDict(frozen=True)

    id: str
    email: str
    name: str
    role: Role
    teams: tuple[str, ...]
    capacity: int
    languages: tuple[str, ...] = ()
    disabled: bool = False
    created_at: float = 0.0

    @classmethod
    def stored(cls, agent_id: str, fields: Mapping[Any, Any]) -> Agent:
        return cls(
            id=agent_id, email=fields["email"], name=fields["name"], role=fields["role"],
            teams=tuple(orjson.loads(fields["teams"])), capacity=int(fields["capacity"]),
            languages=tuple(orjson.loads(fields.get("languages", "[]"))),
            disabled=fields.get("disabled") == "1", created_at=float(fields.get("created_at", 0)),
        )


class AgentStore:
    def __init__(self, redis: Redis, idle_seconds: float = 120.0, default_capacity: int = 5) -> None:
        self.redis = redis
        self.idle_seconds = idle_seconds
        self.default_capacity = default_capacity
        self._reserve = redis.register_script(_RESERVE)

    async def create(self, email: str, name: str, password: str, role: str = "agent",
                     teams: Sequence[str] = ("support",), capacity: int | None = None,
                     languages: Sequence[str] = ()) -> Agent:
        """Store a new agent; AgentError 409 when the email is taken, 422 when a field is bad."""
        try:
            new = NewAgent(email=email, name=name, password=password, role=role,
                           teams=list(teams), capacity=capacity, languages=list(languages))
        except ValidationError as exc:
            error = exc.errors()[0]
            raise AgentError(f"{'.'.join(str(p) for p in error['loc'])}: {error['msg']}", 422) from None
        return await self.add(new)

    async def add(self, new: NewAgent) -> Agent:
        agent_id = secrets.token_hex(8)
        email = new.email.lower()
        if not await self.redis.set(keys.agent_email(email), agent_id, nx=True):
            holder = await self.redis.get(keys.agent_email(email))
            # a creation that died between the index and the profile leaves an index without an agent
            if holder is not None and await self.redis.exists(keys.agent(str(holder))):
                raise AgentError(f"an agent with email {email} exists", 409)
            await self.redis.set(keys.agent_email(email), agent_id)
        agent = Agent(id=agent_id, email=email, name=new.name, role=new.role, teams=tuple(new.teams),
                      capacity=new.capacity or self.default_capacity, languages=tuple(new.languages),
                      created_at=time.time())
        await self.redis.hset(keys.agent(agent_id), mapping={
            "email": email, "name": agent.name, "role": agent.role, "teams": orjson.dumps(agent.teams).decode(),
            "capacity": agent.capacity, "languages": orjson.dumps(agent.languages).decode(),
            "disabled": "0", "created_at": agent.created_at, "pw": await _hash(new.password),
        })
        await self.redis.sadd(keys.AGENTS, agent_id)
        return agent

    async def get(self, agent_id: str) -> Agent | None:
        fields = await self.redis.hgetall(keys.agent(agent_id))
        return Agent.stored(agent_id, fields) if fields else None

    async def by_email(self, email: str) -> Agent | None:
        agent_id = await self.redis.get(keys.agent_email(email))
        return await self.get(str(agent_id)) if agent_id is not None else None

    async def list(self) -> builtins.list[Agent]:
        ids = sorted(str(i) for i in await self.redis.smembers(keys.AGENTS))
        return await self.many(ids)

    async def many(self, ids: builtins.list[str]) -> builtins.list[Agent]:
        """The agents with these ids that exist, in one round trip."""
        async with self.redis.pipeline(transaction=False) as pipe:
            for agent_id in ids:
                pipe.hgetall(keys.agent(agent_id))
            found = await pipe.execute()
        return [Agent.stored(i, fields) for i, fields in zip(ids, found, strict=True) if fields]

    async def disable(self, agent_id: str) -> Agent:
        """A disabled agent cannot log in, is offline, and gets nothing new (the router frees what it holds)."""
        await self._existing(agent_id)
        await self.redis.hset(keys.agent(agent_id), "disabled", "1")
        await self.set_offline(agent_id)
        return await self._existing(agent_id)

    async def set_password(self, agent_id: str, password: str) -> None:
        if len(password) < 8:
            raise AgentError("a password needs at least 8 characters", 422)
        await self._existing(agent_id)
        await self.redis.hset(keys.agent(agent_id), "pw", await _hash(password))

    async def verify(self, email: str, password: str) -> Agent | None:
        """The agent with this email and password, if enabled. An unknown email costs one hash check
        too, so timing does not tell which emails exist."""
        agent_id = await self.redis.get(keys.agent_email(email))
        fields = await self.redis.hgetall(keys.agent(str(agent_id))) if agent_id is not None else {}
        if not await asyncio.to_thread(_matches, str(fields.get("pw") or _dummy_hash()), password):
            return None
        if not fields or fields.get("disabled") == "1":
            return None
        return Agent.stored(str(agent_id), fields)

    async def _existing(self, agent_id: str) -> Agent:
        agent = await self.get(agent_id)
        if agent is None:
            raise AgentError(f"no agent {agent_id!r}", 404)
        return agent

    # presence

    async def heartbeat(self, agent_id: str) -> None:
        await self.redis.zadd(keys.AGENTS_SEEN, {agent_id: time.time()})

    async def set_offline(self, agent_id: str) -> None:
        await self.redis.zadd(keys.AGENTS_SEEN, {agent_id: 0})

    async def online_ids(self) -> set[str]:
        """Agents with a heartbeat within `idle_seconds` (disabled ones included: callers filter)."""
        since = time.time() - self.idle_seconds
        return {str(i) for i in await self.redis.zrangebyscore(keys.AGENTS_SEEN, since, "+inf")}

    async def gone_ids(self) -> set[str]:
        """Agents who reported presence and then went offline or idle. One who never reported any (an
        integration that works through the API alone) is neither online nor gone."""
        before = time.time() - self.idle_seconds
        return {str(i) for i in await self.redis.zrangebyscore(keys.AGENTS_SEEN, "-inf", f"({before}")}

    async def online(self, team: str | None = None) -> builtins.list[Agent]:
        """Online, enabled agents (of `team`, if given)."""
        agents = await self.many(sorted(await self.online_ids()))
        return [a for a in agents if not a.disabled and (team is None or team in a.teams)]

    # capacity

    async def reserve(self, agent_id: str, cid: str) -> bool:
        """Take one of the agent's places for contact `cid`: true if it holds it already, or had a
        free place and is enabled. Atomic on the agent's slot."""
        return bool(await self._reserve(keys=[keys.agent_load(agent_id), keys.agent(agent_id)],
                                        args=[cid, int(time.time() * 1000)]))

    async def release(self, agent_id: str, cid: str) -> None:
        await self.redis.zrem(keys.agent_load(agent_id), cid)

    async def load(self, agent_id: str) -> int:
        return int(await self.redis.zcard(keys.agent_load(agent_id)))

    async def loads(self, ids: builtins.list[str]) -> dict[str, int]:
        """Load of each agent, in one round trip."""
        async with self.redis.pipeline(transaction=False) as pipe:
            for agent_id in ids:
                pipe.zcard(keys.agent_load(agent_id))
            counts = await pipe.execute()
        return {agent_id: int(n) for agent_id, n in zip(ids, counts, strict=True)}

    async def conversations(self, agent_id: str) -> builtins.list[str]:
        """Contact ids the agent holds, longest held first."""
        return [str(cid) for cid in await self.redis.zrange(keys.agent_load(agent_id), 0, -1)]
