"""The worker on its own: one partition's inbound stream in, replies on the outbound stream out.

Built by the hub from settings, against the test Redis; events are appended the way a webhook does
(`Ingest`), and the test reads what the worker queued for the sender.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import orjson
import pytest
from redis.asyncio import Redis

from bot.context import keys
from bot.hub import Hub
from bot.models import InboundEvent
from bot.pipeline.commands import SendText
from tests.conftest import hub_settings

DIALOGS = Path(__file__).parent / "flaky_dialogs"


@pytest.fixture
async def hub(redis: Redis, redis_url: str) -> AsyncIterator[Hub]:
    yield Hub(hub_settings(redis_url, dialogs_dir=DIALOGS, pipeline__partitions=1, pipeline__entry_attempts=4),
              redis, run_api=False)


def said(user: str, text: str, n: int) -> InboundEvent:
    return InboundEvent(kind="message", channel="telegram", user_id=user, provider_id=f"{user}-{n}", text=text)


async def queued_texts(redis: Redis, count: int, wait: float = 10.0) -> list[tuple[str, str]]:
    """(user, text) of the replies on partition 0's outbound stream, once `count` are there."""
    deadline = time.monotonic() + wait
    while True:
        entries = await redis.xrange(keys.outbound(0))
        replies = [orjson.loads(fields["m"]) for _, fields in entries]
        if len(replies) >= count:
            return [(r["user_id"], r["reply"]["text"]) for r in replies]
        assert time.monotonic() < deadline, f"only {replies}"
        await asyncio.sleep(0.02)


async def test_entries_are_answered_in_order_and_a_failing_one_holds_back_only_its_contact(
    hub: Hub, redis: Redis
) -> None:
    worker, _ = hub.partition_parts()
    halt = asyncio.Event()
    running = asyncio.create_task(worker.run(0, halt))
    try:
        await hub.ingest([said("1", "/start", 0), said("2", "/start", 0)])
        await queued_texts(redis, 2)
        # contact 1's first message fails twice; its second waits behind it, contact 2 goes on
        await hub.ingest([said("1", "fail 2 w", 1), said("1", "then", 2), said("2", "meanwhile", 1)])
        replies = await queued_texts(redis, 5)
        assert replies[2] == ("2", "echo meanwhile")
        assert replies[3:] == [("1", "echo fail 2 w"), ("1", "echo then")]
        assert (await redis.xpending(keys.inbound(0), keys.GROUP))["pending"] == 0
        assert await redis.hlen(keys.attempts(0)) == 0
    finally:
        halt.set()
        await running


async def test_a_command_is_applied_between_the_customers_messages(hub: Hub, redis: Redis) -> None:
    worker, _ = hub.partition_parts()
    halt = asyncio.Event()
    running = asyncio.create_task(worker.run(0, halt))
    try:
        await hub.ingest([said("3", "/start", 0)])
        await queued_texts(redis, 1)
        cid = await redis.get(keys.identity("telegram", "3"))
        await hub.ingest([said("3", "one", 1)])
        assert await hub.ingest.command(SendText(id="cmd-1", text="from the API"), str(cid))
        assert not await hub.ingest.command(SendText(id="cmd-1", text="from the API"), str(cid))  # the same id
        await hub.ingest([said("3", "two", 2)])
        replies = await queued_texts(redis, 4)
        assert [text for _, text in replies[1:]] == ["echo one", "from the API", "echo two"]
    finally:
        halt.set()
        await running
