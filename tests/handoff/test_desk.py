"""The desk's failure paths against a real worker: an assignment nobody applies yet, a command for a
contact who is gone."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from redis.asyncio import Redis

from bot.context import keys
from bot.handoff.desk import Desk, DeskError
from bot.hub import Hub
from bot.models import InboundEvent
from bot.pipeline.commands import SendText
from tests.conftest import hub_settings


@pytest.fixture
async def hub(redis: Redis, redis_url: str) -> AsyncIterator[Hub]:
    yield Hub(hub_settings(redis_url, pipeline__partitions=1), redis, run_api=False)


async def until(condition: Callable[[], Awaitable[bool]], wait: float = 10.0) -> None:
    deadline = time.monotonic() + wait
    while not await condition():
        assert time.monotonic() < deadline, "never happened"
        await asyncio.sleep(0.02)


class Partition:
    """Partition 0's worker, started and stopped by the test."""

    def __init__(self, hub: Hub) -> None:
        self.worker, _ = hub.partition_parts()
        self.halt = asyncio.Event()
        self.task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self.halt.clear()
        self.task = asyncio.create_task(self.worker.run(0, self.halt))

    async def stop(self) -> None:
        self.halt.set()
        if self.task is not None:
            await self.task


async def test_an_assignment_not_applied_yet_is_a_504_that_keeps_the_agents_place(hub: Hub, redis: Redis) -> None:
    partition = Partition(hub)
    partition.start()
    await hub.ingest([InboundEvent(kind="message", channel="telegram", user_id="9", provider_id="9-1", text="hi")])
    cid = str(await redis.get(keys.identity("telegram", "9")))
    assert await hub.desk.hand_off(cid, "test")
    await until(lambda: _mode_is(hub, cid, "queued"))
    conversation_id = (await hub.store.load(cid)).conversation["id"]
    await partition.stop()  # nobody works the partition now

    agent = await hub.agents.create("ann@example.com", "Ann", "correct horse battery")
    impatient = Desk(redis, hub.store, hub.ingest, hub.agents, wait_seconds=0.3)
    with pytest.raises(DeskError) as refused:
        await impatient.assign(conversation_id, agent.id)
    assert refused.value.status == 504
    assert await hub.agents.load(agent.id) == 1  # the place stays taken: the worker will still apply it

    partition.start()
    try:
        await until(lambda: _mode_is(hub, cid, "assigned"))
        assert (await hub.desk.get(conversation_id)).assignee == agent.id
    finally:
        await partition.stop()


async def test_a_command_for_a_contact_who_is_gone_is_dead_lettered(hub: Hub) -> None:
    partition = Partition(hub)
    partition.start()
    try:
        await hub.ingest.command(SendText(id="cmd-gone", text="hello?"), "c0000000000000000")
        await until(lambda: _dead_letters(hub))
        [stored] = await hub.dead_letters.list()
        assert stored.letter.attempts == 1 and "erased or merged" in stored.letter.error
    finally:
        await partition.stop()


async def _mode_is(hub: Hub, cid: str, mode: str) -> bool:
    return (await hub.store.load(cid)).mode == mode


async def _dead_letters(hub: Hub) -> bool:
    return bool(await hub.dead_letters.list())
