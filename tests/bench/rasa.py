"""What Rasa adds to a customer's wait: Omnihub alone vs Omnihub + Rasa (nlu mode, dialogue mode).

    OMNIHUB_RASA_URL=http://127.0.0.1:5005 .venv/bin/python tests/bench/rasa.py [--messages 200]

Needs a real Rasa server (`scripts/rasa-env up`). Starts a throwaway Redis and, one after the other,
three sandbox hubs on loopback — the built-in engine alone, Rasa as the NLU, Rasa as the dialogue —
and has customers write to each through the Telegram emulator, one message at a time per customer
(`--customers` at once), timing each from the webhook to the reply recorded by the emulator. Also
times Rasa's own two calls, straight (`/model/parse`, the REST channel), for the same texts.
Prints p50/p99 per layout.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from bot.redis_server import EmbeddedRedis  # noqa: E402
from tests.conftest import hub_settings, running_hub  # noqa: E402
from tests.pipeline.customer import Customer  # noqa: E402

TEXTS = ["hello", "opening hours", "delivery", "when are you open", "how much is delivery", "thanks"]


def figures(samples: list[float]) -> str:
    ordered = sorted(samples)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    return f"p50 {statistics.median(ordered) * 1000:7.1f} ms   p99 {p99 * 1000:7.1f} ms   (n={len(ordered)})"


async def through_hub(redis_url: str, layout: int, messages: int, customers: int, **rasa: Any) -> list[float]:
    settings = hub_settings(redis_url, pipeline__partitions=4, **rasa)
    samples: list[float] = []
    async with running_hub(settings) as client:
        async def customer(n: int) -> None:
            me = Customer(client, "telegram", f"9{layout}{n:05d}")
            for text in itertools.islice(itertools.cycle(TEXTS), messages // customers):
                started = time.perf_counter()
                await me.say(text, language="en")
                await me.replies(1, wait=30)
                samples.append(time.perf_counter() - started)

        await asyncio.gather(*(customer(n) for n in range(customers)))
    return samples


async def straight(rasa_url: str, path: str, messages: int) -> list[float]:
    samples: list[float] = []
    async with httpx.AsyncClient(base_url=rasa_url, timeout=30) as http:
        for n, text in enumerate(itertools.islice(itertools.cycle(TEXTS), messages)):
            body = {"text": text} if path == "/model/parse" else {"sender": f"bench-{n % 10}", "message": text}
            started = time.perf_counter()
            (await http.post(path, json=body)).raise_for_status()
            samples.append(time.perf_counter() - started)
    return samples


async def main(messages: int, customers: int) -> None:
    rasa_url = os.environ.get("OMNIHUB_RASA_URL")
    if not rasa_url:
        sys.exit("set OMNIHUB_RASA_URL to a running Rasa server (scripts/rasa-env up)")
    redis = EmbeddedRedis()
    redis_url = redis.start()
    try:
        print(f"{messages} messages, {customers} customers at once, one message in flight per customer")
        print(f"  Rasa /model/parse, straight         {figures(await straight(rasa_url, '/model/parse', messages))}")
        rest = await straight(rasa_url, "/webhooks/rest/webhook", messages)
        print(f"  Rasa REST channel, straight         {figures(rest)}")
        alone = await through_hub(redis_url, 1, messages, customers)
        print(f"  Omnihub alone (built-in engine)     {figures(alone)}")
        nlu = await through_hub(redis_url, 2, messages, customers, rasa__url=rasa_url, rasa__mode="nlu")
        print(f"  Omnihub + Rasa, nlu mode            {figures(nlu)}")
        dialogue = await through_hub(redis_url, 3, messages, customers, rasa__url=rasa_url,
                                    rasa__mode="dialogue")
        print(f"  Omnihub + Rasa, dialogue mode       {figures(dialogue)}")
    finally:
        redis.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=200)
    parser.add_argument("--customers", type=int, default=4)
    args = parser.parse_args()
    asyncio.run(main(args.messages, args.customers))
