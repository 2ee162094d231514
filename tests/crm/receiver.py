"""A webhook receiver as a CRM runs one: a real HTTP server on loopback that verifies every request
with the independent `standardwebhooks` package (never with our signer) and records what it got.

`behaviour` decides the answer, so a test can take the receiver down, make it fail, slow or gone.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import orjson
import uvicorn
from standardwebhooks import Webhook, WebhookVerificationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from bot.redis_server import free_port
from tests.conftest import serving


@dataclass
class Receiver:
    secret: str
    port: int = field(default_factory=free_port)
    status: int = 200  # what to answer
    delay: float = 0.0  # seconds before answering
    retry_after: str | None = None
    events: list[dict[str, Any]] = field(default_factory=list)  # verified and answered 2xx, in arrival order
    attempts: list[tuple[float, str]] = field(default_factory=list)  # (time, webhook-id) of every request
    refused: list[str] = field(default_factory=list)  # requests whose signature did not verify

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def app(self) -> Starlette:
        verifier = Webhook(self.secret)

        async def hook(request: Request) -> Response:
            body = await request.body()
            self.attempts.append((time.monotonic(), request.headers.get("webhook-id", "")))
            try:
                verifier.verify(body, dict(request.headers))
            except WebhookVerificationError as exc:
                self.refused.append(str(exc))
                return Response(status_code=400)
            if self.delay:
                await asyncio.sleep(self.delay)
            if self.status >= 300:
                headers = {"retry-after": self.retry_after} if self.retry_after else {}
                return Response(status_code=self.status, headers=headers)
            event = orjson.loads(body)
            assert event["id"] == request.headers["webhook-id"]
            self.events.append(event)
            return Response(status_code=204)

        return Starlette(routes=[Route("/hook", hook, methods=["POST"])])

    def ids(self) -> list[str]:
        return [e["id"] for e in self.events]

    def types(self, subject: str | None = None) -> list[str]:
        return [e["type"] for e in self.events if subject is None or e["subject"] == subject]

    async def until(self, count: int, wait: float = 20.0) -> list[dict[str, Any]]:
        deadline = time.monotonic() + wait
        while len(self.events) < count:
            assert time.monotonic() < deadline, f"got {len(self.events)} of {count}: {self.types()}"
            await asyncio.sleep(0.05)
        return self.events

    async def until_type(self, event_type: str, wait: float = 20.0) -> dict[str, Any]:
        deadline = time.monotonic() + wait
        while not (found := [e for e in self.events if e["type"] == event_type]):
            assert time.monotonic() < deadline, f"no {event_type} in {self.types()}"
            await asyncio.sleep(0.05)
        return found[-1]


@contextlib.asynccontextmanager
async def receiving(receiver: Receiver) -> AsyncIterator[Receiver]:
    """The receiver up while the block runs (leave the block to take it down)."""
    config = uvicorn.Config(receiver.app(), host="127.0.0.1", port=receiver.port, log_level="warning",
                            lifespan="off")
    async with serving(uvicorn.Server(config)):
        yield receiver
