"""Rate limits in Redis: several workers sharing one bucket together stay under it, bulk leaves the
reserve to live replies, and a sender paused by its provider is paused for every worker."""

from __future__ import annotations

import asyncio
import time

from redis.asyncio import Redis

from bot.pipeline.ratelimit import RateLimiter, senders
from bot.settings import Rate, RateLimits, load_settings

RATE, BURST, SECONDS = 40.0, 5, 2.0
LIMITS = RateLimits(per_sender={"telegram": Rate(per_second=RATE, burst=BURST)}, per_chat={}, bulk_reserve=0.5)


async def test_workers_together_never_exceed_the_limit(redis_url: str, redis: Redis) -> None:
    clients = [Redis.from_url(redis_url, decode_responses=True) for _ in range(4)]  # four workers
    limiters = [RateLimiter(client, LIMITS, {"telegram": "bot"}) for client in clients]
    halt, sent = asyncio.Event(), list[float]()
    started = time.monotonic()

    async def keep_sending(limiter: RateLimiter, chat: int) -> None:
        while time.monotonic() - started < SECONDS:
            assert await limiter.wait("telegram", str(chat), halt)
            sent.append(time.monotonic())

    try:
        await asyncio.gather(*(keep_sending(limiter, n * 10 + task) for n, limiter in enumerate(limiters)
                               for task in range(3)))
    finally:
        for client in clients:
            await client.aclose()
    sent.sort()
    for i, first in enumerate(sent):  # any one second holds at most the burst plus a second's refill
        in_second = sum(1 for t in sent[i:] if t - first < 1.0)
        assert in_second <= BURST + RATE + 1, f"{in_second} sends within a second from {first - started:.2f}"
    allowed = BURST + RATE * SECONDS
    within = [t for t in sent if t - started <= SECONDS]  # senders still waiting at the end go on after
    assert 0.85 * allowed <= len(within) <= allowed + 1, f"{len(within)} sends in {SECONDS}s, {allowed} allowed"


async def test_bulk_leaves_the_reserve_to_live_replies(redis: Redis) -> None:
    limits = RateLimits(per_sender={"telegram": Rate(per_second=0.1, burst=8)}, per_chat={}, bulk_reserve=0.25)
    limiter = RateLimiter(redis, limits, {"telegram": "bot"})
    [bucket] = limiter.buckets("telegram", "1")
    bulk = [await limiter.take(bucket, bulk=True) for _ in range(7)]
    assert bulk[:6] == [0.0] * 6 and bulk[6] > 0  # 8 tokens, 2 kept back
    assert [await limiter.take(bucket) for _ in range(3)][:2] == [0.0, 0.0]  # live takes the reserve


async def test_a_sender_throttled_by_its_provider_waits_in_every_worker(redis_url: str, redis: Redis) -> None:
    other = Redis.from_url(redis_url, decode_responses=True)
    try:
        told = RateLimiter(redis, LIMITS, {"sms": "+15550001111", "telegram": "bot"})
        elsewhere = RateLimiter(other, LIMITS, {"sms": "+15550001111", "telegram": "bot"})
        assert not await told.pause_sender("sms", 0.6)  # SMS has no bucket here: nothing to pause
        assert await told.pause_sender("telegram", 0.6)
        started = time.monotonic()
        assert await elsewhere.wait("telegram", "42", asyncio.Event())
        assert time.monotonic() - started >= 0.55
    finally:
        await other.aclose()


async def test_waiting_ends_when_the_partition_is_handed_over(redis: Redis) -> None:
    limiter = RateLimiter(redis, LIMITS, {"telegram": "bot"})
    await limiter.pause_sender("telegram", 30)
    halt = asyncio.Event()
    asyncio.get_running_loop().call_later(0.1, halt.set)
    started = time.monotonic()
    assert await limiter.wait("telegram", "1", halt) is False
    assert time.monotonic() - started < 1


def test_only_channels_with_real_credentials_are_paced(redis_url: str) -> None:
    sandbox = load_settings({"REDIS_URL": redis_url})
    assert senders(sandbox, ["telegram", "sms", "viber"], {"telegram", "sms", "viber"}) == {}
    real = load_settings({"REDIS_URL": redis_url, "TELEGRAM_BOT_TOKEN": "7000000001:secret-half"},
                         pipeline__rate_limits__sandbox=False)
    assert senders(real, ["telegram", "sms"], {"sms"}) == {"telegram": "7000000001"}  # never the secret half
    paced_sandbox = load_settings({"REDIS_URL": redis_url}, pipeline__rate_limits__sandbox=True)
    assert senders(paced_sandbox, ["telegram"], {"telegram"}) == {"telegram": "sandbox"}
