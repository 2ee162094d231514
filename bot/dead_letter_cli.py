"""`omnihub dead list|retry|drop`: the dead letters of every partition, from a terminal."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Awaitable, Callable
from typing import Annotated, TypeVar

import typer

from bot.pipeline.dead_letters import BadLetterId, DeadLetters
from bot.redis_server import REDIS_FAILURES, connect
from bot.settings import ConfigError, load_settings

dead = typer.Typer(help="Entries that failed every attempt: list them, put them back, or drop them.",
                   no_args_is_help=True)
T = TypeVar("T")


def _with_letters(action: Callable[[DeadLetters], Awaitable[T]]) -> T:
    try:
        settings = load_settings()
    except ConfigError as exc:
        raise _fail(str(exc)) from None
    if not settings.redis_url:
        raise _fail("bad setting redis_url (env REDIS_URL): the Redis whose dead letters to read")

    async def go() -> T:
        redis = connect(settings.redis_url or "")
        try:
            return await action(DeadLetters(redis, settings.pipeline.partitions))
        finally:
            await redis.aclose()

    try:
        return asyncio.run(go())
    except BadLetterId as exc:
        raise _fail(str(exc)) from None
    except REDIS_FAILURES as exc:
        raise _fail(f"Redis at {settings.redis_url}: {exc}") from None


def _fail(message: str) -> typer.Exit:
    typer.secho(f"omnihub: {message}", fg="red", err=True)
    return typer.Exit(2)


@dead.command("list")
def list_letters(limit: Annotated[int, typer.Option(help="at most this many, newest first")] = 50) -> None:
    """The newest dead letters: id, when, contact, attempts and the error."""
    letters = _with_letters(lambda box: box.list(limit))
    if not letters:
        typer.echo("no dead letters")
    for stored in letters:
        letter = stored.letter
        when = dt.datetime.fromtimestamp(letter.at, dt.UTC).strftime("%Y-%m-%d %H:%M:%S")
        typer.echo(f"{stored.id}  {when}  contact {letter.contact_id}  {letter.attempts} attempt(s)  {letter.error}")


@dead.command()
def retry(letter_id: Annotated[str, typer.Argument(help="an id from `omnihub dead list`")]) -> None:
    """Put the entry back on its partition; it is processed again behind what its contact sent since."""
    if not _with_letters(lambda box: box.retry(letter_id)):
        raise _fail(f"no dead letter {letter_id!r}")
    typer.echo(f"{letter_id} requeued")


@dead.command()
def drop(letter_id: Annotated[str, typer.Argument(help="an id from `omnihub dead list`")]) -> None:
    """Forget the entry for good."""
    if not _with_letters(lambda box: box.drop(letter_id)):
        raise _fail(f"no dead letter {letter_id!r}")
    typer.echo(f"{letter_id} dropped")
