"""Tests under tests/cluster run against a real local 3-master Redis Cluster instead of one server.

`redis_url` and `redis` override the fixtures of tests/conftest.py, so the test functions of other
modules, imported here, run unchanged: the hub gets the cluster's URL and connects with a cluster
client (bot.redis_server.connect finds out by itself).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import cast

import pytest
from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster

from tests.cluster.server import LocalCluster
from tests.context.conftest import parts  # noqa: F401 — the context services, here on the cluster


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    cluster = LocalCluster(Path(tmp_path_factory.mktemp("cluster")))
    yield cluster.start()
    cluster.stop()


@pytest.fixture
async def redis(redis_url: str) -> AsyncIterator[Redis]:
    client = RedisCluster.from_url(redis_url, decode_responses=True)
    await client.flushdb(target_nodes=RedisCluster.PRIMARIES)  # our own throwaway cluster
    yield cast(Redis, client)
    await client.aclose()
