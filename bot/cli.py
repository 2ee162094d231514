"""The `omnihub` command: run the hub (whole, or its API and worker halves) and chat with it."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import Annotated, Any

import httpx
import typer
import uvicorn
from redis.asyncio import Redis

from bot.api.http_server import server_config
from bot.campaigns.cli import campaign
from bot.cli_support import fail
from bot.crm.cli import events, webhooks
from bot.dead_letter_cli import dead
from bot.dialogue import DialogError, Engine
from bot.handoff.cli import agents, teams
from bot.handoff.demo import DEMO_EMAIL, DEMO_PASSWORD
from bot.models import Channel
from bot.rasa.cli import rasa
from bot.redaction import RedactingFilter, configured_secrets
from bot.redis_server import EmbeddedRedis, RedisUnavailable, connect
from bot.rendering import sms_info
from bot.sandbox.client import SandboxClient, default_user
from bot.settings import ConfigError, Settings, load_settings

app = typer.Typer(help="Omnihub: one bot and one customer memory for Telegram, WhatsApp, Viber and SMS.",
                  no_args_is_help=True, add_completion=False)
app.add_typer(dead, name="dead")
app.add_typer(agents, name="agents")
app.add_typer(teams, name="teams")
app.add_typer(webhooks, name="webhooks")
app.add_typer(events, name="events")
app.add_typer(campaign, name="campaign")
app.add_typer(rasa, name="rasa")
log = logging.getLogger("omnihub")


def setup_logging(settings: Settings | None = None) -> None:
    """Log to stderr with every configured secret (and any Bot API token in a URL) redacted."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for chatty in ("twilio", "httpx", "aiohttp.access"):  # a line per HTTP request is not worth its cost
        logging.getLogger(chatty).setLevel(logging.WARNING)
    redacting = RedactingFilter(configured_secrets(settings) if settings else ())
    for handler in logging.getLogger().handlers:
        handler.addFilter(redacting)


def checked_settings(need_redis: bool = False) -> Settings:
    """Settings and dialogs validated up front, so a mistake is one line, not a traceback."""
    try:
        settings = load_settings()
        Engine.load(settings.dialogs_dir)
    except (ConfigError, DialogError) as exc:
        raise fail(str(exc)) from None
    if need_redis and not settings.redis_url:
        raise fail("bad setting redis_url (env REDIS_URL): required for `api` and `worker`, which share one Redis")
    if settings.admin_token is None and settings.host not in ("127.0.0.1", "localhost", "::1"):
        raise fail("bad setting admin_token (env OMNIHUB_ADMIN_TOKEN): required when serving beyond loopback")
    return settings


@contextlib.contextmanager
def redis_for(settings: Settings) -> Iterator[Settings]:
    """Use REDIS_URL, or start an embedded Redis under the data directory for as long as we run."""
    if settings.redis_url:
        yield settings
        return
    server = EmbeddedRedis(data_dir=settings.data_dir / "redis")
    try:
        url = server.start()
    except RedisUnavailable as exc:
        raise fail(str(exc)) from None
    try:
        yield settings.model_copy(update={"redis_url": url})
    finally:
        server.stop()


def banner(settings: Settings, run_workers: bool) -> None:
    from bot.api.rasa import SANDBOX_TOKEN
    from bot.hub import Hub

    url = settings.local_url
    hub = Hub(settings, Redis(), run_workers=run_workers)  # not started: only to describe the channels
    typer.echo(f"Omnihub on {url}  (Redis {settings.redis_url})")
    for channel in hub.connectors:
        mode = "sandbox (built-in emulator)" if settings.sandbox(channel) else "live"
        typer.echo(f"  {channel:<9} {mode}")
    typer.echo(f"  sandbox   {url}/sandbox     API docs {url}/docs     metrics {url}/metrics")
    if hub.all_sandbox:
        typer.echo(f"  console   {url}/console     sign in as {DEMO_EMAIL} / {DEMO_PASSWORD}")
    typer.echo(f"  webhooks  {settings.public_url or url}/webhooks/{{telegram,twilio,twilio/status,viber}}")
    if settings.rasa.url:
        actions = "on" if settings.rasa.token else (f"on with the dev token {SANDBOX_TOKEN}" if hub.all_sandbox
                                                   else "off: set OMNIHUB_RASA_TOKEN")
        typer.echo(f"  rasa      {settings.rasa.url} ({settings.rasa.mode} mode)     action server {url}/rasa/webhook: "
                   f"{actions}")


# Young objects are collected every 50,000 allocations instead of Python's 700, the older generations
# every 50 of those. A hub allocates briskly (a webhook, a turn, an event is thousands of small
# objects, nearly all short-lived and acyclic, freed by reference counting anyway) while holding many
# live ones (the feed's events in flight, pooled connections), and the default thresholds spent a
# third to a half of the feed's CPU in collections: tests/bench/events.py, `omnihub run`, 1,186 ->
# 2,551 events/s; tests/bench/pipeline.py 7.9 -> 6.9 ms of CPU per message.
GC_THRESHOLDS = (50_000, 50, 50)


def tune_gc() -> None:
    """What was allocated while starting (modules, dialogs, the app) is never collected again
    (`gc.freeze`), and the collector runs at `GC_THRESHOLDS`."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


def serve(settings: Settings, run_workers: bool) -> None:
    from bot.api.app import create_app

    banner(settings, run_workers)
    # log_config=None: uvicorn's records go to the root handler, through the redacting filter
    config = server_config(create_app(settings, run_workers=run_workers), settings.host, settings.port,
                           log_level="warning", log_config=None, access_log=False,
                           timeout_graceful_shutdown=3)  # an open sandbox tab long-polls
    tune_gc()
    uvicorn.Server(config).run()


@app.command()
def run() -> None:
    """The whole hub in one process: API, webhooks, workers, sandbox emulators."""
    settings = checked_settings()
    setup_logging(settings)
    with redis_for(settings) as served:
        serve(served, run_workers=True)


@app.command()
def api() -> None:
    """Only webhooks and the HTTP API (scale out: many of these behind a load balancer)."""
    settings = checked_settings(need_redis=True)
    setup_logging(settings)
    serve(settings, run_workers=False)


@app.command()
def worker() -> None:
    """Only partition workers and senders (scale out: run several; partitions are shared among them)."""
    settings = checked_settings(need_redis=True)
    setup_logging(settings)
    # uvloop where uvicorn[standard] installed it, as `omnihub run|api` get from uvicorn: a Redis round
    # trip costs the process ~15 % less CPU on it than on asyncio's own loop
    tune_gc()
    with asyncio.Runner(loop_factory=_uvloop()) as runner:
        runner.run(_work(settings))


def _uvloop() -> Callable[[], asyncio.AbstractEventLoop] | None:
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop


async def _work(settings: Settings) -> None:
    from bot.hub import Hub

    redis = connect(settings.redis_url or "")
    hub = Hub(settings, redis, run_api=False, run_workers=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await hub.start()
    typer.echo(f"omnihub worker {hub.settings.pipeline.partitions} partitions, Redis {settings.redis_url}")
    await stop.wait()
    await hub.stop()
    await redis.aclose()


@app.command()
def emulators(
    port: Annotated[int, typer.Option(help="port to serve the emulators on")] = 9090,
    hub: Annotated[str, typer.Option(help="the hub's public URL, where the emulators post webhooks")] = (
        "http://127.0.0.1:8080"),
) -> None:
    """Serve the Telegram, Twilio and Viber emulators on their own (point the *_API_BASE settings here)."""
    from bot.sandbox.emulators import create_emulators, standalone_app

    typer.echo(f"emulators on http://127.0.0.1:{port}/emulator/{{telegram,twilio,viber}} -> webhooks at {hub}")
    uvicorn.run(standalone_app(create_emulators(hub)), host="127.0.0.1", port=port, log_level="warning",
                access_log=False)


@app.command()
def chat(
    channel: Annotated[str, typer.Option(help="telegram | whatsapp | viber | sms")] = "telegram",
    user: Annotated[str | None, typer.Option(help="the customer's id on that channel")] = None,
    name: Annotated[str, typer.Option(help="the customer's name")] = "Sandbox",
) -> None:
    """Talk to the bot from this terminal, as a customer on a sandbox channel."""
    if channel not in ("telegram", "whatsapp", "viber", "sms"):
        raise fail(f"unknown channel {channel!r}: one of telegram, whatsapp, viber, sms")
    settings = checked_settings()
    chosen: Channel = channel  # type: ignore[assignment]
    with _hub_running(settings):
        asyncio.run(_chat(settings.local_url, chosen, user or default_user(chosen), name))


@contextlib.contextmanager
def _hub_running(settings: Settings) -> Iterator[None]:
    """Chat with the hub that runs at OMNIHUB_HOST:PORT, or start one in this process."""
    try:
        httpx.get(f"{settings.local_url}/healthz", timeout=1).raise_for_status()
        yield
        return
    except httpx.HTTPError:
        typer.echo(f"(no hub at {settings.local_url}: starting one in this process)")
    logging.basicConfig(level=logging.WARNING)
    with redis_for(settings) as ready:
        from bot.api.app import create_app

        server = uvicorn.Server(uvicorn.Config(create_app(ready), host=ready.host, port=ready.port,
                                               log_level="error"))
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        deadline = time.monotonic() + 20
        while not server.started and time.monotonic() < deadline and thread.is_alive():
            time.sleep(0.05)
        if not server.started:
            raise fail(f"could not start the hub on {ready.local_url}")
        try:
            yield
        finally:
            server.should_exit = True
            thread.join(10)


NUMBERED: frozenset[Channel] = frozenset({"whatsapp", "sms"})  # the options come numbered in the text


def show(message: dict[str, Any], channel: Channel) -> None:
    """One bot message as its channel shows it; an SMS with the encoding and segments it is billed by."""
    text = message.get("text") or ""
    typer.secho(f"bot> {text}", fg="green")
    if channel == "sms" and text:
        info = sms_info(text)
        typer.secho(f"     ({info.encoding}, {info.segments} segment{'' if info.segments == 1 else 's'})", dim=True)
    for i, button in enumerate(message.get("buttons") or [], 1):
        typer.secho(f"     [#{i}] {button['title']}", fg="cyan")


async def _say(client: SandboxClient, channel: Channel, user: str, name: str, line: str,
               buttons: list[dict[str, str]]) -> bool:
    """Send a line, or press button N for "#N"; say why when the emulator or the hub refuses it."""
    number = line[1:]
    try:
        if line.startswith("#") and number.isdigit() and 0 < int(number) <= len(buttons):
            answer = await client.send(channel, user, button=buttons[int(number) - 1]["payload"], name=name)
        else:
            answer = await client.send(channel, user, line, name=name)
    except httpx.HTTPStatusError as exc:
        typer.secho(f"not sent: {exc.response.text}", fg="red", err=True)
        return False
    if answer["status"] != 200:
        typer.secho(f"the hub refused it: HTTP {answer['status']} {answer.get('body') or ''}", fg="red", err=True)
        return False
    return True


async def _chat(url: str, channel: Channel, user: str, name: str) -> None:
    how = "reply with an option's number" if channel in NUMBERED else "#N presses button N"
    typer.echo(f"Chatting on {channel} as {user}. Type a message; {how}; Ctrl-D quits.")
    async with httpx.AsyncClient(base_url=url, timeout=30) as http:
        client = SandboxClient(http)
        seen = max((m["seq"] for m in await client.replies(channel, user)), default=0)
        buttons: list[dict[str, str]] = []
        while True:
            try:
                line = (await asyncio.to_thread(input, "you> ")).strip()
            except (EOFError, KeyboardInterrupt):
                typer.echo("")
                return
            if not line or not await _say(client, channel, user, name, line, buttons):
                continue
            replies = await client.replies(channel, user, seen, wait=5)
            while replies:
                for message in replies:
                    show(message, channel)
                    # Telegram's inline buttons stay on their message; each Viber message sets or clears the keyboard
                    if channel == "viber" or message.get("buttons"):
                        buttons = message.get("buttons") or []
                    seen = max(seen, message["seq"])
                replies = await client.replies(channel, user, seen, wait=0.4)


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()
