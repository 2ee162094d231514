"""CRM event feed benchmark: events delivered per second, and what the feed costs the chat.

    .venv/bin/python tests/bench/events.py [--events 20000] [--contacts 1000] [--layouts run,split]
                                           [--chat-seconds 10] [--chat-layouts run] [--rounds 1]

Starts a throwaway Redis and a webhook receiver in a process of its own: a raw asyncio HTTP/1.1
server that answers 204 and only counts `webhook-id`s per path (no signature check in the hot path,
so the receiver is never what is measured); it keeps the first requests whole, and 20 of them are
verified here with the `standardwebhooks` package, to show the deliveries are real.

1. **Delivery rate.** The hub (`omnihub run`, then `omnihub api` + 2 x `omnihub worker`) with one
   subscription (`POST /api/v1/webhooks`, all events) and nothing else to do. `--events` events
   (`omnihub.message.received`, spread over `--contacts` contacts) are appended straight to the
   partition streams with `bot.crm.outbox.append`, in pipelines, as a worker's MULTI appends them;
   the clock runs from the first append until the receiver has counted every id. Printed: events/s
   (target >= 3,000/s), ids received twice (must be 0), CPU seconds of the hub per 1,000 events.
2. **The chat's cost of the feed.** `tests/bench/pipeline.py`'s closed loop (100 Telegram customers,
   each writing again once answered, replies read from the emulator; Telegram's 30 msg/s send limit
   off) against `omnihub run` with no subscription and then with two, side by side (target: at most
   15 % fewer messages/s with them). Also printed: the hub's CPU per message, the events each
   subscription received, and how far delivery lagged behind at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import httpx
import orjson
from redis.asyncio import Redis
from standardwebhooks import Webhook

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from bot.context import keys  # noqa: E402
from bot.crm import outbox  # noqa: E402
from bot.crm.events import CloudEvent, MessageReceived  # noqa: E402
from bot.crm.subscriptions import new_secret  # noqa: E402
from bot.redis_server import EmbeddedRedis, free_port  # noqa: E402
from bot.sandbox import emulators as sandbox  # noqa: E402
from tests.bench.pipeline import Customers, closed_loop, cpu_seconds, spawn, until_ready  # noqa: E402
from tests.pipeline.processes import hub_env, start  # noqa: E402

ROLES = {"run": [["run"]], "split": [["api"], ["worker"], ["worker"]]}
SAMPLES = 20  # requests the receiver keeps whole, per path, for the signature check
APPEND_CHUNK = 2000


# --- the receiver (its own process: `events.py --receiver PORT`) ------------------------------------

@dataclass
class Tally:
    """What every connection of the receiver saw, by path."""

    ids: dict[str, set[bytes]] = field(default_factory=dict)
    received: dict[str, int] = field(default_factory=dict)
    samples: dict[str, list[dict[str, Any]]] = field(default_factory=dict)


class Counter(asyncio.Protocol):
    """HTTP/1.1 keep-alive, just enough of it: POST -> 204 and count the id; GET /stats, GET /samples."""

    def __init__(self, tally: Tally) -> None:
        self.tally = tally

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport: asyncio.Transport = transport  # type: ignore[assignment]
        self.buffer = bytearray()

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while (end := self.buffer.find(b"\r\n\r\n")) >= 0:
            lines = bytes(self.buffer[:end]).split(b"\r\n")
            headers = {}
            for line in lines[1:]:
                name, _, value = line.partition(b":")
                headers[name.strip().lower()] = value.strip()
            length = int(headers.get(b"content-length", b"0"))
            if len(self.buffer) < end + 4 + length:
                return  # the rest of the body is still on its way
            body = bytes(self.buffer[end + 4:end + 4 + length])
            del self.buffer[:end + 4 + length]
            method, path, _ = lines[0].decode().split(" ", 2)
            self.transport.write(self.answer(method, path, headers, body))

    def answer(self, method: str, path: str, headers: dict[bytes, bytes], body: bytes) -> bytes:
        tally = self.tally
        if method == "POST":
            tally.ids.setdefault(path, set()).add(headers.get(b"webhook-id", b""))
            tally.received[path] = tally.received.get(path, 0) + 1
            kept = tally.samples.setdefault(path, [])
            if len(kept) < SAMPLES:
                kept.append({"headers": {k.decode(): v.decode() for k, v in headers.items()}, "body": body.decode()})
            return b"HTTP/1.1 204 No Content\r\n\r\n"
        if path == "/stats":
            found = {p: {"received": n, "distinct": len(tally.ids[p])} for p, n in tally.received.items()}
            return ok(orjson.dumps(found))
        return ok(orjson.dumps(tally.samples))


def ok(body: bytes) -> bytes:
    return b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n%s" % (len(body), body)


async def receive(port: int) -> None:
    tally = Tally()
    server = await asyncio.get_running_loop().create_server(lambda: Counter(tally), "127.0.0.1", port, backlog=1024)
    await server.serve_forever()


def start_receiver(port: int) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, __file__, "--receiver", str(port)], cwd=ROOT)


class ReceiverClient:
    def __init__(self, base: str) -> None:
        self.base = base
        self.http = httpx.AsyncClient(base_url=base, timeout=10)

    async def stats(self, path: str) -> dict[str, int]:
        return (await self.http.get("/stats")).json().get(path, {"received": 0, "distinct": 0})

    async def until(self, path: str, count: int, within: float) -> float:
        """Wait until `count` distinct ids came to `path`; the time they took (`within` at most)."""
        started = time.perf_counter()
        while time.perf_counter() - started < within:
            if (await self.stats(path))["distinct"] >= count:
                break
            await asyncio.sleep(0.02)
        return time.perf_counter() - started

    async def verified(self, path: str, secret: str) -> int:
        """How many of the kept requests to `path` carry a valid Standard Webhooks signature."""
        good = 0
        for sample in (await self.http.get("/samples")).json().get(path, []):
            Webhook(secret).verify(sample["body"], sample["headers"])  # raises on a bad signature
            good += 1
        return good


# --- helpers ------------------------------------------------------------------------------------------

def write_config(partitions: int, concurrency: int | None, unpaced: bool = False) -> Path:
    """`unpaced`: no provider send limits — the hub takes the emulator's URL for the real Telegram, and
    its 30 msg/s per bot would otherwise be all the chat run measures."""
    config = Path(tempfile.mkdtemp()) / "omnihub.yaml"
    crm = f"crm: {{concurrency: {concurrency}}}\n" if concurrency else ""
    limits = ", rate_limits: {per_sender: {}, per_chat: {}}" if unpaced else ""
    config.write_text(f"pipeline: {{partitions: {partitions}, lease_seconds: 5{limits}}}\n{crm}")
    return config


async def subscribe(hub: str, url: str) -> str:
    """A subscription to every event, through the API; returns its secret."""
    secret = new_secret()
    async with httpx.AsyncClient() as http:
        answer = await http.post(f"{hub}/api/v1/webhooks", json={"url": url, "secret": secret, "events": ["*"]})
    answer.raise_for_status()
    return secret


def events(run: str, count: int, contacts: int) -> list[CloudEvent]:
    made = []
    for i in range(count):
        cid = f"bench-{i % contacts:05d}"
        data = MessageReceived(message_id=f"{run}-{i}", contact_id=cid, channel="telegram", text="hello")
        made.append(CloudEvent.of(data, subject=cid, cause=f"{run}/{i}"))
    return made


async def append(redis: Redis, batch: list[CloudEvent], partitions: int) -> None:
    """Onto the partition streams as the worker's MULTI does it (bot.crm.outbox.append), in pipelines."""
    for start_at in range(0, len(batch), APPEND_CHUNK):
        by_partition: dict[int, list[CloudEvent]] = {}
        for event in batch[start_at:start_at + APPEND_CHUNK]:
            by_partition.setdefault(keys.partition_of(event.subject, partitions), []).append(event)
        async with redis.pipeline(transaction=False) as pipe:
            for p, found in by_partition.items():
                outbox.append(pipe, p, found)
            await pipe.execute()


def stop(procs: list[subprocess.Popen[bytes]]) -> None:
    for proc in procs:
        proc.terminate()
    for proc in procs:
        proc.wait(15)


# --- 1. delivery rate -----------------------------------------------------------------------------

async def delivery(layout: str, redis_url: str, receiver: ReceiverClient, receiver_pid: int,
                   args: argparse.Namespace) -> dict[str, Any]:
    redis = Redis.from_url(redis_url)
    await redis.flushdb()
    port = free_port()
    hub = f"http://127.0.0.1:{port}"
    env = hub_env(redis_url, port, write_config(args.partitions, args.concurrency))
    procs = [start(role[0], env) for role in ROLES[layout]]
    path = f"/feed-{layout}"
    try:
        await until_ready(f"{hub}/readyz", procs)
        secret = await subscribe(hub, receiver.base + path)
        await append(redis, events(f"{layout}-warm", args.warmup, args.contacts), args.partitions)
        if await receiver.until(path, args.warmup, 30) >= 30:
            raise SystemExit(f"{layout}: the warm-up events did not all arrive in 30 s")
        batch = events(layout, args.events, args.contacts)
        watched = [proc.pid for proc in procs]
        redis_pid = int((await redis.info("server"))["process_id"])
        before = [cpu_seconds(pid) for pid in [*watched, redis_pid, receiver_pid]]
        started = time.perf_counter()
        await append(redis, batch, args.partitions)
        appended = time.perf_counter() - started
        await receiver.until(path, args.warmup + args.events, args.timeout)
        took = time.perf_counter() - started
        after = [cpu_seconds(pid) for pid in [*watched, redis_pid, receiver_pid]]
        counts = await receiver.stats(path)
        verified = await receiver.verified(path, secret)
    finally:
        stop(procs)
        await redis.aclose()
    spent = [b - a for a, b in zip(before, after, strict=True)]
    delivered = counts["distinct"] - args.warmup
    return {"layout": "run" if layout == "run" else "api+2w", "rate": delivered / took, "delivered": delivered,
            "took": took, "appended": appended, "twice": counts["received"] - counts["distinct"],
            "verified": verified, "hub_cpu": sum(spent[:-2]) / delivered * 1000,
            "redis_cpu": spent[-2] / delivered * 1000, "receiver_cpu": spent[-1] / delivered * 1000}


# --- 2. the chat with and without subscriptions ---------------------------------------------------

def live_env(redis_url: str, hub_port: int, emulator_port: int, config: Path) -> dict[str, str]:
    """The hub in live mode against the emulators, as tests/bench/pipeline.py's run_layout sets it up."""
    hub, base = f"http://127.0.0.1:{hub_port}", f"http://127.0.0.1:{emulator_port}/emulator"
    return {**os.environ, "REDIS_URL": redis_url, "OMNIHUB_PORT": str(hub_port), "OMNIHUB_PUBLIC_URL": hub,
            "OMNIHUB_CONFIG": str(config),
            "TELEGRAM_BOT_TOKEN": sandbox.TELEGRAM_TOKEN, "TELEGRAM_WEBHOOK_SECRET": sandbox.TELEGRAM_SECRET,
            "TELEGRAM_API_BASE": f"{base}/telegram"}


async def chat(layout: str, subscriptions: int, redis_url: str, receiver: ReceiverClient,
               args: argparse.Namespace, run: int) -> dict[str, Any]:
    redis = Redis.from_url(redis_url)
    await redis.flushdb()
    hub_port, emulator_port = free_port(), free_port()
    hub = f"http://127.0.0.1:{hub_port}"
    env = live_env(redis_url, hub_port, emulator_port, write_config(args.partitions, args.concurrency, unpaced=True))
    emulators = spawn("emulators", ["-m", "bot.cli", "emulators", "--port", str(emulator_port), "--hub", hub], env)
    procs = [spawn(role[0], ["-m", "bot.cli", *role], env) for role in ROLES[layout]]
    paths = [f"/chat-{run}-{layout}-{n}" for n in range(subscriptions)]
    try:
        await until_ready(f"http://127.0.0.1:{emulator_port}/emulator/telegram/_/webhook", [emulators])
        await until_ready(f"{hub}/readyz", procs)
        for path in paths:
            await subscribe(hub, receiver.base + path)
        await asyncio.sleep(3)  # webhooks registered, leases held, the feed's readers started
        # idle connections are dropped before uvicorn's 5 s keep-alive timeout closes them under a request
        connector = aiohttp.TCPConnector(limit=500, keepalive_timeout=2)
        async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=60)) as http:
            customers = Customers(http, hub, f"http://127.0.0.1:{emulator_port}", ("telegram",))
            halt = asyncio.Event()
            collector = asyncio.create_task(customers.collect("telegram", halt))
            await closed_loop(customers, 50, 2)  # warm-up
            before = [cpu_seconds(proc.pid) for proc in procs]
            counted = customers.answered
            try:
                throughput = await closed_loop(customers, args.chat_customers, args.chat_seconds)
            except (aiohttp.ClientError, TimeoutError) as exc:  # a hub too slow to answer within 30 s
                halt.set()
                await asyncio.gather(collector, return_exceptions=True)
                return {"subscriptions": subscriptions, "error": repr(exc)}
            answered = customers.answered - counted
            hub_cpu = sum(cpu_seconds(p.pid) - b for p, b in zip(procs, before, strict=True)) / answered * 1000
            emitted = sum([await redis.xlen(keys.events(p)) for p in range(args.partitions)])
            behind = [emitted - (await receiver.stats(path))["distinct"] for path in paths]
            drained = max([await receiver.until(path, emitted, 60) for path in paths], default=0.0)
            received = [(await receiver.stats(path))["distinct"] for path in paths]
            halt.set()
            await collector
    finally:
        stop([*procs, emulators])
        await redis.aclose()
    return {"subscriptions": subscriptions, "throughput": throughput, "hub_cpu": hub_cpu, "emitted": emitted,
            "received": received, "behind": behind, "drained": drained}


# --- the report -----------------------------------------------------------------------------------

RATE_HEADER = (f"{'layout':<8}{'events/s':>10}{'s':>7}{'appended s':>12}{'twice':>7}{'signed ok':>11}"
               f"{'hub CPU s/1k':>14}{'redis':>7}{'receiver':>10}")
CHAT_HEADER = f"{'subs':<6}{'msg/s':>8}{'hub CPU ms/msg':>16}{'events':>8}  received per subscription (behind at end)"


def rate_row(r: dict[str, Any]) -> str:
    return (f"{r['layout']:<8}{r['rate']:>10.0f}{r['took']:>7.2f}{r['appended']:>12.2f}{r['twice']:>7}"
            f"{r['verified']:>8}/{SAMPLES}{r['hub_cpu']:>14.3f}{r['redis_cpu']:>7.3f}{r['receiver_cpu']:>10.3f}"
            f"  {'MET' if r['rate'] >= 3000 and r['twice'] == 0 else 'NOT MET'}")


def chat_row(r: dict[str, Any]) -> str:
    if "error" in r:
        return f"{r['subscriptions']:<6}failed: {r['error']}"
    got = ", ".join(f"{n} ({b})" for n, b in zip(r["received"], r["behind"], strict=True)) or "-"
    return (f"{r['subscriptions']:<6}{r['throughput']:>8.0f}{r['hub_cpu']:>16.2f}{r['emitted']:>8}  {got}"
            + (f"; all in {r['drained']:.1f} s after the load" if r["received"] else ""))


def report(rates: list[dict[str, Any]], chats: list[dict[str, Any]], args: argparse.Namespace) -> None:
    print(f"\nOmnihub event feed benchmark: {os.cpu_count()} cores, {args.partitions} partitions, "
          f"crm.concurrency {args.concurrency or 'default (32)'}")
    print(f"\n1. {args.events} events over {args.contacts} contacts, one subscription "
          f"(target >= 3,000 events/s, no id twice)")
    print(RATE_HEADER)
    for r in rates:
        print(rate_row(r))
    if not chats:
        return
    print(f"\n2. chat throughput, {args.chat_customers} Telegram customers closed loop, {args.chat_seconds:.0f} s "
          f"(target: with 2 subscriptions at most 15 % fewer msg/s)")
    print(CHAT_HEADER)
    for r in chats:
        print(chat_row(r))
    off = [r["throughput"] for r in chats if not r["subscriptions"] and "error" not in r]
    on = [r["throughput"] for r in chats if r["subscriptions"] and "error" not in r]
    if off and on:
        drop = 1 - (sum(on) / len(on)) / (sum(off) / len(off))
        print(f"with subscriptions: {drop:+.1%} fewer msg/s  {'MET' if drop <= 0.15 else 'NOT MET'}")


async def bench(args: argparse.Namespace) -> None:
    server = EmbeddedRedis()
    redis_url = server.start()
    port = free_port()
    receiver_proc = start_receiver(port)
    receiver = ReceiverClient(f"http://127.0.0.1:{port}")
    try:
        for _ in range(100):
            try:
                await receiver.stats("/")
                break
            except httpx.HTTPError:
                await asyncio.sleep(0.05)
        rates = []
        for layout in [name for name in args.layouts.split(",") if name]:
            rates.append(await delivery(layout, redis_url, receiver, receiver_proc.pid, args))
            print(*([RATE_HEADER] if len(rates) == 1 else []), rate_row(rates[-1]), sep="\n", flush=True)
        chats = []
        runs = itertools.count()
        for _ in range(args.rounds):
            for layout in [name for name in args.chat_layouts.split(",") if name]:
                for subscriptions in (0, 2):
                    chats.append(await chat(layout, subscriptions, redis_url, receiver, args, next(runs)))
                    print(*([CHAT_HEADER] if len(chats) == 1 else []), chat_row(chats[-1]), sep="\n", flush=True)
        report(rates, chats, args)
    finally:
        await receiver.http.aclose()
        stop([receiver_proc])
        server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--warmup", type=int, default=1000, help="events delivered before the clock starts")
    parser.add_argument("--contacts", type=int, default=1000)
    parser.add_argument("--partitions", type=int, default=16)
    parser.add_argument("--concurrency", type=int, default=None, help="crm.concurrency (default: the hub's)")
    parser.add_argument("--layouts", default="run,split", help="for the delivery rate")
    parser.add_argument("--timeout", type=float, default=300, help="seconds to wait for every event")
    parser.add_argument("--chat-layouts", default="run", help="for the chat's cost; empty: skip it")
    parser.add_argument("--chat-seconds", type=float, default=10)
    parser.add_argument("--chat-customers", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=1, help="chat runs without and with subscriptions")
    parser.add_argument("--receiver", type=int, help=argparse.SUPPRESS)  # the receiver's own process
    args = parser.parse_args()
    if args.receiver:
        import uvloop

        uvloop.run(receive(args.receiver))
        return
    asyncio.run(bench(args))


if __name__ == "__main__":
    main()
