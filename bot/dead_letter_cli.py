"""`omnihub dead list|retry|drop`: the dead letters of every partition, from a terminal."""

from __future__ import annotations

import datetime as dt
from collections.abc import Awaitable, Callable
from typing import Annotated, TypeVar

import typer

from bot.cli_support import fail, with_redis
from bot.pipeline.dead_letters import BadLetterId, DeadLetters

dead = typer.Typer(help="Entries that failed every attempt: list them, put them back, or drop them.",
                   no_args_is_help=True)
T = TypeVar("T")


def _with_letters(action: Callable[[DeadLetters], Awaitable[T]]) -> T:
    return with_redis(lambda redis, settings: action(DeadLetters(redis, settings.pipeline.partitions)),
                      "the Redis whose dead letters to read", (BadLetterId,))


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
        raise fail(f"no dead letter {letter_id!r}")
    typer.echo(f"{letter_id} requeued")


@dead.command()
def drop(letter_id: Annotated[str, typer.Argument(help="an id from `omnihub dead list`")]) -> None:
    """Forget the entry for good."""
    if not _with_letters(lambda box: box.drop(letter_id)):
        raise fail(f"no dead letter {letter_id!r}")
    typer.echo(f"{letter_id} dropped")
