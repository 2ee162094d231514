"""Requests as a hostile client sends them to a sandbox hub: signed webhooks and raw sockets."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlsplit

import httpx
from redis.asyncio import Redis
from twilio.request_validator import RequestValidator

from bot.sandbox import emulators as sandbox


def base_of(http: httpx.AsyncClient) -> str:
    return str(http.base_url).rstrip("/")


async def telegram_webhook(http: httpx.AsyncClient, update: dict[str, Any]) -> httpx.Response:
    headers = {"x-telegram-bot-api-secret-token": sandbox.TELEGRAM_SECRET, "content-type": "application/json"}
    return await http.post("/webhooks/telegram", content=json.dumps(update), headers=headers)


async def twilio_webhook(http: httpx.AsyncClient, form: dict[str, str]) -> httpx.Response:
    signature = RequestValidator(sandbox.TWILIO_TOKEN).compute_signature(f"{base_of(http)}/webhooks/twilio", form)
    return await http.post("/webhooks/twilio", data=form, headers={"x-twilio-signature": signature})


async def viber_webhook(http: httpx.AsyncClient, callback: dict[str, Any]) -> httpx.Response:
    body = json.dumps(callback).encode()
    signature = hmac.new(sandbox.VIBER_TOKEN.encode(), body, hashlib.sha256).hexdigest()
    return await http.post("/webhooks/viber", content=body, headers={"x-viber-content-signature": signature})


async def stored(redis: Redis) -> tuple[int, int]:
    """What webhooks store: identities resolved and inbound stream entries."""
    identities = [key async for key in redis.scan_iter("omni:id:*")]
    entries = 0
    async for key in redis.scan_iter("omni:in:*"):
        entries += await redis.xlen(key)
    return len(identities), entries


@contextlib.asynccontextmanager
async def raw_connection(http: httpx.AsyncClient) -> AsyncIterator[tuple[asyncio.StreamReader, asyncio.StreamWriter]]:
    """A plain TCP connection to the server, closed on the way out (or a failing test would leave the
    server waiting for it at shutdown)."""
    address = urlsplit(base_of(http))
    reader, writer = await asyncio.open_connection(address.hostname, address.port)
    try:
        yield reader, writer
    finally:
        writer.close()


async def read_response(reader: asyncio.StreamReader, wait: float = 5.0) -> tuple[int, bytes]:
    """One HTTP/1.1 response with a Content-Length body: its status and body."""
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), wait)
    lines = head.decode("latin-1").split("\r\n")
    length = next((int(line.split(":", 1)[1]) for line in lines if line.lower().startswith("content-length:")), 0)
    body = await asyncio.wait_for(reader.readexactly(length), wait)
    return int(lines[0].split()[1]), body
