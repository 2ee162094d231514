"""Customer memory benchmark: Redis bytes per contact, identity lookup latency, merge rate.

    .venv/bin/python tests/bench/context.py [--contacts 100000] [--history 20] [--lookups 20000] [--merges 2000]

Starts a throwaway Redis and writes `--contacts` contacts through `ContextStore.stage` on pipelines
(1,000 contacts a round trip), each shaped as the hub leaves a customer who wrote on Telegram and
WhatsApp: two identities with their index keys, a profile with name, phone, language, consent,
last-seen and an attribute, a conversation waiting in a flow, a mode index entry. Then prints:
- Redis bytes per contact without history (`used_memory` growth / contacts; target <= 2 KB), then
  with `--history` history entries each (half inbound, half outbound replies with provider ids);
- identity lookup (`Identities.lookup`: phone normalisation + GET) p50/p99 from a warm client, one
  at a time (target p99 <= 1 ms), and lookup + profile and conversation load;
- merges/s of pairs of these contacts (`Merger.merge`, the whole WATCH/MULTI), one at a time and 32
  concurrently.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from redis.asyncio import Redis

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from bot.context import keys  # noqa: E402
from bot.context.history import HistoryEntry  # noqa: E402
from bot.context.identity import Identities  # noqa: E402
from bot.context.merge import Merger  # noqa: E402
from bot.context.store import Changes, ContextStore  # noqa: E402
from bot.redis_server import EmbeddedRedis  # noqa: E402

BATCH = 1000
NOW = 1_795_000_000.0


def chat(n: int) -> str:
    return str(800_000_000 + n)


def phone(n: int) -> str:
    return f"+7999{n:07d}"


def contact(n: int) -> Changes:
    at = f"{NOW + n:.0f}"
    return Changes(
        profile={
            f"i:telegram:{chat(n)}": at, f"i:whatsapp:{phone(n)}": at, "phone": phone(n), "name": f"Customer {n}",
            "lang": "ru", "pref": "whatsapp", "created": at, "seen:telegram": at, "seen:whatsapp": at,
            "a:last_order": f"{100000 + n}", "cs:whatsapp:service": "in",
        },
        conversation={
            "id": f"{int(NOW * 1000) + n}-0", "mode": "bot", "ch": "whatsapp", "uid": phone(n),
            "st": '{"flow":"order_status","step":"0"}', "last": f"{int(NOW * 1000) + n}-3", "at": f"{NOW + n:.3f}",
        },
        mode=("", "bot"),
    )


def history(n: int, count: int) -> list[dict[str, Any]]:
    entries: list[dict[str, Any]] = []
    for k in range(count // 2):
        entry_id, at = f"{int(NOW * 1000) + n * 100 + k}-0", NOW + n + k
        entries.append({"id": entry_id, "ch": "whatsapp", "d": "in", "at": at, "by": "customer",
                        "tx": "Where is my order 104582?"})
        entries.append({"id": f"{entry_id}-0", "ch": "whatsapp", "d": "out", "at": at + 0.01, "by": "bot",
                        "src": entry_id, "st": "read", "tx": "Order 104582 is on its way. It should reach you "
                        "within 2-3 days.", "pid": f"SM{n:016x}{k:016x}"})
    return entries


async def used_memory(redis: Redis) -> int:
    info = await redis.info("memory")
    return int(info["used_memory"])


async def write(redis: Redis, store: ContextStore, count: int, build: Callable[[int], Changes], index: bool) -> None:
    for start in range(0, count, BATCH):
        async with redis.pipeline(transaction=False) as pipe:
            for n in range(start, min(start + BATCH, count)):
                cid = f"c{n:016x}"
                store.stage(pipe, cid, build(n), NOW)
                if index:
                    pipe.set(keys.identity("telegram", chat(n)), cid)
                    pipe.set(keys.phone(phone(n)), cid)
            await pipe.execute()


def percentiles(samples: list[float]) -> str:
    cuts = statistics.quantiles(samples, n=100)
    return f"p50 {cuts[49] * 1000:.3f} ms, p99 {cuts[98] * 1000:.3f} ms"


async def timed(count: int, call: Callable[[int], Awaitable[object]]) -> list[float]:
    samples = []
    for n in range(count):
        started = time.perf_counter()
        await call(n)
        samples.append(time.perf_counter() - started)
    return samples


async def merge_rate(merger: Merger, pairs: list[tuple[int, int]], concurrency: int) -> float:
    queue = iter(pairs)

    async def lane() -> None:
        for survivor, absorbed in queue:
            await merger.merge(f"c{survivor:016x}", f"c{absorbed:016x}", "bench")

    started = time.perf_counter()
    await asyncio.gather(*(lane() for _ in range(concurrency)))
    return len(pairs) / (time.perf_counter() - started)


async def run(args: argparse.Namespace, url: str) -> None:
    redis = Redis.from_url(url, decode_responses=True, max_connections=64)
    store = ContextStore(redis, history_cap=200)
    identities = Identities(redis, store, "RU")
    merger = Merger(redis, identities, 200, 86_400, 16)
    n = args.contacts
    base = await used_memory(redis)
    started = time.perf_counter()
    await write(redis, store, n, contact, index=True)
    profiles = await used_memory(redis)
    def with_history(k: int) -> Changes:
        return Changes(history=[HistoryEntry.model_validate(e) for e in history(k, args.history)])

    await write(redis, store, n, with_history, index=False)
    full = await used_memory(redis)
    print(f"wrote {n:,} contacts x {args.history} history entries in {time.perf_counter() - started:.1f} s")
    print(f"Redis bytes per contact, without history: {(profiles - base) / n:,.0f}")
    print(f"Redis bytes per contact, with {args.history} history entries: {(full - base) / n:,.0f}")
    sample = f"c{n // 2:016x}"
    sizes = {name: await redis.memory_usage(key) for name, key in (
        ("profile", keys.contact(sample)), ("conversation", keys.conversation(sample)),
        ("history", keys.history(sample)), ("phone index", keys.phone(phone(n // 2))))}
    print("  one contact's keys (MEMORY USAGE):", ", ".join(f"{k} {v} B" for k, v in sizes.items()))

    step = max(1, n // args.lookups)
    await timed(1000, lambda k: identities.lookup("whatsapp", phone(k * step % n)))  # warm up
    lookups = await timed(args.lookups, lambda k: identities.lookup("whatsapp", phone(k * step % n)))
    print(f"identity lookup (phone -> contact id), {args.lookups:,} one at a time: {percentiles(lookups)}")

    async def resolve_and_load(k: int) -> None:
        cid = await identities.lookup("telegram", chat(k * step % n))
        assert cid is not None
        await store.load(cid)

    loads = await timed(args.lookups, resolve_and_load)
    print(f"identity lookup + profile and conversation load: {percentiles(loads)}")

    pairs = [(2 * k, 2 * k + 1) for k in range(args.merges * 2)]
    one = await merge_rate(merger, pairs[: args.merges], 1)
    many = await merge_rate(merger, pairs[args.merges :], 32)
    print(f"merges/s ({args.history}+{args.history} history entries, 2+2 identities): {one:,.0f} one at a time, "
          f"{many:,.0f} with 32 concurrent")
    await redis.aclose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--contacts", type=int, default=100_000)
    parser.add_argument("--history", type=int, default=20)
    parser.add_argument("--lookups", type=int, default=20_000)
    parser.add_argument("--merges", type=int, default=2_000)
    args = parser.parse_args()
    if args.merges * 4 > args.contacts:
        parser.error("--merges needs at least 4 contacts per merge")
    server = EmbeddedRedis()
    try:
        asyncio.run(run(args, server.start()))
    finally:
        server.stop()


if __name__ == "__main__":
    main()
