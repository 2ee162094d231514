"""Console live-update benchmark: from a customer's message to the agent's WebSocket.

    .venv/bin/python tests/bench/console_live.py [--layout live|sandbox] [--agents 50] [--conversations 200]
                                                 [--rate 200] [--seconds 10] [--warmup 2]

Starts a throwaway Redis and `omnihub run` (API, workers, router) as a process of its own, creates
`--agents` agents who sign in to the console and keep its socket open, and has `--conversations`
Telegram customers ask for a human (the router gives them out). Then the customers write at `--rate`
messages a second for `--seconds`, round-robin, and for each message the benchmark measures the time
from posting it until the notice for its conversation arrives on the assigned agent's socket:
webhook, ingest, worker turn, PUBLISH, the process's one subscription, the fan-out and the socket.
Target p99 <= 100 ms at 200 messages/s. The first `--warmup` seconds of load are not measured: the
load generator opens its connections then (64 at once), and that burst is its cost, not the hub's.

`--layout live` (the default) is production's: Telegram is somebody else's server, so the provider
emulators run in a process of their own (`omnihub emulators`) and the benchmark posts signed Telegram
`Update`s straight to the hub's webhook, as Telegram does. `--layout sandbox` is `omnihub run` with
no credentials: the customers post to the hub's built-in Telegram emulator, which then calls the
webhook from inside the hub's own process (what a newcomer trying the sandbox sees; the emulator's
HTTP client then shares the hub's CPU).

`--processes split` runs the hub as `omnihub api` + 2 x `omnihub worker` instead of one `omnihub run`
(what a machine with more than one core runs): the API process takes the webhooks and holds the
agents' sockets, the workers run the turns, and the notices reach the sockets through Redis pub/sub.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
import httpx
from redis.asyncio import Redis
from websockets.asyncio.client import ClientConnection, connect

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from bot.context import keys  # noqa: E402
from bot.redis_server import EmbeddedRedis, free_port  # noqa: E402
from bot.sandbox import emulators as sandbox  # noqa: E402
from bot.sandbox.client import SandboxClient  # noqa: E402
from tests.bench.pipeline import Webhooks  # noqa: E402
from tests.pipeline.processes import hub_env, log_tail, start  # noqa: E402

PASSWORD = "correct horse battery"
Pending = dict[str, collections.deque[float]]
# httpx's pool walks all its waiting requests on every request it starts or ends: with a backlog of a
# thousand it ate this process's CPU (and the measured latency with it), so requests wait here instead;
# and every connection is kept alive (httpcore closes idle ones once it holds more than the keep-alive limit)
POSTS_AT_ONCE = 64


async def online_agent(client: SandboxClient, n: int) -> ClientConnection:
    """Agent n, created through the API, signed in, with the console's socket open."""
    email = f"agent{n}@bench.example"
    created = await client.http.post("/api/v1/agents", json={
        "email": email, "name": f"Agent {n}", "password": PASSWORD, "role": "agent", "teams": ["support"]})
    created.raise_for_status()
    async with httpx.AsyncClient(base_url=client.http.base_url) as http:
        signed = await http.post("/console/login", data={"email": email, "password": PASSWORD})
        assert signed.status_code == 303, signed.text
        cookie = f"omnihub_console={http.cookies['omnihub_console']}"
    base = str(client.http.base_url).rstrip("/")
    return await connect(base.replace("http://", "ws://") + "/console/live",
                         additional_headers={"Cookie": cookie, "Origin": base}, max_queue=None)


async def listen(socket: ClientConnection, pending: Pending, samples: list[tuple[float, float]], total: int,
                 all_in: asyncio.Event) -> None:
    """(posted at, latency) for every message notice on this agent's socket."""
    async for raw in socket:
        notice = json.loads(raw)
        waiting = pending.get(notice.get("conversation", ""))
        if notice["event"] == "message" and waiting:
            posted = waiting.popleft()
            samples.append((posted, time.perf_counter() - posted))
            if len(samples) >= total:
                all_in.set()


async def assigned(client: SandboxClient, count: int) -> dict[str, str]:
    """Telegram user id -> conversation id, once the router gave out all `count` conversations."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        items = (await client.http.get("/api/v1/conversations", params={"mode": "assigned", "limit": 500})).json()
        if len(items["items"]) >= count:
            return {str(c["user_id"]): str(c["id"]) for c in items["items"]}
        await asyncio.sleep(0.2)
    raise SystemExit(f"only {len(items['items'])} of {count} conversations were assigned in a minute")


async def replies_sent(redis_url: str, partitions: int) -> None:
    """Wait until the hub has sent what the set-up made it say ("a colleague will answer", the queue
    place): paced at the bot's 30 messages/s, that backlog would otherwise still be going out."""
    redis = Redis.from_url(redis_url, decode_responses=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        busy = 0
        for p in range(partitions):
            for group in await redis.xinfo_groups(keys.outbound(p)):
                busy += int(group["pending"]) + int(group.get("lag") or 0)
        if not busy:
            break
        await asyncio.sleep(0.5)
    await redis.aclose()


async def bench(args: argparse.Namespace) -> None:
    server = EmbeddedRedis()
    redis_url = server.start()
    emulators = None
    if args.layout == "live":
        emulator_port = free_port()
        emulators = start_emulators(redis_url, args.port, emulator_port)
    procs = start_hub(redis_url, args.port, args.partitions, emulator_port if emulators else None, args.processes)
    try:
        limits = httpx.Limits(max_connections=POSTS_AT_ONCE, max_keepalive_connections=POSTS_AT_ONCE)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{args.port}", timeout=30, limits=limits) as http:
            for proc in procs:
                await until_ready(http, proc)
            client = SandboxClient(http)
            base = str(http.base_url).rstrip("/")
            webhooks = Webhooks(base)
            # aiohttp, as the pipeline benchmark: httpx's client costs this process more CPU than the
            # hub spends, and a load generator that cannot keep up measures itself. Idle connections are
            # let go before uvicorn's keep-alive (5 s) closes them: reusing one the server is closing
            # failed the run with "Can not write request body" after the set-up's quiet seconds.
            posts = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=POSTS_AT_ONCE, keepalive_timeout=2))

            async def say(user: str, text: str) -> None:
                if emulators is None:  # through the hub's own emulator
                    await client.send("telegram", user, text)
                    return
                path, headers, body = webhooks.request("telegram", user, text)
                async with posts.post(base + path, data=body, headers=headers) as answer:
                    answer.raise_for_status()

            sockets = [await online_agent(client, n) for n in range(args.agents)]
            users = [str(800_000 + n) for n in range(args.conversations)]
            for user in users:
                await say(user, "talk to a human")
            conversations = await assigned(client, len(users))
            await replies_sent(redis_url, args.partitions)
            pending: Pending = collections.defaultdict(collections.deque)
            samples: list[tuple[float, float]] = []
            total, all_in = int(args.rate * (args.warmup + args.seconds)), asyncio.Event()
            readers = [asyncio.create_task(listen(s, pending, samples, total, all_in)) for s in sockets]

            posting = asyncio.Semaphore(POSTS_AT_ONCE)

            async def write(user: str, n: int) -> None:
                pending[conversations[user]].append(time.perf_counter())  # waiting for a slot counts too
                async with posting:
                    await say(user, f"message {n}")

            print(f"load starts (hub pids {' '.join(str(proc.pid) for proc in procs)})", flush=True)
            start = time.perf_counter()
            writes = []
            for n in range(total):
                await asyncio.sleep(max(0.0, start + n / args.rate - time.perf_counter()))
                writes.append(asyncio.create_task(write(users[n % len(users)], n)))
            await asyncio.gather(*writes)
            sent_for = time.perf_counter() - start
            with contextlib.suppress(TimeoutError):  # a lost notice must not hang the benchmark
                await asyncio.wait_for(all_in.wait(), 10)
            for task in readers:
                task.cancel()
            for socket in sockets:
                await socket.close()
            await posts.close()
            measured = [latency for posted, latency in samples if posted >= start + args.warmup]
            report(measured, total, sent_for, args.warmup)
    finally:
        for proc in [*procs, *([emulators] if emulators else [])]:
            proc.terminate()
            proc.wait(15)
        server.stop()


def start_hub(redis_url: str, port: int, partitions: int, emulator_port: int | None, processes: str
              ) -> list[subprocess.Popen[bytes]]:
    """`omnihub run` (or `api` + 2 x `worker`) in processes of their own (the shop dialogs), as a user
    runs it: the load generator and the agents' sockets here do not share their event loops. With
    `emulator_port`, Telegram is the emulator there (real credentials, its webhook registered at it),
    not the built-in sandbox."""
    config = Path(tempfile.mkdtemp()) / "omnihub.yaml"
    config.write_text(f"pipeline: {{partitions: {partitions}, lease_seconds: 5}}\n")
    env = hub_env(redis_url, port, config)
    env.pop("OMNIHUB_DIALOGS")
    if emulator_port is not None:
        env.update(TELEGRAM_BOT_TOKEN=sandbox.TELEGRAM_TOKEN, TELEGRAM_WEBHOOK_SECRET=sandbox.TELEGRAM_SECRET,
                   TELEGRAM_API_BASE=f"http://127.0.0.1:{emulator_port}/emulator/telegram",
                   OMNIHUB_PUBLIC_URL=f"http://127.0.0.1:{port}")
    roles = ["run"] if processes == "run" else ["api", "worker", "worker"]
    return [start(role, env) for role in roles]


def start_emulators(redis_url: str, hub_port: int, port: int) -> subprocess.Popen[bytes]:
    """The provider emulators as somebody else's servers: a process of their own."""
    config = Path(tempfile.mkdtemp()) / "omnihub.yaml"
    config.write_text("{}\n")
    env = hub_env(redis_url, hub_port, config)
    return subprocess.Popen(
        [sys.executable, "-m", "bot.cli", "emulators", "--port", str(port), "--hub", f"http://127.0.0.1:{hub_port}"],
        env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


async def until_ready(http: httpx.AsyncClient, hub: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if hub.poll() is not None:
            raise SystemExit(f"the hub exited: {log_tail(hub)}")
        with contextlib.suppress(httpx.HTTPError):
            if (await http.get("/readyz")).status_code == 200:
                return
        await asyncio.sleep(0.2)
    raise SystemExit("the hub did not get ready in a minute")


def report(samples: list[float], total: int, sent_for: float, warmup: float) -> None:
    print(f"{total} messages in {sent_for:.1f} s ({total / sent_for:.0f}/s); {len(samples)} notices measured "
          f"after {warmup:g} s of warm-up")
    if len(samples) >= 2:
        cuts = statistics.quantiles(samples, n=100, method="inclusive")
        print(f"message -> agent's socket: p50 {cuts[49] * 1000:.1f} ms, p90 {cuts[89] * 1000:.1f} ms, "
              f"p99 {cuts[98] * 1000:.1f} ms, max {max(samples) * 1000:.1f} ms (target p99 <= 100 ms)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layout", choices=["live", "sandbox"], default="live")
    parser.add_argument("--processes", choices=["run", "split"], default="run")
    parser.add_argument("--agents", type=int, default=50)
    parser.add_argument("--conversations", type=int, default=200)
    parser.add_argument("--rate", type=float, default=200.0)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--partitions", type=int, default=16)
    parser.add_argument("--port", type=int, default=free_port())
    asyncio.run(bench(parser.parse_args()))


if __name__ == "__main__":
    main()
