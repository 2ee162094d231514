"""Shared fixtures: a throwaway real Redis per test session, and a real hub on a loopback port.

The Redis server is started here on a free port and is the only one these tests ever flush.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from redis.asyncio import Redis

from bot.api.http_server import HEADER_TIMEOUT, server_config
from bot.redis_server import EmbeddedRedis, free_port
from bot.sandbox.client import SandboxClient
from bot.settings import Settings, load_settings

ROOT = Path(__file__).resolve().parent.parent
PAYLOADS = ROOT / "tests" / "payloads"


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    server = EmbeddedRedis()
    url = server.start()
    yield url
    server.stop()


@pytest.fixture
async def redis(redis_url: str) -> AsyncIterator[Redis]:
    client = Redis.from_url(redis_url, decode_responses=True)
    await client.flushdb()  # our own throwaway server
    yield client
    await client.aclose()


def hub_settings(redis_url: str, **overrides: Any) -> Settings:
    """Settings as a fresh install has them (sandbox channels), isolated from this machine's env."""
    overrides.setdefault("port", free_port())
    overrides.setdefault("pipeline__lease_seconds", 1.0)
    return load_settings({"REDIS_URL": redis_url}, **overrides)


@contextlib.asynccontextmanager
async def running_hub(
    settings: Settings, run_workers: bool = True, header_timeout: float = HEADER_TIMEOUT
) -> AsyncIterator[SandboxClient]:
    """The real ASGI app served by uvicorn on loopback, in this event loop, as `omnihub run` serves it."""
    from bot.api.app import create_app

    config = server_config(create_app(settings, run_workers=run_workers), settings.host, settings.port,
                           header_timeout=header_timeout, log_level="warning", lifespan="on")
    async with serving(uvicorn.Server(config)), httpx.AsyncClient(base_url=settings.local_url, timeout=30) as http:
        yield SandboxClient(http)


@contextlib.asynccontextmanager
async def serving(server: uvicorn.Server) -> AsyncIterator[None]:
    """Run a uvicorn server in this event loop while the block runs."""
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()
        await asyncio.sleep(0.01)
    try:
        yield
    finally:
        server.should_exit = True
        await task


HubFactory = Callable[..., AbstractAsyncContextManager[SandboxClient]]


@pytest.fixture
def hub(redis: Redis, redis_url: str) -> HubFactory:
    """`async with hub(**settings_overrides) as client:` — a sandbox hub against the test Redis."""

    def start(run_workers: bool = True, **overrides: Any) -> AbstractAsyncContextManager[SandboxClient]:
        return running_hub(hub_settings(redis_url, **overrides), run_workers=run_workers)

    return start
