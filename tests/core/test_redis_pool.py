"""The hub's connection pool (bot.redis_pool) against a real Redis: callers wait for a connection
rather than fail, give up with a clear error, and a connection the server dropped comes back."""

from __future__ import annotations

import asyncio
import contextlib

import pytest
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError

from bot.redis_pool import LeanPool


def client(redis_url: str, connections: int, timeout: float = 10.0) -> Redis:
    pool = LeanPool.from_url(redis_url, decode_responses=True, max_connections=connections, timeout=timeout)
    return Redis.from_pool(pool)


async def test_a_command_waits_for_a_busy_pool_and_then_runs(redis: Redis, redis_url: str) -> None:
    hub = client(redis_url, connections=2)
    try:
        held = [asyncio.ensure_future(hub.blpop([f"wait:{n}"], timeout=5)) for n in range(2)]
        await asyncio.sleep(0.2)  # both connections now block in BLPOP
        third = asyncio.ensure_future(hub.set("third", "ran"))
        await asyncio.sleep(0.2)
        assert not third.done() and await redis.get("third") is None
        await redis.rpush("wait:0", "go")  # frees one connection
        await asyncio.wait_for(third, 2)
        assert await redis.get("third") == "ran"
        await redis.rpush("wait:1", "go")
        assert [await task for task in held] == [("wait:0", "go"), ("wait:1", "go")]
        assert len(await redis.client_list(_type="normal")) <= 3  # ours (2) and the test's own
    finally:
        await hub.aclose()


async def test_a_caller_that_waits_too_long_gets_a_connection_error(redis: Redis, redis_url: str) -> None:
    hub = client(redis_url, connections=1, timeout=0.3)
    try:
        held = asyncio.ensure_future(hub.blpop(["held"], timeout=3))
        await asyncio.sleep(0.2)
        with pytest.raises(RedisConnectionError, match="No connection available"):
            await hub.get("anything")
        await redis.rpush("held", "go")
        assert await held == ("held", "go")
        assert await hub.get("anything") is None  # the pool works again once the connection is back
    finally:
        await hub.aclose()


async def test_a_connection_killed_by_the_server_is_connected_again(redis: Redis, redis_url: str) -> None:
    hub = client(redis_url, connections=1)
    try:
        await hub.client_setname("lean-pool-test")
        await hub.set("k", "1")
        ours = [c for c in await redis.client_list() if c["name"] == "lean-pool-test"]
        await redis.client_kill_filter(_id=ours[0]["id"])
        with contextlib.suppress(RedisConnectionError):
            await hub.get("k")  # the first use may find it dead
        assert await hub.get("k") == "1"
        again = [c for c in await redis.client_list() if c["name"] != "lean-pool-test" and c["id"] != ours[0]["id"]]
        assert len(again) == 2  # the test's own and the pool's new one
    finally:
        await hub.aclose()


async def test_many_callers_share_a_small_pool_without_overflowing_it(redis: Redis, redis_url: str) -> None:
    pool = LeanPool.from_url(redis_url, decode_responses=True, max_connections=3, client_name="lean-many")
    hub = Redis.from_pool(pool)
    try:
        callers = []
        for n in range(500):  # most of them wait for a connection, while more keep coming
            callers.append(asyncio.ensure_future(hub.incr("n")))
            if n % 7 == 0:
                await asyncio.sleep(0)
        await asyncio.gather(*callers)
        assert await redis.get("n") == "500"
        assert len([c for c in await redis.client_list() if c["name"] == "lean-many"]) == 3
    finally:
        await hub.aclose()
