"""End-to-end pipeline benchmark: provider webhook in -> reply received by the provider emulator.

    .venv/bin/python tests/bench/pipeline.py [--mix telegram|all] [--seconds 10] [--rate 500] [--no-peers]

Starts a throwaway Redis, the provider emulators in their own process (`omnihub emulators`), and the
hub in "live" mode against them — first as one `omnihub run` process, then as `omnihub api` +
2 x `omnihub worker`. The load generator posts real, signed provider webhooks straight to the hub
(Telegram `Update`s; with `--mix all` also Twilio SMS/WhatsApp forms and Viber callbacks, in equal
parts) and learns of each reply from the emulator's outbox. With `--mix all` the emulators also post
delivery/read callbacks as the providers do, so the hub carries that load too. Printed per layout:
- sustained messages/s (closed loop: each customer writes again once answered),
- p50/p99 latency, webhook sent -> reply recorded by the emulator, at a fixed open-loop rate,
- Redis bytes per conversation after 10 turns (whole-database delta, and the contact's own keys),
- CPU milliseconds per answered message, by process (its CPU time over the throughput run / answers),
- RSS of every process.
Then (`--peers`, on with `--mix telegram`) the two bare bots of `tests/bench/peers/` — aiogram 3 and
python-telegram-bot, in-memory webhook bots that greet every text — take the hub's place, each with its
own emulator process and the same load, and the hub / peer ratios of throughput and CPU are printed.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import hmac
import itertools
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlencode

import aiohttp
import httpx
import orjson
import yaml
from redis.asyncio import Redis
from twilio.request_validator import RequestValidator

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from bot.context import keys  # noqa: E402
from bot.redis_server import EmbeddedRedis, free_port  # noqa: E402
from bot.sandbox import emulators as sandbox  # noqa: E402

# What customers say: the demo bot answers each with one message and never hands them to a human.
TURNS = ["hello", "opening hours", "delivery", "привет", "часы работы", "доставка", "hi", "when are you open",
         "delivery cost", "спасибо"]
MIXES = {"telegram": ("telegram",), "all": ("telegram", "whatsapp", "viber", "sms"),
         "sms": ("sms",), "whatsapp": ("whatsapp",), "viber": ("viber",)}  # one channel: its cost per message
PEERS = ("aiogram", "ptb")  # tests/bench/peers/<peer>_bot.py


@dataclass
class Webhooks:
    """Builds each provider's real webhook for a customer's text, signed as that provider signs."""

    hub: str
    ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    def request(self, channel: str, user: str, text: str) -> tuple[str, dict[str, str], bytes]:
        n = next(self.ids)
        if channel == "telegram":
            update = {"update_id": n, "message": {
                "message_id": n, "date": int(time.time()), "text": text,
                "from": {"id": int(user), "is_bot": False, "first_name": "Bench"},
                "chat": {"id": int(user), "type": "private", "first_name": "Bench"}}}
            headers = {"content-type": "application/json",
                       "x-telegram-bot-api-secret-token": sandbox.TELEGRAM_SECRET}
            return "/webhooks/telegram", headers, orjson.dumps(update)
        if channel == "viber":
            body = orjson.dumps({"event": "message", "timestamp": int(time.time() * 1000), "message_token": n,
                                 "sender": {"id": user, "name": "Bench"}, "message": {"type": "text", "text": text}})
            signature = hmac.new(sandbox.VIBER_TOKEN.encode(), body, hashlib.sha256).hexdigest()
            return "/webhooks/viber", {"content-type": "application/json",
                                       "x-viber-content-signature": signature}, body
        prefix = "whatsapp:" if channel == "whatsapp" else ""
        to = sandbox.TWILIO_WHATSAPP_FROM if channel == "whatsapp" else sandbox.TWILIO_SMS_FROM
        form = {"MessageSid": f"SM{n:032x}", "AccountSid": sandbox.TWILIO_SID, "From": prefix + user,
                "To": prefix + to, "Body": text, "NumMedia": "0"}
        signature = RequestValidator(sandbox.TWILIO_TOKEN).compute_signature(f"{self.hub}/webhooks/twilio", form)
        return "/webhooks/twilio", {"content-type": "application/x-www-form-urlencoded",
                                    "x-twilio-signature": signature}, urlencode(form).encode()


class Customers:
    """Customers over the channels of the mix; replies are matched to them from the emulators' outboxes."""

    def __init__(self, http: aiohttp.ClientSession, hub: str, emulators: str, channels: tuple[str, ...]) -> None:
        self.http, self.hub, self.emulators, self.channels = http, hub, emulators, channels
        self.webhooks = Webhooks(hub)
        self.waiting: dict[tuple[str, str], tuple[float, asyncio.Future[float]]] = {}
        self.users = itertools.count(1)
        self.answered = 0

    async def subscribe(self, people: list[tuple[str, str]]) -> None:
        """Viber lets a bot write only to subscribers: they subscribe (through the emulator) first."""
        for channel, user in people:
            if channel == "viber":
                url = f"{self.emulators}/emulator/viber/_/inbound"
                async with self.http.post(url, json={"user_id": user, "event": "subscribed"}) as response:
                    response.raise_for_status()

    def new(self, count: int) -> list[tuple[str, str]]:
        made = []
        for _ in range(count):
            i = next(self.users)
            channel = self.channels[i % len(self.channels)]
            user = {"telegram": str(700_000_000 + i), "viber": f"bench-{i}"}.get(channel, f"+7999{i:07d}")
            made.append((channel, user))
        return made

    async def turn(self, channel: str, user: str, text: str) -> float:
        """Post the webhook, wait for the bot's reply at the emulator; returns the latency in seconds."""
        path, headers, body = self.webhooks.request(channel, user, text)
        future = asyncio.get_running_loop().create_future()
        sent = time.time()
        self.waiting[(channel, user)] = (sent, future)
        async with self.http.post(self.hub + path, data=body, headers=headers) as response:
            if response.status != 200:
                raise RuntimeError(f"{path} answered {response.status}: {await response.text()}")
        return await asyncio.wait_for(future, 30)

    async def collect(self, provider: str, stop: asyncio.Event) -> None:
        """Read every new message the hub sent through one emulator, in batches (one long poll)."""
        seq = 0
        while not stop.is_set():
            url = f"{self.emulators}/emulator/{provider}/_/outbox"
            async with self.http.get(url, params={"after": seq, "wait": 1}) as response:
                items = orjson.loads(await response.read())["items"]
            for item in items:
                seq = max(seq, item["seq"])
                channel = item.get("raw", {}).get("channel") or provider
                pending = self.waiting.pop((channel, item["user_id"]), None)
                if pending and not pending[1].done():
                    pending[1].set_result(item["at"] - pending[0])
                    self.answered += 1


async def closed_loop(customers: Customers, count: int, seconds: float) -> float:
    done = 0
    deadline = time.perf_counter() + seconds

    async def customer(channel: str, user: str) -> None:
        nonlocal done
        for n in itertools.count():
            if time.perf_counter() >= deadline:
                return
            await customers.turn(channel, user, TURNS[n % len(TURNS)])
            done += 1

    people = customers.new(count)
    await customers.subscribe(people)
    started = time.perf_counter()
    await asyncio.gather(*(customer(c, u) for c, u in people))
    return done / (time.perf_counter() - started)


async def open_loop(customers: Customers, count: int, rate: float, seconds: float) -> tuple[list[float], float]:
    """Offer `rate` messages/s spread over `count` customers; a customer never has two in flight."""
    people = customers.new(count)
    await customers.subscribe(people)
    latencies: list[float] = []
    busy: set[int] = set()
    tasks: set[asyncio.Task[None]] = set()

    async def one(i: int, turn: int) -> None:
        latencies.append(await customers.turn(*people[i], TURNS[turn % len(TURNS)]))
        busy.discard(i)

    started, offered = time.perf_counter(), 0
    while (elapsed := time.perf_counter() - started) < seconds:
        while offered < int(elapsed * rate):
            i = offered % count
            if i not in busy:
                busy.add(i)
                task = asyncio.create_task(one(i, offered // count))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
            offered += 1
        await asyncio.sleep(0.002)
    await asyncio.gather(*tasks)
    return sorted(latencies), offered / seconds


async def memory_per_conversation(redis: Redis, customers: Customers, count: int) -> tuple[float, float]:
    """Run `count` conversations of 10 turns; Redis bytes each (whole DB delta; contact keys only)."""
    await asyncio.sleep(6)  # let stream trimming catch up with what came before
    people = customers.new(count)
    await customers.subscribe(people)
    before = (await redis.info("memory"))["used_memory"]
    for text in TURNS:
        for start in range(0, count, 200):
            await asyncio.gather(*(customers.turn(c, u, text) for c, u in people[start:start + 200]))
    await asyncio.sleep(6)  # acknowledged stream entries are trimmed every 5 s
    after = (await redis.info("memory"))["used_memory"]
    own = 0
    for channel, user in people[:200]:
        cid = await redis.get(keys.identity(channel, user))
        for key in (keys.contact(cid), keys.conversation(cid), keys.history(cid), keys.identity(channel, user)):
            own += await redis.memory_usage(key, samples=0) or 0
    return (after - before) / count, own / min(count, 200)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (/proc/<pid>/stat fields 14 and 15)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def spawn(name: str, argv: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
    """A process under test; its log goes to a file (an unread pipe would fill up and stall it)."""
    log = open(f"/tmp/omnihub-bench-{name}-{time.time_ns()}.log", "wb")  # noqa: SIM115
    return subprocess.Popen([sys.executable, *argv], env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=log)


def spawn_emulators(port: int, webhooks_to: str, env: dict[str, str]) -> subprocess.Popen[bytes]:
    return spawn("emulators", ["-m", "bot.cli", "emulators", "--port", str(port), "--hub", webhooks_to], env)


async def until_ready(url: str, procs: Iterable[subprocess.Popen[bytes]]) -> None:
    """Until `url` answers anything but a 5xx; fails as soon as one of `procs` exits."""
    async with httpx.AsyncClient() as http:
        for _ in range(1200):
            for p in procs:
                if p.poll() is not None:
                    raise SystemExit(f"{p.args} exited; see its log in /tmp/omnihub-bench-*.log")
            try:
                if (await http.get(url)).status_code < 500:
                    return
            except httpx.HTTPError:
                pass
            await asyncio.sleep(0.1)
    raise SystemExit(f"{url} never answered")


OUTSIDE = {"emulators", "load generator"}  # in every run, but not the bot being measured


@dataclass
class Result:
    """What one run measured. `cpu` is in ms per answered message (throughput run), by process."""

    name: str
    throughput: float
    offered: float
    latencies: list[float]  # sorted, seconds
    cpu: dict[str, float]
    rss: dict[str, float]
    memory: tuple[float, float] | None  # Redis bytes per conversation: whole database, the contact's keys

    @property
    def p50(self) -> float:
        return statistics.median(self.latencies) * 1000

    @property
    def p99(self) -> float:
        return self.latencies[int(len(self.latencies) * 0.99) - 1] * 1000

    @property
    def bot_cpu(self) -> float:
        """The answering side's CPU per message: the hub with its Redis, or the peer bot."""
        return sum(ms for name, ms in self.cpu.items() if name not in OUTSIDE)


@dataclass
class System:
    """The processes answering webhooks at `url`, started; replies are read from the emulators' outboxes."""

    name: str
    url: str
    emulators: str
    procs: dict[str, subprocess.Popen[bytes]]  # by name, the emulators included
    redis: Redis | None = None  # the hub's: its CPU counts, its bytes per conversation are measured

    def stop(self) -> None:
        for p in self.procs.values():
            p.terminate()
        for p in self.procs.values():
            p.wait(15)


async def measure(system: System, args: argparse.Namespace) -> Result:
    """Throughput (closed loop), latency (open loop) and, for the hub, Redis bytes per conversation."""
    # uvicorn closes a keep-alive connection idle for 5 s; aiohttp would reuse one for 15 s, and a post on a
    # connection the server just closed fails with ServerDisconnectedError (after the 6 s pauses below)
    connector = aiohttp.TCPConnector(limit=500, keepalive_timeout=4)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=60)) as http:
        customers = Customers(http, system.url, system.emulators, MIXES[args.mix])
        stop = asyncio.Event()
        providers = {"telegram": "telegram", "whatsapp": "twilio", "sms": "twilio", "viber": "viber"}
        collectors = [asyncio.create_task(customers.collect(p, stop))
                      for p in sorted({providers[c] for c in MIXES[args.mix]})]
        await closed_loop(customers, 50, 2)  # warm-up
        watched = {name: p.pid for name, p in system.procs.items()}
        if system.redis is not None:
            watched["redis"] = int((await system.redis.info("server"))["process_id"])
        watched["load generator"] = os.getpid()
        cpu_before = {n: cpu_seconds(pid) for n, pid in watched.items()}
        counted = customers.answered
        throughput = await closed_loop(customers, args.concurrency, args.seconds)
        answered = customers.answered - counted
        cpu = {n: (cpu_seconds(pid) - cpu_before[n]) / answered * 1000 for n, pid in watched.items()}
        print(f"{system.name}: {throughput:.0f} msg/s sustained", flush=True)
        latencies, offered = await open_loop(customers, args.customers, args.rate, args.seconds)
        memory = None
        if system.redis is not None:
            memory = await memory_per_conversation(system.redis, customers, args.memory_conversations)
        stop.set()
        await asyncio.gather(*collectors)
    rss = {n: round(rss_mb(p.pid), 1) for n, p in system.procs.items()}
    return Result(system.name, throughput, offered, latencies, cpu, rss, memory)


def unpaced_config() -> Path:
    """The repo's config without provider send limits. The hub takes the emulator for the real
    Telegram, whose 30 msg/s per bot (1 per chat) would otherwise be all this measures, and the peers
    pace nothing."""
    config = yaml.safe_load((ROOT / "config" / "omnihub.yaml").read_text())
    config["pipeline"]["rate_limits"].update(per_sender={}, per_chat={})
    path = Path(tempfile.mkdtemp()) / "omnihub.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


async def run_hub(layout: str, redis_url: str, args: argparse.Namespace) -> Result:
    """The hub as one `omnihub run` ("run") or as `omnihub api` + 2 x `omnihub worker` ("split")."""
    redis = Redis.from_url(redis_url, decode_responses=True)
    await redis.flushdb()
    hub_port, emulator_port = free_port(), free_port()
    hub, emulators = f"http://127.0.0.1:{hub_port}", f"http://127.0.0.1:{emulator_port}"
    api_base = f"{emulators}/emulator"
    env = {**os.environ, "OMNIHUB_CONFIG": str(unpaced_config()), "REDIS_URL": redis_url,
           "OMNIHUB_PORT": str(hub_port), "OMNIHUB_PUBLIC_URL": hub,
           "TELEGRAM_BOT_TOKEN": sandbox.TELEGRAM_TOKEN, "TELEGRAM_WEBHOOK_SECRET": sandbox.TELEGRAM_SECRET,
           "TELEGRAM_API_BASE": f"{api_base}/telegram", "TWILIO_ACCOUNT_SID": sandbox.TWILIO_SID,
           "TWILIO_AUTH_TOKEN": sandbox.TWILIO_TOKEN, "TWILIO_SMS_FROM": sandbox.TWILIO_SMS_FROM,
           "TWILIO_WHATSAPP_FROM": sandbox.TWILIO_WHATSAPP_FROM, "TWILIO_API_BASE": f"{api_base}/twilio",
           "VIBER_AUTH_TOKEN": sandbox.VIBER_TOKEN, "VIBER_API_BASE": f"{api_base}/viber"}
    roles = {"run": ["run"], "split": ["api", "worker-1", "worker-2"]}[layout]
    procs = {"emulators": spawn_emulators(emulator_port, hub, env)}
    procs.update((role, spawn(role, ["-m", "bot.cli", role.partition("-")[0]], env)) for role in roles)
    system = System("run" if layout == "run" else "api+2w", hub, emulators, procs, redis)
    try:
        await until_ready(f"{api_base}/telegram/_/webhook", [procs["emulators"]])
        await until_ready(f"{hub}/readyz", [procs[role] for role in roles])
        await asyncio.sleep(3)  # webhooks registered, workers hold their partition leases
        return await measure(system, args)
    finally:
        system.stop()
        await redis.aclose()


async def run_peer(peer: str, args: argparse.Namespace) -> Result:
    """A bare Telegram bot from `tests/bench/peers/` in place of the hub: same emulator, same load."""
    bot_port, emulator_port = free_port(), free_port()
    bot, emulators = f"http://127.0.0.1:{bot_port}", f"http://127.0.0.1:{emulator_port}"
    env = {**os.environ, "TELEGRAM_BOT_TOKEN": sandbox.TELEGRAM_TOKEN,
           "TELEGRAM_WEBHOOK_SECRET": sandbox.TELEGRAM_SECRET}
    script = Path(__file__).parent / "peers" / f"{peer}_bot.py"
    system = System(peer, bot, emulators, {"emulators": spawn_emulators(emulator_port, bot, env)})
    try:
        await until_ready(f"{emulators}/emulator/telegram/_/webhook", system.procs.values())
        # started once its Bot API answers: PTB's start-up getMe gives up on the first refused connection
        argv = [str(script), "--port", str(bot_port), "--api", f"{emulators}/emulator/telegram"]
        system.procs[peer] = spawn(peer, argv, env)
        await until_ready(f"{bot}/webhooks/telegram", system.procs.values())  # a GET is refused (405): it is up
        await asyncio.sleep(1)  # its start-up setWebhook done
        return await measure(system, args)
    finally:
        system.stop()


def report(results: list[Result], args: argparse.Namespace) -> None:
    print(f"\nOmnihub pipeline benchmark: {os.cpu_count()} cores, mix {'/'.join(MIXES[args.mix])}; "
          f"throughput: {args.concurrency} customers closed loop; latency: {args.rate:.0f} msg/s offered "
          f"over {args.customers} customers; {args.seconds:.0f} s each")
    print(f"{'run':<8}{'msg/s':>8}{'p50 ms':>8}{'p99 ms':>8}{'offered':>9}{'B/conv':>8}{'own B':>7}  RSS MB")
    for r in results:
        memory = f"{r.memory[0]:>8.0f}{r.memory[1]:>7.0f}" if r.memory else f"{'-':>8}{'-':>7}"
        rss = ", ".join(f"{k} {v}" for k, v in r.rss.items())
        print(f"{r.name:<8}{r.throughput:>8.0f}{r.p50:>8.1f}{r.p99:>8.1f}"
              f"{r.offered:>9.0f}{memory}  {rss}")
    print("\nCPU milliseconds per answered message, by process (throughput run); bot = all but "
          + " and ".join(sorted(OUTSIDE)) + ":")
    for r in results:
        print(f"{r.name:<8}" + ", ".join(f"{k} {v:.2f}" for k, v in r.cpu.items()) + f"; bot {r.bot_cpu:.2f}")
    hubs, peers = [r for r in results if r.memory], [r for r in results if not r.memory]
    if hubs and peers:
        print("\nHub / peer: throughput ratio, CPU-per-message ratio (Redis counted with the hub):")
        for hub in hubs:
            print(f"{hub.name:<8}" + "; ".join(
                f"{peer.name} {hub.throughput / peer.throughput:.2f}x msg/s, {hub.bot_cpu / peer.bot_cpu:.2f}x CPU"
                for peer in peers))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mix", choices=sorted(MIXES), default="telegram")
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--rate", type=float, default=500, help="offered messages/s in the latency run")
    parser.add_argument("--concurrency", type=int, default=300, help="customers in the throughput run")
    parser.add_argument("--customers", type=int, default=2000, help="customers in the latency run")
    parser.add_argument("--memory-conversations", type=int, default=1000)
    parser.add_argument("--layouts", default="run,split")
    parser.add_argument("--peers", action=argparse.BooleanOptionalAction,
                        help="then the bare aiogram and PTB bots under the same load (default: on with --mix telegram)")
    args = parser.parse_args()
    if args.peers is None:
        args.peers = args.mix == "telegram"
    if args.peers and args.mix != "telegram":
        parser.error("the peers are Telegram bots: --peers needs --mix telegram")
    server = EmbeddedRedis()
    redis_url = server.start()
    try:
        results = [asyncio.run(run_hub(layout, redis_url, args)) for layout in args.layouts.split(",") if layout]
    finally:
        server.stop()
    results += [asyncio.run(run_peer(peer, args)) for peer in (PEERS if args.peers else ())]
    report(results, args)


if __name__ == "__main__":
    main()
