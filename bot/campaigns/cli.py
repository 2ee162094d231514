"""`omnihub campaign …`: define a campaign in YAML, preview its audience, launch it with a progress
bar, read its figures, pause, resume or cancel it — against the hub's Redis, as the API does, so a
running hub's workers carry it out.

A bad file is refused naming the file and the line (or the field) before anything is stored.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
import yaml
from pydantic import ValidationError
from redis.asyncio import Redis
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from bot.campaigns.model import Campaign, CampaignIn, Status
from bot.campaigns.segments import SegmentError, preview
from bot.campaigns.stats import figures
from bot.campaigns.store import CampaignError, Campaigns, audience
from bot.cli_support import fail, with_redis
from bot.settings import Settings

campaign = typer.Typer(help="Campaigns: run a YAML definition, watch it, read its figures, steer it.",
                       no_args_is_help=True)
T = TypeVar("T")
FIGURES_GRACE_SECONDS = 10.0  # after the last recipient settled, how long `run` waits for its sends to be counted
console = Console()
if not console.is_terminal:  # piped or logged: the figures' table in full rather than 80 columns wide
    console = Console(width=160)


def _with_redis(action: Callable[[Redis, Settings], Awaitable[T]]) -> T:
    return with_redis(action, "the Redis of the hub that runs the campaign", (CampaignError, SegmentError))


def load_definition(path: Path) -> CampaignIn:
    """The campaign in `path`; a `fail` naming the file and line (YAML) or the field (a bad value)."""
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise fail(f"{path}: cannot read it: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        raise fail(f"{path}:{mark.line + 1 if mark else 1}: not valid YAML") from None
    if not isinstance(raw, dict):
        raise fail(f"{path}:1: a campaign is a mapping (name, purpose, audience, steps)")
    try:
        return CampaignIn.model_validate(raw)
    except ValidationError as exc:
        error = exc.errors()[0]
        where = ".".join(str(part) for part in error["loc"])
        raise fail(f"{path}:{_line_of(path, error['loc'])}: {where}: {error['msg']}") from None


def _line_of(path: Path, loc: tuple[Any, ...]) -> int:
    """The line of the first key of `loc` found in the file (1 if none is)."""
    lines = path.read_text(encoding="utf-8").splitlines()
    for part in reversed([p for p in loc if isinstance(p, str)]):
        for number, line in enumerate(lines, 1):
            if line.strip().startswith(f"{part}:") or line.strip().startswith(f"- {part}:"):
                return number
    return 1


@campaign.command("preview")
def preview_cmd(file: Annotated[Path, typer.Argument(help="the campaign's YAML")]) -> None:
    """How many contacts the campaign's audience selects now, and a sample."""
    definition = load_definition(file)

    async def act(redis: Redis, settings: Settings) -> None:
        found = await preview(redis, definition.audience, 10)
        typer.echo(f"{found.count} contacts; for instance {', '.join(found.sample) or 'none'}")

    _with_redis(act)


@campaign.command("run")
def run(file: Annotated[Path, typer.Argument(help="the campaign's YAML")],
        watch: Annotated[bool, typer.Option(help="follow the progress until every recipient is settled")] = True,
        ) -> None:
    """Create the campaign, launch it, and (unless --no-watch) show its progress."""
    definition = load_definition(file)

    async def act(redis: Redis, settings: Settings) -> None:
        store = Campaigns(redis, settings.pipeline.partitions)
        made = await store.create(definition)
        started = await store.start(made.id, audience(redis, definition.audience))
        typer.echo(f"campaign {started.id} running: {started.recipients} recipients")
        if watch:
            await _watch(store, redis, started)

    _with_redis(act)


async def _watch(store: Campaigns, redis: Redis, started: Campaign) -> None:
    """A progress bar of settled recipients (nothing left due for them), then the figures."""
    with Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TextColumn("sent {task.fields[sent]}  read {task.fields[read]}"), TimeElapsedColumn(),
                  console=console) as bar:
        task = bar.add_task(started.definition.name, total=started.recipients, sent=0, read=0)
        settled_at: float | None = None
        while True:
            pending = await store.pending(started.id)
            found = await figures(redis, started.id, started.recipients)
            bar.update(task, completed=max(0, started.recipients - pending), sent=found.totals.sent,
                       read=found.totals.read)
            current = await store.get(started.id)
            if current is None or current.status in ("cancelled", "done"):
                break
            # settled, and every recipient's first message counted (or a few seconds for the feed to tell)
            accounted = found.totals.sent + found.totals.failed + found.totals.skipped >= started.recipients
            settled_at = (settled_at or time.monotonic()) if pending == 0 else None
            if settled_at is not None and (accounted or time.monotonic() - settled_at > FIGURES_GRACE_SECONDS):
                break
            await asyncio.sleep(0.5)
    await _print_figures(redis, started.id, started.recipients)


@campaign.command("status")
def status(campaign_id: str) -> None:
    """The campaign's state and its figures per channel."""

    async def act(redis: Redis, settings: Settings) -> None:
        store = Campaigns(redis, settings.pipeline.partitions)
        found = await store.get(campaign_id)
        if found is None:
            raise CampaignError(f"no campaign {campaign_id!r}")
        pending = await store.pending(campaign_id)
        typer.echo(f"{found.id} {found.definition.name!r}: {found.status}, {found.recipients} recipients, "
                   f"{pending} steps due")
        await _print_figures(redis, campaign_id, found.recipients)

    _with_redis(act)


async def _print_figures(redis: Redis, campaign_id: str, recipients: int) -> None:
    found = await figures(redis, campaign_id, recipients)
    table = Table("channel", "sent", "delivered", "read", "replied", "converted", "failed", "skipped", "late reads",
                  "cost", "cost / conversion", "median to read")
    for channel, f in sorted(found.channels.items()):
        table.add_row(channel, *(str(v) for v in (f.sent, f.delivered, f.read, f.replied, f.converted, f.failed,
                                                  f.skipped, f.late_reads)),
                      f"{f.cost:.4f}", "" if f.cost_per_conversion is None else f"{f.cost_per_conversion:.4f}",
                      "" if f.median_seconds_to_read is None else f"{f.median_seconds_to_read:.1f} s")
    console.print(table)


def _steer(campaign_id: str, wanted: Status) -> None:
    async def act(redis: Redis, settings: Settings) -> None:
        changed = await Campaigns(redis, settings.pipeline.partitions).set_status(campaign_id, wanted)
        typer.echo(f"{changed.id}: {changed.status} ({time.strftime('%H:%M:%S')})")

    _with_redis(act)


@campaign.command("pause")
def pause(campaign_id: str) -> None:
    """Hold the campaign: nothing more goes out until `resume` (due steps wait)."""
    _steer(campaign_id, "paused")


@campaign.command("resume")
def resume(campaign_id: str) -> None:
    _steer(campaign_id, "running")


@campaign.command("cancel")
def cancel(campaign_id: str) -> None:
    """Stop for good: steps still due are dropped when they come up."""
    _steer(campaign_id, "cancelled")
