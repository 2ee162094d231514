"""`/api/v1` against hostile clients: bodies of the wrong type, huge bodies, no key; and what a
connection looks like after an unexpected error."""

from __future__ import annotations

import hashlib
import time
from collections.abc import AsyncIterator

import httpx
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from bot.api.deps import API_KEYS
from bot.api.guard import JsonErrors
from bot.sandbox.emulator_kit import serve
from tests.api.chat import Api, Customer
from tests.conftest import HubFactory
from tests.edges.wire import raw_connection, read_response

ADMIN = "admin-token-for-hostile-tests"
HUGE = 400_000_000  # declared, never sent


async def test_a_body_that_is_not_json_is_a_422_that_says_so(hub: HubFactory) -> None:
    async with hub(pipeline__partitions=2) as client:
        await Customer(client, "telegram", "550001").say("hi")
        cid = (await Api(client).one(channel="telegram", user_id="550001"))["id"]
        for headers in ({"content-type": "text/plain"}, {}, {"content-type": "application/octet-stream"}):
            for method in ("PATCH", "PUT"):
                answer = await client.http.request(method, f"/api/v1/contacts/{cid}", content=b"name=\xff\xfe",
                                                   headers=headers)
                assert answer.status_code == 422, (headers, answer.text)
                assert "JSON" in answer.json()["detail"], answer.text
            merge = await client.http.post(f"/api/v1/contacts/{cid}/merge", content=b"\x00", headers=headers)
            assert merge.status_code == 422, merge.text


async def test_without_a_key_the_body_is_never_read(hub: HubFactory) -> None:
    """A huge declared body is answered at once: 401 without a key, 413 with one; neither waits for it."""
    async with hub(run_workers=False, admin_token=ADMIN) as client:
        for token, expected in ((None, 401), ("wrong", 401), (ADMIN, 413)):
            auth = f"Authorization: Bearer {token}\r\n" if token else ""
            head = (f"PATCH /api/v1/contacts/someone HTTP/1.1\r\nHost: hub\r\n{auth}"
                    f"Content-Type: application/json\r\nContent-Length: {HUGE}\r\n\r\n")
            async with raw_connection(client.http) as (reader, writer):
                writer.write(head.encode())
                started = time.monotonic()
                status, _ = await read_response(reader, wait=5)
                assert (token, status) == (token, expected)
                assert time.monotonic() - started < 2


async def test_a_streamed_body_over_the_cap_is_cut_off_with_413(hub: HubFactory, redis: Redis) -> None:
    async with hub(run_workers=False, admin_token=ADMIN, max_body_bytes=4096) as client:
        headers = {"Authorization": f"Bearer {ADMIN}", "content-type": "application/json"}

        async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: chunked, the size unknown up front
            yield b'{"name": "'
            for _ in range(100):
                yield b"x" * 1000
            yield b'"}'

        answer = await client.http.patch("/api/v1/contacts/someone", content=chunks(), headers=headers)
        assert answer.status_code == 413, answer.text
        small = await client.http.patch("/api/v1/contacts/someone", json={"name": "X"}, headers=headers)
        assert small.status_code == 404  # under the cap the route runs as before
        keys = {key async for key in redis.scan_iter("omni:{*")}
        assert keys == set()  # nothing about "someone" was stored


async def test_keys_from_the_api_key_hash_still_work_behind_the_gate(hub: HubFactory, redis: Redis) -> None:
    async with hub(run_workers=False, admin_token=ADMIN) as client:
        await redis.hset(API_KEYS, hashlib.sha256(b"crm-key").hexdigest(), "crm")
        assert (await client.http.get("/api/v1/contacts/nobody", headers={"Authorization": "Bearer crm-key"})
                ).status_code == 404
        assert (await client.http.get("/api/v1/contacts/nobody", headers={"Authorization": "Basic crm-key"})
                ).status_code == 401
        assert (await client.http.get("/healthz")).status_code == 200  # outside /api/ nothing changes


async def _boom(request: Request) -> JSONResponse:
    raise RuntimeError("an unexpected bug")


async def _redis_away(request: Request) -> JSONResponse:
    raise RedisConnectionError("Connection refused")


async def _ok(request: Request) -> JSONResponse:
    return JSONResponse({"ok": True})


async def test_an_unexpected_error_is_a_json_500_and_the_connection_lives_on() -> None:
    """Starlette's error middleware re-raises after its 500 and uvicorn then closes the connection; the
    next request a keep-alive client had queued on it was reset. `JsonErrors` answers and stops there."""
    routes = [Route("/boom", _boom), Route("/redis", _redis_away), Route("/ok", _ok)]
    app = Starlette(routes=routes, middleware=[Middleware(JsonErrors)])
    async with serve(app) as url, httpx.AsyncClient(base_url=url) as http, raw_connection(http) as (reader, writer):
        for path, expected in (("/boom", 500), ("/ok", 200), ("/redis", 503), ("/ok", 200)):
            writer.write(f"GET {path} HTTP/1.1\r\nHost: test\r\n\r\n".encode())
            status, body = await read_response(reader)
            assert (path, status) == (path, expected), body
            assert body.startswith(b"{")
