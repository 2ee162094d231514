"""Segment benchmark: evaluation time over 100,000 contacts' indexes, and the indexes' bytes per contact.

    .venv/bin/python tests/bench/segments.py [--contacts 100000] [--runs 5] [--redis-url URL]

Starts a throwaway Redis (or uses `--redis-url`, which it FLUSHES) and enters `--contacts` contacts
in the segment indexes through the functions the store's commit uses (`indexes.entries` of a
profile, `indexes.enter` on a pipeline, 1,000 contacts a round trip). Each profile is drawn from a
seeded generator: 1-2 identities (Telegram, WhatsApp + phone, Viber, SMS), 0-3 of 8 tags (vip
~10 %), consent per channel, a language, a city among 30 and a plan among 3, last seen within 180
days, created within two years, and for ~35 % conversions (count, total, last). Then it times
`evaluate()` (median and worst of `--runs`) for four realistic segments against the 2 s target, and
prints the indexes' Redis bytes per contact (`used_memory` growth / contacts).
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from redis.asyncio import Redis

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from bot.campaigns.segments import Segment, evaluate  # noqa: E402
from bot.context import indexes  # noqa: E402
from bot.redis_server import EmbeddedRedis  # noqa: E402

BATCH = 1000
DAY = 86400
TARGET = 2.0
TAGS = ["vip", "new", "loyal", "churn-risk", "b2b", "newsletter", "promo", "returning"]
TAG_ODDS = [0.10, 0.20, 0.25, 0.08, 0.05, 0.40, 0.30, 0.22]
CITIES = [f"city-{n}" for n in range(30)]
SEGMENTS = {
    "vip + viber marketing + seen 30 d": Segment.model_validate({
        "tags": ["vip"], "consent": [{"channel": "viber", "purpose": "marketing"}],
        "last_seen": {"within_days": 30}}),
    "rfm: bought <= 60 d, >= 3 orders, >= 100": Segment.model_validate({
        "rfm": {"max_recency_days": 60, "min_frequency": 3, "min_monetary": 100}}),
    "has whatsapp, ru, not churn-risk, never bought": Segment.model_validate({
        "channels": ["whatsapp"], "language": "ru", "not_tags": ["churn-risk"], "conversions": {"max_count": 0}}),
    "any of loyal/returning, city-3, inactive 90 d": Segment.model_validate({
        "any_tags": ["loyal", "returning"], "attributes": {"city": "city-3"}, "last_seen": {"older_than_days": 90}}),
}


def profile(n: int, rng: random.Random, now: float) -> dict[str, str]:
    fields: dict[str, str] = {"created": f"{now - rng.uniform(0, 730) * DAY:.0f}", "name": f"Customer {n}"}
    for channel in rng.sample(["telegram", "whatsapp", "viber", "sms"], rng.choice([1, 1, 2])):
        user = f"+7999{n:07d}" if channel in ("whatsapp", "sms") else f"{channel}-{n}"
        fields[f"i:{channel}:{user}"] = fields["created"]
        fields[f"seen:{channel}"] = f"{now - rng.uniform(0, 180) * DAY:.0f}"
        if channel in ("whatsapp", "sms"):
            fields["phone"] = user
        if rng.random() < 0.6:
            fields[f"cs:{channel}:marketing"] = "in" if rng.random() < 0.8 else "out"
    fields.update({f"t:{tag}": "1" for tag, odds in zip(TAGS, TAG_ODDS, strict=True) if rng.random() < odds})
    fields["lang"] = rng.choice(["ru", "ru", "ru", "en"])
    fields["a:city"] = rng.choice(CITIES)
    fields["a:plan"] = rng.choice(["free", "basic", "pro"])
    if rng.random() < 0.35:
        count = rng.randint(1, 8)
        fields.update({"cv:n": str(count), "cv:sum": repr(round(count * rng.uniform(10, 120), 2)),
                       "cv:last": f"{now - rng.uniform(0, 365) * DAY:.0f}"})
    return fields


async def load(redis: Redis, contacts: int, now: float) -> None:
    rng = random.Random(7)
    for start in range(0, contacts, BATCH):
        async with redis.pipeline(transaction=False) as pipe:
            for n in range(start, min(start + BATCH, contacts)):
                indexes.enter(pipe, f"c{n:08x}", indexes.entries(profile(n, rng, now)))
            await pipe.execute()


async def bench(redis: Redis, contacts: int, runs: int) -> None:
    await redis.flushdb()
    base = int((await redis.info("memory"))["used_memory"])
    now = time.time()
    started = time.perf_counter()
    await load(redis, contacts, now)
    loaded = time.perf_counter() - started
    used = int((await redis.info("memory"))["used_memory"]) - base
    print(f"{contacts:,} contacts entered in the indexes in {loaded:.1f} s; "
          f"index keys: {await redis.dbsize():,}; {used / contacts:,.0f} Redis bytes per contact")
    print(f"{'segment':<50} {'count':>8} {'median':>9} {'worst':>9}  target {TARGET:.0f} s")
    for name, segment in SEGMENTS.items():
        times, count = [], 0
        for _ in range(runs):
            t0 = time.perf_counter()
            result = await evaluate(redis, segment, now)
            times.append(time.perf_counter() - t0)
            count = result.count
            await redis.delete(result.key)
        worst = max(times)
        verdict = "ok" if worst <= TARGET else "OVER"
        print(f"{name:<50} {count:>8,} {statistics.median(times) * 1000:>7.0f}ms {worst * 1000:>7.0f}ms  {verdict}")


async def run(args: Any) -> None:
    server = None
    url = args.redis_url
    if url is None:
        server = EmbeddedRedis()
        url = server.start()
    redis = Redis.from_url(url, decode_responses=True)
    try:
        await bench(redis, args.contacts, args.runs)
    finally:
        await redis.aclose()
        if server is not None:
            server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--contacts", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--redis-url", help="a Redis to FLUSH and use (default: a throwaway one)")
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
