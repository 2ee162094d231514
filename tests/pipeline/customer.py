"""A customer on one channel of a running sandbox hub, and a way to queue a message the way a campaign
or an agent does (straight onto the outbound stream): what the end-to-end pipeline tests share."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis

from bot.context import keys
from bot.models import Channel, OutboundMessage
from bot.sandbox.client import SandboxClient
from tests.conftest import HubFactory

Entry = dict[str, Any]
# A stopping hub halts its partitions one after the other (each up to a stream read's 0.5 s block),
# so these tests run with few partitions.
PARTITIONS = 2


def small_hub(hub: HubFactory, **overrides: Any) -> AbstractAsyncContextManager[SandboxClient]:
    return hub(pipeline__partitions=PARTITIONS, **overrides)


@dataclass
class Customer:
    """One customer on one channel: writes through the emulator, reads what the hub sent back."""

    client: SandboxClient
    channel: Channel
    user: str
    seen: int = 0  # outbox sequence number read so far

    async def say(self, text: str | None = None, **kw: Any) -> dict[str, Any]:
        answer = await self.client.send(self.channel, self.user, text, **kw)
        assert answer["status"] == 200, answer
        return answer

    async def replies(self, count: int = 1, wait: float = 10.0) -> list[dict[str, Any]]:
        """The next `count` messages the hub sent this customer (fails if they do not come)."""
        got: list[dict[str, Any]] = []
        deadline = time.monotonic() + wait
        while len(got) < count and (left := deadline - time.monotonic()) > 0:
            got += await self.client.replies(self.channel, self.user, after=self.seen, wait=left)
            self.seen = max([self.seen, *(m["seq"] for m in got)])
        assert len(got) == count, f"expected {count} replies on {self.channel}, got {got}"
        return got

    async def nothing_more(self, wait: float = 1.0) -> None:
        extra = await self.client.replies(self.channel, self.user, after=self.seen, wait=wait)
        assert extra == [], extra

    async def contact_id(self, wait: float = 10.0) -> str:
        """The contact's id, once the worker has saved the customer's first event."""
        query = {"phone": self.user} if self.channel in ("sms", "whatsapp") else {
            "channel": self.channel, "user_id": self.user}
        deadline = time.monotonic() + wait
        while True:
            response = await self.client.http.get("/api/v1/contacts", params=query)
            response.raise_for_status()
            if found := response.json()["items"]:
                return str(found[0]["id"])
            assert time.monotonic() < deadline, f"no contact for {self.channel} {self.user}"
            await asyncio.sleep(0.05)

    async def history(self) -> list[Entry]:
        response = await self.client.http.get(f"/api/v1/contacts/{await self.contact_id()}/history")
        response.raise_for_status()
        items: list[Entry] = response.json()["items"]
        return items

    async def history_until(self, done: Callable[[list[Entry]], bool], wait: float = 10.0) -> list[Entry]:
        deadline = time.monotonic() + wait
        while not done(items := await self.history()):
            assert time.monotonic() < deadline, f"history never got there: {items}"
            await asyncio.sleep(0.05)
        return items


def statuses(items: list[Entry]) -> list[str | None]:
    return [item["status"] for item in items if item["direction"] == "out"]


async def enqueue(redis: Redis, message: OutboundMessage) -> None:
    """Queue a message on its contact's partition outbound stream, as campaigns and agents do."""
    stream = keys.outbound(keys.partition_of(message.contact_id, PARTITIONS))
    await redis.xadd(stream, {"m": message.model_dump_json(exclude_defaults=True)})
