"""`REDIS_URL` at a cluster node gives the hub a cluster client; at a single server, the pooled client."""

from __future__ import annotations

from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster

from bot.redis_pool import LeanPool
from bot.redis_server import EmbeddedRedis, connect, free_port


async def test_a_cluster_node_gets_a_cluster_client(redis_url: str) -> None:
    client = connect(redis_url)
    assert isinstance(client, RedisCluster)
    assert await client.ping()
    await client.aclose()


async def test_a_single_server_and_an_unreachable_one_get_the_pooled_client() -> None:
    server = EmbeddedRedis()
    try:
        for url in (server.start(), f"redis://127.0.0.1:{free_port()}/0"):
            client = connect(url)
            assert isinstance(client, Redis) and isinstance(client.connection_pool, LeanPool)
            await client.aclose()
    finally:
        server.stop()
