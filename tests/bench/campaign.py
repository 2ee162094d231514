"""Campaign benchmark (issue 10): 100,000 contacts, one SMS campaign, the hub against the emulators.

    .venv/bin/python tests/bench/campaign.py [--contacts 100000] [--pace-recipients 20000] [--layout run|split]
                                             [--limit 1000] [--live-rate 20] [--live-seconds 20] [--subscriptions 0]

Starts a throwaway Redis, the provider emulators in their own process (what `omnihub emulators`
serves, with the status callbacks posted over aiohttp: see `AiohttpCourier`) and the hub in "live"
mode against them (`omnihub run`, or `--layout split`: `omnihub api` + 2 x `omnihub
worker`), with real-looking credentials, so the provider send limits apply: `--limit` per second per
sender (burst as much) for SMS, WhatsApp and Telegram, `bulk_reserve` as shipped (0.25).

1. **Contacts, through the real write path.** `--contacts` contacts are upserted by phone with
   `POST /api/v1/contacts/batch` (100 a request, one at a time: a request waits for each of its items
   in a BLPOP, and 500 of them took every connection of the hub's Redis pool of 256, so the workers of
   `omnihub run` could not apply what the API waited for: 503s, lost leases): each is an `UpdateContact`
   command applied by the contact's partition worker, which commits the profile, the SMS identity,
   the tags (`bench` for all, `pace` for the first `--pace-recipients`) and the SMS marketing
   consent, and keeps the segment indexes as the store's commit does.
2. **Segment evaluation** (`segments.evaluate`, `{tags: [bench], channels: [sms]}`; median and worst
   of 3; target <= 2 s) and **plan and enqueue** (`Campaigns.start` over `audience()`, called here
   against the hub's Redis; target <= 10 s) for the whole audience. That campaign starts tomorrow
   (`start_at`), so planning is all it does; its Redis bytes per planned recipient are printed, then
   it is cancelled and its due entries dropped.
3. **Send pace.** A service campaign (no consent needed) to the `pace` contacts, one SMS step judged
   on `sent`, started with `POST /api/v1/campaigns/{id}/start`. The Twilio emulator records every send
   with its time (`/emulator/twilio/_/outbox`); over the steady part (the first 2 s and the last 1 s
   cut) the benchmark prints sends/s mean and the highest 1-second bin, and the most sends seen in any
   sliding 1-second window, with and without the start-up burst (target: mean within 5 % of the limit,
   never above it). The emulator posts Twilio's `sent` and `delivered` callbacks for each message, as
   Twilio does, so the hub also takes two webhooks per send.
4. **Redis bytes per recipient in flight:** `used_memory` growth from before the pace campaign until
   every message went out (each recipient then has its standing in `omni:{cid}:cmp`, its history
   entry, its check due in `omni:cmpdue:{p}` an hour later, its feed events), divided by recipients;
   with a breakdown from `MEMORY USAGE` of those keys.
5. **Live replies meanwhile.** 100 Telegram customers write `--live-rate` messages/s in all (signed
   Updates posted straight to the hub's webhook, as tests/bench/pipeline.py does); latency = post ->
   the reply recorded by the Telegram emulator. p99 idle (`--live-seconds`, before the campaign) and
   during the campaign's steady part (target: no more than +20 % of the idle p99).

Also printed: CPU milliseconds per campaign send of each process over the pace run.

`--subscriptions N` runs it all with N webhook subscriptions to every event, delivered to the receiver
of tests/bench/events.py (its own process): issue 12's "chat with two CRM subscriptions and a
campaign running".
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import itertools
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import httpx
import orjson
import uvicorn
from redis.asyncio import Redis

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from bot.campaigns.segments import Segment, evaluate  # noqa: E402
from bot.campaigns.stats import figures  # noqa: E402
from bot.campaigns.store import Campaigns, audience  # noqa: E402
from bot.context import keys  # noqa: E402
from bot.redis_server import EmbeddedRedis, free_port  # noqa: E402
from bot.sandbox import emulator_kit  # noqa: E402
from bot.sandbox import emulators as sandbox  # noqa: E402
from bot.sandbox.emulators import create_emulators, standalone_app  # noqa: E402
from tests.bench.events import start_receiver, subscribe  # noqa: E402
from tests.bench.pipeline import TURNS, Customers, cpu_seconds, spawn, until_ready  # noqa: E402

ROLES = {"run": [["run"]], "split": [["api"], ["worker"], ["worker"]]}
PARTITIONS = 16
BATCH = 100
BATCHES_IN_FLIGHT = 1
SEGMENT = Segment.model_validate({"tags": ["bench"], "channels": ["sms"]})
EVALUATE_TARGET, PLAN_TARGET, PACE_TOLERANCE, LATENCY_TARGET = 2.0, 10.0, 0.05, 0.20
REPLY_TIMEOUT = 30.0  # Customers.turn's wait


def write_config(limit: int) -> Path:
    """`limit` 0: no provider send limits at all (what the hub manages unpaced)."""
    rate = f"{{per_second: {limit}, burst: {limit}}}"
    per_sender = f"{{sms: {rate}, whatsapp: {rate}, telegram: {rate}}}" if limit else "{}"
    per_chat = "{telegram: {per_second: 1, burst: 5}}" if limit else "{}"
    config = Path(tempfile.mkdtemp()) / "omnihub.yaml"
    config.write_text(f"pipeline:\n  partitions: {PARTITIONS}\n  lease_seconds: 5\n"
                      f"  rate_limits: {{sandbox: true, per_sender: {per_sender}, per_chat: {per_chat}}}\n")
    return config


def hub_env(redis_url: str, hub_port: int, emulator_port: int, config: Path) -> dict[str, str]:
    """Live mode against the emulators, as tests/bench/pipeline.py's run_layout sets it up."""
    hub, base = f"http://127.0.0.1:{hub_port}", f"http://127.0.0.1:{emulator_port}/emulator"
    return {**os.environ, "REDIS_URL": redis_url, "OMNIHUB_PORT": str(hub_port), "OMNIHUB_PUBLIC_URL": hub,
            "OMNIHUB_CONFIG": str(config),
            "TELEGRAM_BOT_TOKEN": sandbox.TELEGRAM_TOKEN, "TELEGRAM_WEBHOOK_SECRET": sandbox.TELEGRAM_SECRET,
            "TELEGRAM_API_BASE": f"{base}/telegram", "TWILIO_ACCOUNT_SID": sandbox.TWILIO_SID,
            "TWILIO_AUTH_TOKEN": sandbox.TWILIO_TOKEN, "TWILIO_SMS_FROM": sandbox.TWILIO_SMS_FROM,
            "TWILIO_WHATSAPP_FROM": sandbox.TWILIO_WHATSAPP_FROM, "TWILIO_API_BASE": f"{base}/twilio",
            "VIBER_AUTH_TOKEN": sandbox.VIBER_TOKEN, "VIBER_API_BASE": f"{base}/viber"}


async def used_memory(redis: Redis) -> int:
    return int((await redis.info("memory"))["used_memory"])


# --- 1. contacts ----------------------------------------------------------------------------------

async def create_contacts(http: aiohttp.ClientSession, hub: str, contacts: int, pace: int) -> float:
    """Upsert every contact by phone through the batch API; returns contacts per second."""
    lanes = asyncio.Semaphore(BATCHES_IN_FLIGHT)

    async def batch(start: int) -> None:
        items = [{"phone": f"+7999{n:07d}", "name": f"Customer {n}", "add_tags": ["bench", "pace"] if n < pace
                  else ["bench"], "consent": {"sms": {"marketing": "in"}}}
                 for n in range(start, min(start + BATCH, contacts))]
        async with lanes, http.post(f"{hub}/api/v1/contacts/batch", json={"items": items}) as answer:
            answer.raise_for_status()
            failed = [i for i in orjson.loads(await answer.read())["items"] if i["error"]]
        if failed:
            raise SystemExit(f"{len(failed)} upserts refused, e.g. {failed[0]}")

    started = time.perf_counter()
    await asyncio.gather(*(batch(start) for start in range(0, contacts, BATCH)))
    return contacts / (time.perf_counter() - started)


# --- 2. evaluate and plan -------------------------------------------------------------------------

async def evaluate_and_plan(redis: Redis, http: aiohttp.ClientSession, hub: str) -> dict[str, Any]:
    times, count = [], 0
    for _ in range(3):
        t0 = time.perf_counter()
        result = await evaluate(redis, SEGMENT)
        times.append(time.perf_counter() - t0)
        count = result.count
        await redis.delete(result.key)
    tomorrow = datetime.now(UTC) + timedelta(days=1)
    campaign = await create_campaign(http, hub, "plan only", {"tags": ["bench"], "channels": ["sms"]},
                                     start_at=tomorrow.isoformat())
    before = await used_memory(redis)
    t0 = time.perf_counter()
    started = await Campaigns(redis, PARTITIONS).start(campaign, audience(redis, SEGMENT))
    planned_in = time.perf_counter() - t0
    planned_bytes = (await used_memory(redis) - before) / max(started.recipients, 1)
    async with http.post(f"{hub}/api/v1/campaigns/{campaign}/cancel") as answer:
        answer.raise_for_status()
    at = tomorrow.timestamp()
    for p in range(PARTITIONS):  # its due entries would wait a day: drop them, not to count them later
        await redis.zremrangebyscore(keys.campaign_due(p), at - 1, at + 1)
    return {"count": count, "evaluate": times, "plan": planned_in, "planned": started.recipients,
            "planned_bytes": planned_bytes}


async def create_campaign(http: aiohttp.ClientSession, hub: str, name: str, segment: dict[str, Any],
                          start_at: str | None = None) -> str:
    body: dict[str, Any] = {"name": name, "purpose": "service", "audience": segment, "steps": [
        {"channel": "sms", "text": "Hello {{ contact.name }}, your order is ready for pickup.", "until": "sent",
         "within": 3600}]}
    if start_at:
        body["start_at"] = start_at
    async with http.post(f"{hub}/api/v1/campaigns", json=body) as answer:
        answer.raise_for_status()
        return str(orjson.loads(await answer.read())["id"])


# --- 3. sends, and 5. live replies -----------------------------------------------------------------

async def collect_sends(http: aiohttp.ClientSession, emulators: str, expected: int, within: float) -> list[float]:
    """When the Twilio emulator received each SMS, until `expected` came (or `within` seconds passed)."""
    seq, times = 0, []
    deadline = time.monotonic() + within
    while len(times) < expected and time.monotonic() < deadline:
        async with http.get(f"{emulators}/emulator/twilio/_/outbox", params={"after": seq, "wait": 1}) as answer:
            items = orjson.loads(await answer.read())["items"]
        for item in items:
            seq = max(seq, item["seq"])
            if item["raw"].get("channel") == "sms":
                times.append(item["at"])
    return sorted(times)


async def chatter(customers: Customers, people: list[tuple[str, str]], rate: float,
                  stop: asyncio.Event) -> list[tuple[float, float]]:
    """Offer `rate` messages/s over `people` until `stop`; (posted at, latency) of each reply."""
    samples: list[tuple[float, float]] = []
    busy: set[int] = set()
    tasks: set[asyncio.Task[None]] = set()

    async def one(i: int, turn: int) -> None:
        posted = time.time()
        try:
            samples.append((posted, await customers.turn(*people[i], TURNS[turn % len(TURNS)])))
        except TimeoutError:  # no reply within 30 s: counted as 30 s (a lower bound), and counted apart
            samples.append((posted, REPLY_TIMEOUT))
        finally:
            busy.discard(i)

    started = time.perf_counter()
    for offered in itertools.count():
        if stop.is_set():
            break
        await asyncio.sleep(max(0.0, started + offered / rate - time.perf_counter()))
        i = offered % len(people)
        if i not in busy:
            busy.add(i)
            task = asyncio.create_task(one(i, offered // len(people)))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
    await asyncio.gather(*tasks, return_exceptions=True)
    return samples


async def collect_replies(customers: Customers, stop: asyncio.Event) -> None:
    """Customers.collect for Telegram, but one failed poll (the emulator busy, a connection dropped)
    does not end it: it asks again from the same place, so no reply is lost or matched twice."""
    seq = 0
    while not stop.is_set():
        try:
            async with customers.http.get(f"{customers.emulators}/emulator/telegram/_/outbox",
                                          params={"after": seq, "wait": 1}) as answer:
                items = orjson.loads(await answer.read())["items"]
        except (aiohttp.ClientError, TimeoutError) as exc:
            print(f"telegram outbox poll failed ({exc!r}); again", flush=True)
            continue
        for item in items:
            seq = max(seq, item["seq"])
            pending = customers.waiting.pop(("telegram", item["user_id"]), None)
            if pending and not pending[1].done():
                pending[1].set_result(item["at"] - pending[0])
                customers.answered += 1


def p99(latencies: list[float]) -> float:
    return statistics.quantiles(latencies, n=100, method="inclusive")[98] if len(latencies) >= 2 else float("nan")


def pace_figures(times: list[float], limit: int) -> dict[str, Any]:
    """Per-second bins from the first send; the steady part drops the first 2 s and the last 1 s."""
    if len(times) < 2:
        return {"sent": len(times)}
    first, last = times[0], times[-1]
    bins = [0] * (int(last - first) + 1)
    for t in times:
        bins[int(t - first)] += 1
    steady = bins[2:-1] or bins

    def window_max(after: float) -> int:  # the most sends in any [t, t + 1 s) with t >= after
        start, best = bisect.bisect_left(times, after), 0
        for i in range(start, len(times)):
            best = max(best, bisect.bisect_left(times, times[i] + 1.0) - i)
        return best

    return {"sent": len(times), "seconds": last - first, "overall": len(times) / max(last - first, 1e-9),
            "mean": statistics.mean(steady), "max_bin": max(steady), "first_bin": bins[0],
            "window_all": window_max(first), "window_steady": window_max(first + 2.0),
            "over": sum(1 for b in bins if b > limit)}


async def in_flight_breakdown(redis: Redis, campaign: str, cids: list[str], recipients: int,
                              dedupe_before: int) -> dict[str, float]:
    """MEMORY USAGE per recipient: its due check entry, its standing hash, its history (the campaign's
    entry is its only one), the campaign's counters, the feed's events, the receipts' dedupe entries."""
    due = sum([await redis.memory_usage(keys.campaign_due(p), samples=0) or 0 for p in range(PARTITIONS)])
    entries = sum([await redis.zcard(keys.campaign_due(p)) for p in range(PARTITIONS)])
    standing = statistics.mean([await redis.memory_usage(keys.campaign_states(c), samples=0) or 0 for c in cids])
    history = statistics.mean([await redis.memory_usage(keys.history(c), samples=0) or 0 for c in cids])
    stats = sum([await redis.memory_usage(k, samples=0) or 0 for k in (
        keys.campaign_stats(campaign), keys.campaign_seen(campaign))])
    feed = sum([await redis.memory_usage(keys.events(p), samples=0) or 0 for p in range(PARTITIONS)])
    # dedupe of what the run appended (the steps, the receipts): a key each, and a sorted set per contact
    dedupe_keys = [key async for key in redis.scan_iter(match="omni:dd:*", count=10_000)]
    each = statistics.mean([await redis.memory_usage(k, samples=0) or 0 for k in dedupe_keys[-200:]] or [0])
    own = statistics.mean([await redis.memory_usage(keys.deduped(c), samples=0) or 0 for c in cids])
    return {"due": due / max(entries, 1), "standing": standing, "history": history, "stats": stats / recipients,
            "feed": feed / recipients, "dedupe": each * (len(dedupe_keys) - dedupe_before) / recipients + own}


async def pace_run(redis: Redis, http: aiohttp.ClientSession, hub: str, emulators: str, customers: Customers,
                   pids: dict[str, int], args: argparse.Namespace) -> dict[str, Any]:
    people = customers.new(args.live_customers)
    warm = asyncio.Event()
    warming = asyncio.create_task(chatter(customers, people, args.live_rate, warm))
    await asyncio.sleep(3)
    warm.set()
    await warming
    idle_stop = asyncio.Event()
    idle_task = asyncio.create_task(chatter(customers, people, args.live_rate, idle_stop))
    await asyncio.sleep(args.live_seconds)
    idle_stop.set()
    idle = [latency for _, latency in await idle_task]

    segment = {"tags": ["pace"]} if args.pace_recipients < args.contacts else {"tags": ["bench"]}
    campaign = await create_campaign(http, hub, "pace", segment)
    await asyncio.sleep(6)  # acknowledged stream entries are trimmed every 5 s: a quiet baseline
    dedupe_before = len([key async for key in redis.scan_iter(match="omni:dd:*", count=10_000)])
    before = await used_memory(redis)
    cpu_before = {name: cpu_seconds(pid) for name, pid in pids.items()}
    busy_stop = asyncio.Event()
    busy_task = asyncio.create_task(chatter(customers, people, args.live_rate, busy_stop))
    sends = asyncio.create_task(collect_sends(http, emulators, args.pace_recipients, args.timeout))
    t0 = time.perf_counter()
    async with http.post(f"{hub}/api/v1/campaigns/{campaign}/start") as answer:
        answer.raise_for_status()
    started_in = time.perf_counter() - t0
    times = await sends
    busy_stop.set()
    busy = await busy_task
    cpu = {name: cpu_seconds(pid) - cpu_before[name] for name, pid in pids.items()}
    await asyncio.sleep(7)  # the last callbacks, then the streams' trim
    after = await used_memory(redis)
    pace = pace_figures(times, args.limit)
    during = [latency for posted, latency in busy if times and times[0] + 2 <= posted <= times[-1] - 1]
    sample = [str(await redis.get(keys.identity("sms", f"+7999{n:07d}")))
              for n in range(0, args.pace_recipients, max(1, args.pace_recipients // 200))]
    counted = await figures(redis, campaign, args.pace_recipients)
    return {"idle": idle, "during": during, "pace": pace, "start_api": started_in,
            "in_flight": (after - before) / args.pace_recipients,
            "breakdown": await in_flight_breakdown(redis, campaign, sample, args.pace_recipients, dedupe_before),
            "cpu": {name: seconds / max(len(times), 1) * 1000 for name, seconds in cpu.items()},
            "stats_sent": counted.totals.sent, "stats_delivered": counted.totals.delivered}


# --- the emulators (their own process: `campaign.py --emulators PORT HUB`) ------------------------

class AiohttpCourier(emulator_kit.Courier):
    """The emulators' callbacks over aiohttp instead of httpx: httpx's pool walks every queued request
    for every request it starts, and with the hub a little behind on 2,000 Twilio callbacks a second
    that walk took the emulator process's whole core (16-20 ms of CPU per SMS in the profile), so the
    benchmark measured its own fake provider, Telegram replies included."""

    async def open(self) -> None:
        self._session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=200),
                                              timeout=aiohttp.ClientTimeout(total=30))

    async def aclose(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._session.close()

    async def post(self, url: str, body: bytes, headers: Mapping[str, str]) -> httpx.Response:
        try:
            async with self._session.post(url, data=body, headers=dict(headers)) as answer:
                return httpx.Response(answer.status, content=await answer.read())
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise httpx.TransportError(repr(exc)) from exc


def start_emulators(port: int, hub: str, env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, __file__, "--emulators", str(port), hub], cwd=ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def serve_emulators(port: int, hub: str) -> None:
    emulator_kit.Courier = AiohttpCourier  # type: ignore[misc]  # read when each emulator is built
    app = standalone_app(create_emulators(hub))
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False, loop="uvloop")


# --- the run --------------------------------------------------------------------------------------

async def bench(args: argparse.Namespace) -> None:
    server = EmbeddedRedis()
    redis_url = server.start()
    redis = Redis.from_url(redis_url, decode_responses=True)
    hub_port, emulator_port = free_port(), free_port()
    hub, emulators = f"http://127.0.0.1:{hub_port}", f"http://127.0.0.1:{emulator_port}"
    env = hub_env(redis_url, hub_port, emulator_port, write_config(args.limit))
    emulator_proc = start_emulators(emulator_port, hub, env)
    procs = [spawn(role[0], ["-m", "bot.cli", *role], env) for role in ROLES[args.layout]]
    receiver_port = free_port()
    receiver_proc = start_receiver(receiver_port) if args.subscriptions else None
    try:
        await until_ready(f"{emulators}/emulator/telegram/_/webhook", [emulator_proc])
        await until_ready(f"{hub}/readyz", procs)
        await asyncio.sleep(3)  # webhooks registered, workers hold their partition leases
        if receiver_proc is not None:  # the CRM feed running beside the campaign, as issue 12 asks
            await until_ready(f"http://127.0.0.1:{receiver_port}/stats", [receiver_proc])
            for n in range(args.subscriptions):
                await subscribe(hub, f"http://127.0.0.1:{receiver_port}/crm-{n}")
        pids = {"emulators": emulator_proc.pid, **{f"{r[0]}-{i}": p.pid for i, (r, p) in
                                                   enumerate(zip(ROLES[args.layout], procs, strict=True))},
                "redis": int((await redis.info("server"))["process_id"]), "bench": os.getpid()}
        connector = aiohttp.TCPConnector(limit=500, keepalive_timeout=2)
        async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=120)) as http:
            base = await used_memory(redis)
            rate = await create_contacts(http, hub, args.contacts, args.pace_recipients)
            contact_bytes = (await used_memory(redis) - base) / args.contacts
            print(f"{args.contacts:,} contacts upserted through POST /api/v1/contacts/batch at {rate:,.0f}/s; "
                  f"{contact_bytes:,.0f} Redis bytes per contact", flush=True)
            planned = await evaluate_and_plan(redis, http, hub)
            print(f"segment {planned['count']:,} contacts: evaluate {max(planned['evaluate']):.3f} s (worst of 3), "
                  f"plan {planned['planned']:,} in {planned['plan']:.2f} s", flush=True)
            customers = Customers(http, hub, emulators, ("telegram",))
            halt = asyncio.Event()
            collector = asyncio.create_task(collect_replies(customers, halt))
            paced = await pace_run(redis, http, hub, emulators, customers, pids, args)
            halt.set()
            await collector
    finally:
        others = [receiver_proc] if receiver_proc is not None else []
        for proc in [*procs, emulator_proc, *others]:
            proc.terminate()
        for proc in [*procs, emulator_proc, *others]:
            proc.wait(15)
        await redis.aclose()
        server.stop()
    report(args, planned, paced)


def verdict(ok: bool) -> str:
    return "MET" if ok else "NOT MET"


def report(args: argparse.Namespace, planned: dict[str, Any], paced: dict[str, Any]) -> None:
    pace, limit = paced["pace"], args.limit
    print(f"\nOmnihub campaign benchmark: {os.cpu_count()} cores, layout {args.layout}, {args.contacts:,} contacts, "
          f"{PARTITIONS} partitions, limit {limit}/s per sender, {args.subscriptions} webhook subscription(s)")
    worst = max(planned["evaluate"])
    print(f"segment evaluation   {planned['count']:,} contacts: median {statistics.median(planned['evaluate']):.3f} s, "
          f"worst {worst:.3f} s (target <= {EVALUATE_TARGET:.0f} s)  {verdict(worst <= EVALUATE_TARGET)}")
    print(f"plan and enqueue     {planned['planned']:,} recipients in {planned['plan']:.2f} s "
          f"(target <= {PLAN_TARGET:.0f} s)  {verdict(planned['plan'] <= PLAN_TARGET)}; "
          f"{planned['planned_bytes']:.0f} Redis bytes per planned recipient")
    if "mean" not in pace:
        print(f"send pace            only {pace['sent']} sends seen")
        return
    low = limit * (1 - PACE_TOLERANCE)
    print(f"send pace            {pace['sent']:,} of {args.pace_recipients:,} SMS in {pace['seconds']:.1f} s "
          f"(start call {paced['start_api']:.2f} s): overall {pace['overall']:.0f}/s; "
          f"steady mean {pace['mean']:.0f}/s, max 1-s bin {pace['max_bin']}, first 1-s bin {pace['first_bin']}")
    print(f"                     most in any 1-s window: {pace['window_steady']} after the first 2 s, "
          f"{pace['window_all']} from the start (the bucket's burst); bins above {limit}: {pace['over']}")
    print(f"                     target mean >= {low:.0f}/s  {verdict(pace['mean'] >= low)}; never above {limit}/s "
          f"(steady)  {verdict(pace['window_steady'] <= limit)}, (from the start)  "
          f"{verdict(pace['window_all'] <= limit)}")
    print(f"                     campaign figures: sent {paced['stats_sent']:,}, "
          f"delivered {paced['stats_delivered']:,}")
    b = paced["breakdown"]
    print(f"in flight            {paced['in_flight']:,.0f} Redis bytes per recipient (whole database); of which "
          f"due check entry {b['due']:.0f}, standing {b['standing']:.0f}, history {b['history']:.0f}, "
          f"campaign counters {b['stats']:.0f}, feed events (kept for replays) {b['feed']:.0f}, "
          f"receipt dedupe {b['dedupe']:.0f}")
    idle, during = p99(paced["idle"]), p99(paced["during"])
    ratio = during / idle - 1
    print(f"live replies         p99 idle {idle * 1000:.1f} ms ({len(paced['idle'])} replies), during the campaign "
          f"{during * 1000:.1f} ms ({len(paced['during'])}); p50 {statistics.median(paced['idle']) * 1000:.1f} -> "
          f"{statistics.median(paced['during']) * 1000:.1f} ms; {ratio:+.0%} (target <= +20 %)  "
          f"{verdict(ratio <= LATENCY_TARGET)}; no reply within {REPLY_TIMEOUT:.0f} s: "
          f"{sum(1 for x in paced['idle'] if x >= REPLY_TIMEOUT)} idle, "
          f"{sum(1 for x in paced['during'] if x >= REPLY_TIMEOUT)} during")
    print("CPU ms per campaign send: " + ", ".join(f"{k} {v:.2f}" for k, v in paced["cpu"].items()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--contacts", type=int, default=100_000)
    parser.add_argument("--pace-recipients", type=int, default=20_000, help="the pace campaign's audience")
    parser.add_argument("--layout", choices=sorted(ROLES), default="run")
    parser.add_argument("--limit", type=int, default=1000, help="sends/s per sender (and burst); 0: unpaced")
    parser.add_argument("--live-rate", type=float, default=20, help="Telegram messages/s while measuring replies")
    parser.add_argument("--live-customers", type=int, default=100)
    parser.add_argument("--live-seconds", type=float, default=20, help="of the idle measurement")
    parser.add_argument("--timeout", type=float, default=600, help="seconds to wait for the pace campaign")
    parser.add_argument("--subscriptions", type=int, default=0,
                        help="webhook subscriptions to every event, to a local receiver, during it all")
    parser.add_argument("--emulators", nargs=2, metavar=("PORT", "HUB"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.emulators:
        serve_emulators(int(args.emulators[0]), args.emulators[1])
        return
    args.pace_recipients = min(args.pace_recipients, args.contacts)
    asyncio.run(bench(args))


if __name__ == "__main__":
    main()
