"""`omnihub webhooks …` and `omnihub events …`: the CRM feed's subscriptions, dead letters, replays
and catalogue from a terminal, against the hub's Redis — what `/api/v1/webhooks` does, the same way
(`bot.crm.subscriptions`, `bot.crm.replay`, `bot.crm.ping`), so a running hub sees a change within a
second."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, TypeVar

import typer
from redis.asyncio import Redis

from bot.cli_support import fail, with_redis
from bot.crm import catalogue, replay
from bot.crm.ping import ping
from bot.crm.poster import Poster
from bot.crm.stats import SinkStats, sink_stats
from bot.crm.subscriptions import BadSubscription, Subscription, Subscriptions
from bot.settings import Settings

webhooks = typer.Typer(help="Webhook subscriptions to the event feed: add, list, disable, enable, rotate, test.",
                       no_args_is_help=True)
events = typer.Typer(help="The event feed: replay it, its dead letters, the catalogue (docs/events.md).",
                     no_args_is_help=True)
T = TypeVar("T")
RELATIVE = re.compile(r"^(\d+(?:\.\d+)?)([smhd])$")
UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


class Refused(Exception):
    """What the user asked for cannot be done; the message says why (one line, exit 2)."""


def _with_redis(action: Callable[[Redis, Settings], Awaitable[T]]) -> T:
    return with_redis(action, "the Redis of the hub whose feed to work on", (Refused, BadSubscription))


def _store(redis: Redis, settings: Settings) -> Subscriptions:
    return Subscriptions(redis, settings.pipeline.partitions)


async def _found(store: Subscriptions, subscription_id: str) -> Subscription:
    sub = await store.get(subscription_id)
    if sub is None:
        raise Refused(f"no webhook subscription {subscription_id!r} (see `omnihub webhooks list`)")
    return sub


def since_moment(text: str, now: datetime | None = None) -> datetime:
    """`--since`: ISO 8601 (UTC when it names no offset) or a span back from now: 30m, 2h, 1d."""
    now = now or datetime.now(UTC)
    relative = RELATIVE.match(text.strip())
    if relative:
        return now - timedelta(seconds=float(relative[1]) * UNITS[relative[2]])
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise Refused(f"--since {text!r}: give an ISO 8601 time (2026-03-01T12:00:00Z) or a span "
                      "such as 30m, 2h, 1d") from None
    moment = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    if moment > now:
        raise Refused(f"--since {text!r} is in the future")
    return moment


SubscriptionId = Annotated[str, typer.Argument(help="a subscription's id, from `omnihub webhooks list`")]


@webhooks.command("add")
def add(
    url: Annotated[str, typer.Argument(help="where to POST the events (http:// or https://)")],
    secret: Annotated[str | None, typer.Option(help="whsec_<base64>; one is made when left out")] = None,
    event: Annotated[list[str] | None, typer.Option(
        "--events", help='an event type, "omnihub.message.*" or "*" (repeat, or comma-separate); default: all')] = None,
    description: Annotated[str | None, typer.Option(help="a note for whoever reads the list")] = None,
) -> None:
    """Subscribe URL to the feed; prints the id and the secret (shown this once)."""
    wanted = [t.strip() for spec in event or ["*"] for t in spec.split(",") if t.strip()]
    sub = _with_redis(lambda redis, settings: _store(redis, settings).create(url, secret, wanted, description))
    typer.echo(f"{sub.id}  {sub.url}  events {','.join(sub.events)}")
    typer.echo(f"secret {sub.secret}  (shown once: keep it where the receiver verifies signatures)")


@webhooks.command("list")
def list_subscriptions() -> None:
    """Every subscription: id, status, URL, event types, and delivered/retried/dead/lag."""
    async def listed(redis: Redis, settings: Settings) -> list[tuple[Subscription, SinkStats]]:
        subs = await _store(redis, settings).all()
        return [(s, await sink_stats(redis, settings.pipeline.partitions, s.sink_name)) for s in subs]
    rows = _with_redis(listed)
    if not rows:
        typer.echo("no webhook subscriptions (add one with `omnihub webhooks add URL`)")
        return
    typer.echo(f"{'ID':<22} {'STATUS':<8} {'URL':<40} {'EVENTS':<30} DELIVERED/RETRIED/DEAD/LAG")
    for sub, stats in rows:
        figures = f"{stats.delivered}/{stats.retried}/{stats.dead}/{stats.lag}"
        typer.echo(f"{sub.id:<22} {sub.status:<8} {sub.url:<40} {','.join(sub.events):<30} {figures}")
        if sub.disabled_reason:
            typer.echo(f"{'':<22} disabled: {sub.disabled_reason}")


@webhooks.command()
def disable(subscription_id: SubscriptionId) -> None:
    """Stop delivering; what is not delivered stays in the feed (replay it after `enable`)."""
    async def off(redis: Redis, settings: Settings) -> None:
        store = _store(redis, settings)
        await _found(store, subscription_id)
        await store.disable(subscription_id, "disabled from the command line")
    _with_redis(off)
    typer.echo(f"{subscription_id} disabled")


@webhooks.command()
def enable(subscription_id: SubscriptionId) -> None:
    """Deliver again, from now on; `omnihub events replay` sends what was missed."""
    async def on(redis: Redis, settings: Settings) -> None:
        store = _store(redis, settings)
        await _found(store, subscription_id)
        await store.enable(subscription_id)
    _with_redis(on)
    typer.echo(f"{subscription_id} enabled")


@webhooks.command()
def delete(subscription_id: SubscriptionId) -> None:
    """Forget the subscription and its place in the feed."""
    async def gone(redis: Redis, settings: Settings) -> None:
        if not await _store(redis, settings).delete(subscription_id):
            raise Refused(f"no webhook subscription {subscription_id!r} (see `omnihub webhooks list`)")
    _with_redis(gone)
    typer.echo(f"{subscription_id} deleted")


@webhooks.command()
def rotate(subscription_id: SubscriptionId) -> None:
    """A new secret (printed once); deliveries are signed with the old one too for 24 hours."""
    async def rotated(redis: Redis, settings: Settings) -> Subscription:
        store = _store(redis, settings)
        await _found(store, subscription_id)
        return await store.rotate(subscription_id) or await _found(store, subscription_id)
    typer.echo(f"secret {_with_redis(rotated).secret}  (shown once; the old one still signs for 24 hours)")


@webhooks.command("test")
def test_ping(subscription_id: SubscriptionId) -> None:
    """POST a signed omnihub.webhook.test event to the URL now; exit 1 if the receiver did not take it."""
    async def sent(redis: Redis, settings: Settings) -> tuple[bool, str]:
        sub = await _found(_store(redis, settings), subscription_id)
        poster = Poster()
        try:
            return await ping(sub, poster, settings.crm.timeout_seconds)
        finally:
            await poster.aclose()
    delivered, detail = _with_redis(sent)
    if not delivered:
        typer.secho(f"not delivered: {detail}", fg="red", err=True)
        raise typer.Exit(1)
    typer.echo(f"delivered: {detail}")


@events.command("replay")
def replay_since(
    subscription: Annotated[str, typer.Option(help="the subscription to send the events to again")],
    since: Annotated[str, typer.Option(help="ISO 8601, or back from now: 30m, 2h, 1d")],
) -> None:
    """Send one subscription every event since a moment again (of the types it wants; original ids)."""
    async def queued(redis: Redis, settings: Settings) -> int:
        sub = await _found(_store(redis, settings), subscription)
        return await replay.replay(redis, settings.pipeline.partitions, sub.sink_name, since_moment(since), sub.wants)
    typer.echo(f"{_with_redis(queued)} event(s) queued for {subscription}")


async def _sink(redis: Redis, settings: Settings, subscription: str | None) -> str | None:
    if subscription is None:
        return None
    return (await _found(_store(redis, settings), subscription)).sink_name


@events.command("dead")
def dead_letters(
    subscription: Annotated[str | None, typer.Option(help="only this subscription's")] = None,
    limit: Annotated[int, typer.Option(min=1, max=1000, help="at most this many, newest first")] = 50,
) -> None:
    """Events that failed every attempt: id, sink, event, attempts and the last error."""
    async def listed(redis: Redis, settings: Settings) -> list[replay.DeadEvent]:
        sink = await _sink(redis, settings, subscription)
        return await replay.dead_letters(redis, settings.pipeline.partitions, sink, limit)
    letters = _with_redis(listed)
    if not letters:
        typer.echo("no dead letters")
    for letter in letters:
        event = letter.event
        typer.echo(f"{letter.id}  {letter.sink}  {event['type']}  {event['id']}  contact {event['subject']}  "
                   f"{letter.attempts} attempt(s)  {letter.error}")


@events.command("redeliver")
def redeliver(
    letter_id: Annotated[str, typer.Argument(help="an id from `omnihub events dead`")],
    subscription: Annotated[str | None, typer.Option(help="only if the letter is this subscription's")] = None,
) -> None:
    """Put a dead letter back in the feed, for the sink it was meant for."""
    async def queued(redis: Redis, settings: Settings) -> bool:
        sink = await _sink(redis, settings, subscription)
        try:
            return await replay.redeliver(redis, letter_id, sink)
        except ValueError as exc:  # not a letter id at all
            raise Refused(str(exc)) from None
    if not _with_redis(queued):
        raise fail(f"no dead letter {letter_id!r}" + (f" of {subscription!r}" if subscription else ""))
    typer.echo(f"{letter_id} queued")


@events.command("catalogue")
def write_catalogue(
    check: Annotated[bool, typer.Option("--check", help="only say whether the file is up to date (exit 1 if not)")
                     ] = False,
    path: Annotated[Path, typer.Option(help="where the catalogue is")] = catalogue.DEFAULT_PATH,
) -> None:
    """Write docs/events.md from the event models (or, with --check, find it stale)."""
    if check:
        stale = catalogue.difference(path)
        if stale:
            typer.secho(f"omnihub: stale catalogue: {stale}; run `omnihub events catalogue`", fg="red", err=True)
            raise typer.Exit(1)
        typer.echo(f"{path} is up to date")
        return
    catalogue.write(path)
    typer.echo(f"{path} written")
