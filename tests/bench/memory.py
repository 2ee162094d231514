"""Redis bytes per conversation, and where they go.

    .venv/bin/python tests/bench/memory.py [--customers 300] [--turns 10] [--mix telegram|all] [--imports 300]

Starts a throwaway Redis and a sandbox hub in this process (the emulators mounted in it, as `omnihub
run` has them without credentials; all 16 partitions). `--customers` customers each hold a
`--turns`-turn conversation with the demo bot — on Telegram, or with `--mix all` spread over
Telegram, WhatsApp, Viber and SMS, whose emulators post delivery and read callbacks as the providers
do. Once the pipeline is idle (nothing pending, nothing new for a second) and the streams have been
trimmed, it prints bytes per conversation:
- the whole database: `used_memory` growth / customers (what `tests/bench/pipeline.py` prints);
- per key kind: `MEMORY USAGE` growth of every key, summed by kind and divided by the customers —
  shared keys (the `{ix}` segment indexes, the streams, the mode index) amortised that way — and
  how long it lives: "kept", or in flight (the TTLs left on what the run wrote, or the feed's
  retention, `crm.retention_hours`); the totals split kept and in flight;
- the same for `--imports` contacts without history, created through `POST /api/v1/contacts/batch`
  (phone, name, language, an attribute, consent), as a CRM import makes them.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import sys
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from redis.asyncio import Redis

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from bot.models import Channel  # noqa: E402
from bot.pipeline.streams import TRIM_EVERY_SECONDS  # noqa: E402
from bot.redis_server import EmbeddedRedis  # noqa: E402
from bot.sandbox.client import SandboxClient  # noqa: E402
from tests.conftest import hub_settings, running_hub  # noqa: E402

# What customers say: the demo bot answers each with one message and never hands them to a human.
TURNS = ["hello", "opening hours", "delivery", "привет", "часы работы", "доставка", "hi", "when are you open",
         "delivery cost", "спасибо"]
MIXES: dict[str, tuple[Channel, ...]] = {"telegram": ("telegram",), "all": ("telegram", "whatsapp", "viber", "sms")}
AT_ONCE = 100  # customers in conversation at the same time

# Key kinds, first match wins; `{cid}` is a contact's hash tag, `{p}` a partition's.
KINDS: list[tuple[str, str]] = [
    ("profile hash", r"omni:\{c\w+\}:c$"),
    ("conversation hash", r"omni:\{c\w+\}:v$"),
    ("history list", r"omni:\{c\w+\}:h$"),
    ("consent trail", r"omni:\{c\w+\}:consent$"),
    ("dedupe index zset", r"omni:\{c\w+\}:dd$"),
    ("event outbox list", r"omni:\{c\w+\}:ev$"),
    ("command results", r"omni:\{c\w+\}:res:"),
    ("other contact keys", r"omni:\{c\w+\}:"),
    ("identity (phone)", r"omni:id:phone:"),
    ("identity (channel)", r"omni:id:"),
    ("dedupe keys", r"omni:dd:"),
    ("feed emit-once keys", r"omni:evs:"),
    ("{ix} all set", r"omni:\{ix\}:all$"),
    ("{ix} channel sets", r"omni:\{ix\}:ch:"),
    ("{ix} consent sets", r"omni:\{ix\}:cs:"),
    ("{ix} language sets", r"omni:\{ix\}:lang:"),
    ("{ix} attribute sets", r"omni:\{ix\}:a:"),
    ("{ix} date zsets", r"omni:\{ix\}:z:"),
    ("{ix} other", r"omni:\{ix\}:"),
    ("mode index zsets", r"omni:conv:"),
    ("inbound streams", r"omni:inb?:"),
    ("outbound streams", r"omni:out:"),
    ("bulk streams", r"omni:bulk:"),
    ("feed streams", r"omni:ev:"),
    ("dead letter streams", r"omni:dead:"),
    ("attempt counters", r"omni:att:"),
    ("rate buckets", r"omni:rl:"),
    ("phrases table", r"omni:phrases$"),
]
PATTERNS = [(kind, re.compile(pattern)) for kind, pattern in KINDS]


def kind_of(key: str) -> str:
    return next((kind for kind, pattern in PATTERNS if pattern.match(key)), "other")


@dataclass
class Sizes:
    """Every key's MEMORY USAGE and TTL (seconds, -1 none), and the server's used_memory."""

    used: int
    keys: dict[str, tuple[int, int]]


async def sizes(redis: Redis) -> Sizes:
    names = [key async for key in redis.scan_iter(count=1000)]
    found: dict[str, tuple[int, int]] = {}
    for start in range(0, len(names), 1000):
        chunk = names[start:start + 1000]
        async with redis.pipeline(transaction=False) as pipe:
            for key in chunk:
                pipe.memory_usage(key, samples=0)
                pipe.ttl(key)
            answers = await pipe.execute()
        for key, usage, ttl in zip(chunk, answers[::2], answers[1::2], strict=True):
            if usage is not None:
                found[key] = (int(usage), int(ttl))
    return Sizes(int((await redis.info("memory"))["used_memory"]), found)


IN_FLIGHT = {"feed streams": "crm.retention_hours"}  # kinds without a TTL that are trimmed by age


def breakdown(title: str, before: Sizes, after: Sizes, count: int) -> None:
    """Bytes per conversation (or contact) by key kind, growth from `before` to `after`; a kind whose
    keys have a TTL, or that is trimmed by age, is in flight: it goes by itself."""
    grown: dict[str, float] = defaultdict(float)
    keys: dict[str, int] = defaultdict(int)
    ttl: dict[str, tuple[int, int]] = {}  # the shortest and the longest TTL left, -1: none
    for key, (usage, left) in after.keys.items():
        kind = kind_of(key)
        grown[kind] += usage - before.keys.get(key, (0, 0))[0]
        if key not in before.keys:
            keys[kind] += 1
        if key not in before.keys or usage != before.keys[key][0]:  # the TTLs of what this run wrote
            shortest, longest = ttl.get(kind, (left, left))
            ttl[kind] = (min(shortest, left), max(longest, left))
    for key, (usage, _) in before.keys.items():
        if key not in after.keys:
            grown[kind_of(key)] -= usage
    whole = (after.used - before.used) / count
    print(f"\n{title}: {whole:,.0f} B each (used_memory growth / {count})")
    print(f"  {'kind':<22}{'B each':>8}{'new keys':>10}  lives")
    kept = flying = 0.0
    for kind, total in sorted(grown.items(), key=lambda kv: -kv[1]):
        if abs(total) < 0.5:
            continue
        shortest, longest = ttl.get(kind, (-1, -1))
        span = f"{longest:,}" if shortest == longest else f"{shortest:,}–{longest:,}"
        lives = IN_FLIGHT.get(kind) or (f"TTL {span} s" if shortest >= 0 else "kept")
        if lives == "kept":
            kept += total
        else:
            flying += total
        print(f"  {kind:<22}{total / count:>8.0f}{keys[kind] / count:>10.2f}  {lives}")
    print(f"  {'sum of the keys':<22}{(kept + flying) / count:>8.0f}   kept {kept / count:,.0f}, "
          f"in flight {flying / count:,.0f}")
    print(f"  {'not in any key':<22}{whole - (kept + flying) / count:>8.0f}   "
          "(the keyspace's and the expires dicts, allocator: +-1 KB from run to run)")


async def idle(redis: Redis, quiet: float = 1.0) -> None:
    """Until no stream has a pending entry and no stream has grown for `quiet` seconds, then until
    the streams have been trimmed (every TRIM_EVERY_SECONDS) with nothing left to trim."""
    last: dict[str, str] = {}
    calm_since = time.monotonic()
    while time.monotonic() - calm_since < quiet:
        await asyncio.sleep(0.2)
        now: dict[str, str] = {}
        busy = False
        async for key in redis.scan_iter(match="omni:*:{p*}", _type="stream"):
            info = await redis.xinfo_stream(key)
            now[key] = info["last-generated-id"]
            for group in await redis.xinfo_groups(key):
                busy = busy or bool(group["pending"]) or group["last-delivered-id"] != now[key]
        if busy or now != last:
            last, calm_since = now, time.monotonic()
    await asyncio.sleep(2 * TRIM_EVERY_SECONDS + 1)


@dataclass
class People:
    client: SandboxClient
    channels: tuple[Channel, ...]
    made: int = 0

    def new(self, count: int) -> list[tuple[Channel, str]]:
        made: list[tuple[Channel, str]] = []
        for _ in range(count):
            self.made += 1
            i = self.made
            channel = self.channels[i % len(self.channels)]
            user = {"telegram": str(700_000_000 + i), "viber": f"bench-{i}"}.get(channel, f"+7999{i:07d}")
            made.append((channel, user))
        return made

    async def converse(self, channel: Channel, user: str, turns: int) -> None:
        if channel == "viber":  # Viber lets a bot write only to subscribers
            response = await self.client.http.post("/emulator/viber/_/inbound",
                                                   json={"user_id": user, "event": "subscribed"})
            response.raise_for_status()
        seen = 0
        for n in range(turns):
            answer = await self.client.send(channel, user, TURNS[n % len(TURNS)])
            assert answer["status"] == 200, answer
            got = await self.client.replies(channel, user, after=seen, wait=30)
            assert got, f"no reply to {channel} {user}"
            seen = max(m["seq"] for m in got)

    async def conversations(self, count: int, turns: int) -> None:
        people = self.new(count)
        for start in range(0, count, AT_ONCE):
            await asyncio.gather(*(self.converse(c, u, turns) for c, u in people[start:start + AT_ONCE]))

    async def imports(self, count: int) -> None:
        """Contacts without history, as a CRM import creates them."""
        for start in range(0, count, 100):
            items = [{"phone": f"+7988{i:07d}", "name": f"Customer {i}", "language": "ru",
                      "attributes": {"last_order": str(100_000 + i)}, "consent": {"sms": {"marketing": "in"}}}
                     for i in range(start, min(start + 100, count))]
            response = await self.client.http.post("/api/v1/contacts/batch", json={"items": items})
            response.raise_for_status()
            assert all(item["created"] for item in response.json()["items"]), response.text


async def run(args: argparse.Namespace, url: str) -> None:
    redis = Redis.from_url(url, decode_responses=True)
    settings = hub_settings(url, pipeline__partitions=args.partitions, pipeline__lease_seconds=5.0)
    async with running_hub(settings) as client:
        people = People(client, MIXES[args.mix])
        await people.conversations(4 * len(people.channels), 2)  # streams, groups and leases exist
        await idle(redis)
        before = await sizes(redis)
        started = time.perf_counter()
        await people.conversations(args.customers, args.turns)
        print(f"{args.customers} conversations of {args.turns} turns ({'/'.join(people.channels)}) "
              f"in {time.perf_counter() - started:.1f} s")
        await idle(redis)
        after = await sizes(redis)
        breakdown(f"Bytes per {args.turns}-turn conversation", before, after, args.customers)
        if args.imports:
            await people.imports(args.imports)
            await idle(redis)
            breakdown("Bytes per contact without history (API import)", after, await sizes(redis), args.imports)
    await redis.aclose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--customers", type=int, default=300)
    parser.add_argument("--turns", type=int, default=10)
    parser.add_argument("--mix", choices=sorted(MIXES), default="telegram")
    parser.add_argument("--imports", type=int, default=300, help="contacts created without history (0: none)")
    parser.add_argument("--partitions", type=int, default=16)
    args = parser.parse_args()
    server = EmbeddedRedis()
    try:
        asyncio.run(run(args, server.start()))
    finally:
        server.stop()


if __name__ == "__main__":
    main()
