"""A client that dribbles its request headers is cut off; ordinary requests are not (bot.api.http_server)."""

from __future__ import annotations

import asyncio
import time

from redis.asyncio import Redis

from tests.conftest import hub_settings, running_hub
from tests.edges.wire import raw_connection, read_response

TIMEOUT = 0.5


async def closed_within(reader: asyncio.StreamReader, seconds: float) -> bool:
    """Whether the server closes the connection within `seconds` (reading whatever it still sends)."""
    try:
        while await asyncio.wait_for(reader.read(1024), seconds):
            pass
    except TimeoutError:
        return False
    return True


async def test_headers_sent_a_byte_at_a_time_are_cut_off(redis: Redis, redis_url: str) -> None:
    settings = hub_settings(redis_url)
    async with running_hub(settings, run_workers=False, header_timeout=TIMEOUT) as client:
        async with raw_connection(client.http) as (reader, writer):
            started = time.monotonic()
            writer.write(b"GET /healthz HTTP/1.1\r\nHost: hub\r\n")
            closed = False
            for _ in range(40):  # a header line every 0.1 s, for up to 4 s: a slowloris client
                writer.write(b"X-Slow: 1\r\n")
                if await closed_within(reader, 0.1):
                    closed = True
                    break
            assert closed, "the server waited for the headers for 4 s"
            assert TIMEOUT <= time.monotonic() - started < TIMEOUT + 1.5

        async with raw_connection(client.http) as (reader, _):  # connected, silent
            assert await closed_within(reader, TIMEOUT + 1.5)

        async with raw_connection(client.http) as (reader, writer):  # a client that keeps up is served
            for _ in range(3):
                writer.write(b"GET /healthz HTTP/1.1\r\nHost: hub\r\n\r\n")
                assert (await read_response(reader))[0] == 200
                await asyncio.sleep(TIMEOUT * 1.5)  # idle between requests: the keep-alive timeout rules
