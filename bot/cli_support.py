"""What every `omnihub` command that works on the hub's Redis shares: a one-line error, and a run
against `REDIS_URL` that turns the expected failures into that line (exit 2), never a traceback."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

import typer
from redis.asyncio import Redis

from bot.redis_server import REDIS_FAILURES, connect
from bot.settings import ConfigError, Settings, load_settings

T = TypeVar("T")


def fail(message: str) -> typer.Exit:
    typer.secho(f"omnihub: {message}", fg="red", err=True)
    return typer.Exit(2)


def with_redis(action: Callable[[Redis, Settings], Awaitable[T]], what: str,
               refusals: tuple[type[Exception], ...] = ()) -> T:
    """Run `action` against REDIS_URL (`what` says why it is needed); `refusals` are the errors whose
    message is meant for the user."""
    try:
        settings = load_settings()
    except ConfigError as exc:
        raise fail(str(exc)) from None
    if not settings.redis_url:
        raise fail(f"bad setting redis_url (env REDIS_URL): {what}")

    async def go() -> T:
        redis = connect(settings.redis_url or "")
        try:
            return await action(redis, settings)
        finally:
            await redis.aclose()

    try:
        return asyncio.run(go())
    except refusals as exc:
        raise fail(str(exc)) from None
    except REDIS_FAILURES as exc:
        raise fail(f"Redis at {settings.redis_url}: {exc}") from None
