"""The login limiter on its own against the test Redis: per email and address, and per address alone."""

from __future__ import annotations

from redis.asyncio import Redis

from bot.console.sessions import (
    ADDRESS_FAILURES_ALLOWED,
    LOGIN_FAILURES_ALLOWED,
    LOGIN_WINDOW_SECONDS,
    LoginLimiter,
    login_failures_key,
)


async def test_a_few_failures_block_one_email_at_one_address(redis: Redis) -> None:
    limiter = LoginLimiter(redis)
    for _ in range(LOGIN_FAILURES_ALLOWED):
        assert not await limiter.blocked("Ann@Example.com", "10.0.0.1")
        await limiter.failed("Ann@Example.com", "10.0.0.1")
    assert await limiter.blocked("ann@example.com ", "10.0.0.1")  # however the email is typed
    assert not await limiter.blocked("ann@example.com", "10.0.0.2")  # the same email elsewhere
    assert 0 < await redis.ttl(login_failures_key("ann@example.com", "10.0.0.1")) <= LOGIN_WINDOW_SECONDS


async def test_one_address_trying_many_emails_is_blocked_too(redis: Redis) -> None:
    limiter = LoginLimiter(redis)
    for n in range(ADDRESS_FAILURES_ALLOWED):
        await limiter.failed(f"user{n}@example.com", "10.0.0.3")
    assert await limiter.blocked("someone-new@example.com", "10.0.0.3")
    assert not await limiter.blocked("someone-new@example.com", "10.0.0.4")
