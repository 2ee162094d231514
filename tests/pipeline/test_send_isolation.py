"""A provider throttling one chat, or one sender, slows down only what it throttles.

A real hub on one partition (so every customer shares the throttled one's partition), the emulators
at the wire answering the way Telegram and Twilio answer a flood: 429 with a retry-after.
"""

from __future__ import annotations

import asyncio
import time

from redis.asyncio import Redis

from bot.context import keys
from bot.sandbox import emulators
from tests.conftest import HubFactory
from tests.pipeline.customer import Customer, statuses

OTHERS = 40
# seconds from a customer's message to the bot's answer: well under the 4 s the throttled chat waits
# (before the fix every customer of the partition waited that long), with room for a loaded machine
ON_TIME = 2.5


async def answered_within(customer: Customer) -> float:
    asked = time.monotonic()
    await customer.say("hello")
    await customer.replies(wait=10)
    return time.monotonic() - asked


async def paused_for(redis: Redis, bucket: str) -> float:
    """Seconds until the bucket refills again (its refill time is ahead of the clock while paused)."""
    refill, (seconds, micros) = await redis.hget(bucket, "ts"), await redis.time()
    return (int(refill or 0) - (seconds * 1000 + micros // 1000)) / 1000


async def test_one_throttled_chat_does_not_hold_up_the_customers_sharing_its_partition(hub: HubFactory) -> None:
    async with hub(pipeline__partitions=1, pipeline__lease_seconds=5) as client:  # a lapsed lease is not the point
        throttled = Customer(client, "telegram", "310000")
        fault = {"chat_id": 310000, "status": 429, "retry_after": 4}
        (await client.http.post("/emulator/telegram/_/faults", json=fault)).raise_for_status()
        asked = time.monotonic()
        await throttled.say("hello")
        others = [Customer(client, "telegram", str(310001 + n)) for n in range(OTHERS)]
        latencies = await asyncio.gather(*(answered_within(c) for c in others))
        assert max(latencies) < ON_TIME, sorted(latencies)[-5:]
        [greeting] = await throttled.replies(wait=10)
        assert time.monotonic() - asked >= 4 and greeting["text"].startswith("Hi")
        await throttled.nothing_more()
        assert statuses(await throttled.history()) == ["sent"]


async def test_a_throttled_sender_number_holds_its_sends_while_other_channels_flow(
    hub: HubFactory, redis: Redis
) -> None:
    async with hub(pipeline__partitions=1, pipeline__lease_seconds=5, pipeline__rate_limits__sandbox=True) as client:
        anna, boris = Customer(client, "sms", "+15550100001"), Customer(client, "sms", "+15550100002")
        telegram = Customer(client, "telegram", "320001")
        fault = {"status": 429, "code": 20429, "retry_after": 3, "times": 1}
        (await client.http.post("/emulator/twilio/_/faults", json=fault)).raise_for_status()
        await anna.say("hello")
        bucket = keys.rate_bucket("sms", emulators.TWILIO_SMS_FROM)
        deadline = time.monotonic() + 10
        while await paused_for(redis, bucket) < 2.5:  # Twilio said "too many requests": the number waits
            assert time.monotonic() < deadline, "the SMS sender was never paused"
            await asyncio.sleep(0.02)
        paused_at = time.monotonic()
        await boris.say("hello")
        assert await answered_within(telegram) < ON_TIME  # another sender, not held
        await boris.replies(wait=10)
        assert time.monotonic() - paused_at >= 2.5  # boris waited for the number, though Twilio never refused him
        await anna.replies(wait=10)
        await anna.nothing_more(wait=0.2)
        for customer in (anna, boris):  # one message each, sent (Twilio may have reported it delivered since)
            assert statuses(await customer.history()) in (["sent"], ["delivered"])
