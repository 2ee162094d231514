"""Agents in a real Redis: unique emails, passwords, presence, and the capacity reservation under races."""

from __future__ import annotations

import asyncio

import pytest
from redis.asyncio import Redis

from bot.context import keys
from bot.handoff.agents import AgentError, AgentStore


async def test_create_get_and_duplicate_email(redis: Redis) -> None:
    store = AgentStore(redis)
    ada = await store.create("Ada@Example.com", "Ada", "correct horse", role="supervisor", teams=("support", "vip"))
    assert ada.email == "ada@example.com" and ada.capacity == 5 and ada.teams == ("support", "vip")
    assert await store.get(ada.id) == ada
    assert await store.by_email("ADA@example.com") == ada
    with pytest.raises(AgentError) as taken:
        await store.create("ada@example.com", "Another Ada", "something else")
    assert taken.value.status == 409
    with pytest.raises(AgentError) as bad:
        await store.create("not-an-email", "X", "long enough")
    assert bad.value.status == 422 and "email" in str(bad.value)
    assert [a.id for a in await store.list()] == [ada.id]
    assert "correct horse" not in str(await redis.hgetall(keys.agent(ada.id)))  # only the argon2 hash


async def test_verify_password_and_disable(redis: Redis) -> None:
    store = AgentStore(redis)
    ada = await store.create("ada@example.com", "Ada", "correct horse")
    assert await store.verify("ada@example.com", "correct horse") == ada
    assert await store.verify("ada@example.com", "wrong horse") is None
    assert await store.verify("nobody@example.com", "correct horse") is None
    await store.set_password(ada.id, "battery staple")
    assert await store.verify("ada@example.com", "correct horse") is None
    assert await store.verify("ada@example.com", "battery staple") is not None
    await store.heartbeat(ada.id)
    disabled = await store.disable(ada.id)
    assert disabled.disabled
    assert await store.verify("ada@example.com", "battery staple") is None  # a disabled agent never verifies
    assert await store.online() == []
    assert not await store.reserve(ada.id, "c-1")  # nor gets anything new
    with pytest.raises(AgentError) as missing:
        await store.disable("nope")
    assert missing.value.status == 404


async def test_presence_is_a_recent_heartbeat(redis: Redis) -> None:
    store = AgentStore(redis, idle_seconds=60)
    ada = await store.create("ada@example.com", "Ada", "correct horse", teams=("support",))
    bob = await store.create("bob@example.com", "Bob", "correct horse", teams=("vip",))
    await store.heartbeat(ada.id)
    await store.heartbeat(bob.id)
    assert {a.id for a in await store.online()} == {ada.id, bob.id}
    assert [a.id for a in await store.online("vip")] == [bob.id]
    never = await store.create("cy@example.com", "Cy", "correct horse")
    assert await store.gone_ids() == set()
    await redis.zadd(keys.AGENTS_SEEN, {ada.id: 1.0})  # Ada's last heartbeat long ago: idle
    await store.set_offline(bob.id)
    assert await store.online() == []
    assert await store.gone_ids() == {ada.id, bob.id}  # Cy never reported presence: not gone either
    assert never.id not in await store.online_ids()


async def test_capacity_holds_under_fifty_concurrent_claims(redis: Redis) -> None:
    store = AgentStore(redis)
    ada = await store.create("ada@example.com", "Ada", "correct horse", capacity=3)
    won = await asyncio.gather(*(store.reserve(ada.id, f"c-{n}") for n in range(50)))
    assert sum(won) == 3 and await store.load(ada.id) == 3
    holding = await store.conversations(ada.id)
    assert len(holding) == 3
    assert await store.reserve(ada.id, holding[0])  # already one of hers: still true, no second place
    assert await store.load(ada.id) == 3
    await store.release(ada.id, holding[0])
    assert await store.reserve(ada.id, "c-late") and await store.load(ada.id) == 3
    assert await store.loads([ada.id]) == {ada.id: 3}


async def test_reservation_keys_share_the_agents_slot() -> None:
    from redis.crc import key_slot

    assert key_slot(keys.agent("x1").encode()) == key_slot(keys.agent_load("x1").encode())
