"""The sender on its own: real Redis, the real Telegram connector, the Telegram emulator at the wire.

Messages are queued straight onto partition 0's lanes, as the worker and campaigns do, and the sender
runs that partition until the test halts it.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

from redis.asyncio import Redis

from bot.context import keys
from bot.context.store import ContextStore, new_id
from bot.models import OutboundMessage, Reply
from bot.pipeline.dispatch import lane_stream
from bot.pipeline.ratelimit import RateLimiter
from bot.pipeline.sender import Sender
from bot.pipeline.streams import ensure_group
from bot.redis_server import EmbeddedRedis, free_port
from bot.sandbox.emulator_kit import Fault, serve
from bot.sandbox.outbox import Sent
from bot.sandbox.telegram_api import TelegramEmulator, create_telegram_emulator
from bot.settings import Rate, RateLimits, TelegramSettings
from connectors.telegram import TelegramConnector

TOKEN = "7000000001:AAE-sandbox_token"
UNPACED = RateLimits()


@dataclass
class Rig:
    redis: Redis
    emulator: TelegramEmulator
    halt: asyncio.Event
    task: asyncio.Task[None]

    async def queue(self, chat: int, text: str, campaign: str | None = None) -> str:
        message = OutboundMessage(id=new_id("m"), contact_id=f"c{chat}", channel="telegram", user_id=str(chat),
                                  reply=Reply(text=text), campaign_id=campaign)
        return str(await self.redis.xadd(lane_stream(message, 0), {"m": message.model_dump_json()}))

    async def arrived(self, chat: int, count: int, within: float) -> list[Sent]:
        """The first `count` messages the chat received, waiting at most `within` seconds for them."""
        deadline = time.monotonic() + within
        while len(sent := self.emulator.outbox.after(str(chat), 0)) < count:
            left = deadline - time.monotonic()
            assert left > 0, f"chat {chat} got {[s.text for s in sent]}, expected {count} messages"
            await self.emulator.outbox.wait(str(chat), sent[-1].seq if sent else 0, left)
        return sent

    async def pending(self, stream: str = keys.outbound(0)) -> set[str]:
        entries = await self.redis.xpending_range(stream, keys.GROUP, min="-", max="+", count=100)
        return {str(entry["message_id"]) for entry in entries}

    async def pending_becomes(self, expected: set[str], within: float = 2.0) -> None:
        """The provider records a message before its answer reaches us, and the acknowledgement follows."""
        deadline = time.monotonic() + within
        while (pending := await self.pending()) != expected:
            assert time.monotonic() < deadline, f"pending {pending}, expected {expected}"
            await asyncio.sleep(0.02)


@contextlib.asynccontextmanager
async def sender(redis: Redis, limits: RateLimits = UNPACED, batch: int = 16) -> AsyncIterator[Rig]:
    app = create_telegram_emulator(TOKEN)
    async with serve(app) as url:
        connector = TelegramConnector(TelegramSettings(api_base=url), TOKEN)
        await connector.start(None)
        limiter = RateLimiter(redis, limits, {"telegram": "bot"})
        running = Sender(redis, ContextStore(redis), {"telegram": connector}, batch, 5, 8, limiter)
        for stream in (keys.outbound(0), keys.bulk(0)):  # so that a test may look at pending entries at once
            await ensure_group(redis, stream)
        halt = asyncio.Event()
        task = asyncio.create_task(running.run(0, halt))
        try:
            yield Rig(redis, app.state.emulator, halt, task)
        finally:
            halt.set()
            await task
            await connector.close()


async def test_a_throttled_chat_waits_alone_and_every_message_is_acknowledged_on_its_own(redis: Redis) -> None:
    async with sender(redis, batch=2) as rig:  # two entries a read: the others come in later reads
        rig.emulator.chat_faults[1].add(Fault(status=429, retry_after=2))
        started = time.monotonic()
        waiting = {await rig.queue(1, "a1"), await rig.queue(1, "a2")}
        for n in range(3):
            await rig.queue(2, f"b{n}")
        others = await rig.arrived(2, 3, within=1.5)
        assert [s.text for s in others] == ["b0", "b1", "b2"]
        await rig.pending_becomes(waiting)  # the other chat's entries went as each was sent
        first, second = await rig.arrived(1, 2, within=5)
        assert time.monotonic() - started >= 2
        assert [first.text, second.text] == ["a1", "a2"] and first.at <= second.at
        await rig.pending_becomes(set())


async def test_a_partition_handed_over_mid_wait_leaves_the_waiting_message_pending(redis: Redis) -> None:
    async with sender(redis) as rig:
        rig.emulator.chat_faults[3].add(Fault(status=429, retry_after=30, times=2))
        entry = await rig.queue(3, "later")
        await rig.pending_becomes({entry})  # read, and refused
        handed_over = time.monotonic()
        rig.halt.set()
        await asyncio.wait_for(asyncio.shield(rig.task), 2)
        assert time.monotonic() - handed_over < 2  # the 30 s wait did not hold the partition
        assert await rig.pending() == {entry}
        assert rig.emulator.outbox.after("3", 0) == []


async def test_a_live_reply_goes_ahead_of_a_queued_campaign(redis: Redis) -> None:
    limits = RateLimits(per_sender={"telegram": Rate(per_second=10, burst=10)}, per_chat={}, bulk_reserve=0.5)
    async with sender(redis, limits) as rig:
        campaign = [await rig.queue(1000 + n, "offer", campaign="spring") for n in range(30)]
        await rig.arrived(1000, 1, within=3)  # the campaign is under way
        asked = time.time()
        await rig.queue(7, "your order shipped")
        [reply] = await rig.arrived(7, 1, within=3)
        assert reply.at - asked < 0.5
        # 30 at 10/s, bulk only above the reserve: the campaign was still going when the reply left
        assert len(await rig.pending(keys.bulk(0))) > 5 and len(campaign) == 30


async def test_the_sender_carries_on_after_redis_restarts_empty() -> None:
    server = EmbeddedRedis(port=free_port())
    client = Redis.from_url(server.start(), decode_responses=True)
    try:
        async with sender(client) as rig:
            await rig.queue(5, "before")
            await rig.arrived(5, 1, within=5)
            server.stop()  # the group, the streams and the scripts are gone with it
            server.start()
            await rig.queue(5, "after")
            [_, after] = await rig.arrived(5, 2, within=15)
            assert after.text == "after" and not rig.task.done()
    finally:
        await client.aclose()
        server.stop()


async def test_a_new_owner_sends_every_message_a_dead_one_left_pending(redis: Redis) -> None:
    """Pending entries added by one MULTI have consecutive sequence numbers: paging through them must not
    skip the one after each page (XREADGROUP reads after the id it is given)."""
    await ensure_group(redis, keys.outbound(0))
    messages = [OutboundMessage(id=f"m{n}", contact_id="c7", channel="telegram", user_id="7", reply=Reply(text=f"{n}"))
                for n in range(7)]
    async with redis.pipeline(transaction=True) as pipe:
        for message in messages:
            pipe.xadd(keys.outbound(0), {"m": message.model_dump_json()})
        await pipe.execute()
    await redis.xreadgroup(keys.GROUP, "p0", {keys.outbound(0): ">"})  # read by an owner that then died
    async with sender(redis, batch=2) as rig:
        sent = await rig.arrived(7, 7, within=10)
        assert [s.text for s in sent] == [str(n) for n in range(7)]
