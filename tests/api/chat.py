"""A customer writing to a sandbox hub through the emulators, and the profile API read as a CRM reads it."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Any, TypeVar

from bot.models import Channel
from bot.sandbox.client import SandboxClient
from tests.conftest import HubFactory

_T = TypeVar("_T")
PARTITIONS = 2


def small_hub(hub: HubFactory, **overrides: Any) -> AbstractAsyncContextManager[SandboxClient]:
    """Few partitions: a stopping hub halts them one after another."""
    return hub(pipeline__partitions=PARTITIONS, **overrides)


async def eventually(probe: Callable[[], Awaitable[_T]], done: Callable[[_T], bool], wait: float = 15.0) -> _T:
    deadline = time.monotonic() + wait
    while not done(value := await probe()):
        assert time.monotonic() < deadline, f"never got there: {value}"
        await asyncio.sleep(0.05)
    return value


@dataclass
class Customer:
    client: SandboxClient
    channel: Channel
    user: str
    seen: int = 0

    async def say(self, text: str | None = None, **kw: Any) -> None:
        answer = await self.client.send(self.channel, self.user, text, **kw)
        assert answer["status"] == 200, answer

    async def hears(self, count: int = 1, wait: float = 15.0) -> list[str]:
        """The texts of the next `count` messages the hub sends this customer."""
        got: list[dict[str, Any]] = []
        deadline = time.monotonic() + wait
        while len(got) < count and (left := deadline - time.monotonic()) > 0:
            got += await self.client.replies(self.channel, self.user, after=self.seen, wait=left)
            self.seen = max([self.seen, *(m["seq"] for m in got)])
        assert len(got) == count, f"expected {count} messages on {self.channel}, got {got}"
        return [str(m.get("text") or "") for m in got]


class Api:
    def __init__(self, client: SandboxClient, token: str | None = None) -> None:
        self.http = client.http
        self.headers = {"Authorization": f"Bearer {token}"} if token else {}

    async def call(self, method: str, path: str, expect: int = 200, **kw: Any) -> Any:
        response = await self.http.request(method, f"/api/v1{path}", headers=self.headers, **kw)
        assert response.status_code == expect, (response.status_code, response.text)
        return response.json() if response.content else None

    async def find(self, **query: str) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = (await self.call("GET", "/contacts", params=query))["items"]
        return found

    async def one(self, **query: str) -> dict[str, Any]:
        [contact] = await eventually(lambda: self.find(**query), lambda items: len(items) == 1)
        return contact

    async def history(self, cid: str) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = (await self.call("GET", f"/contacts/{cid}/history", params={"limit": 500}))[
            "items"]
        return items
