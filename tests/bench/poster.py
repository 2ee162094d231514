"""The feed's HTTP client against aiohttp: CPU per webhook POST, the same receiver, the same requests.

    .venv/bin/python tests/bench/poster.py [--requests 6000] [--in-flight 32] [--rounds 2]

The receiver is the events benchmark's (a raw asyncio server in a process of its own, answering 204),
so this process's CPU is the client's alone. Each round POSTs a CloudEvent-sized body with the five
headers a delivery carries, `--in-flight` at a time, through `bot.crm.poster.Poster` and through an
`aiohttp.ClientSession` set up as the feed had it, alternately.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import aiohttp

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from bot.crm.poster import Poster  # noqa: E402
from bot.redis_server import free_port  # noqa: E402
from tests.bench.events import start_receiver  # noqa: E402

BODY = (b'{"specversion":"1.0","id":"5d3c1c9e-8a57-5f5e-9c43-2a4f0d0b6f11","source":"omnihub","type":'
        b'"omnihub.message.received","time":"2026-12-02T01:00:00.000Z","subject":"c_4f0d0b6f11",'
        b'"datacontenttype":"application/json","data":{"channel":"telegram","text":"hello there"}}')
HEADERS = {"content-type": "application/cloudevents+json", "user-agent": "Omnihub-Webhooks/1.0",
           "webhook-id": "5d3c1c9e-8a57-5f5e-9c43-2a4f0d0b6f11", "webhook-timestamp": "1796176751",
           "webhook-signature": "v1," + "A" * 43 + "="}


async def measure(post: Callable[[], Awaitable[None]], requests: int, in_flight: int) -> tuple[float, float]:
    """(requests/s, µs of this process's CPU per request)."""
    slots = asyncio.Semaphore(in_flight)

    async def one() -> None:
        async with slots:
            await post()

    await asyncio.gather(*(one() for _ in range(200)))  # connections open, code warm
    started, cpu = time.perf_counter(), time.process_time()
    await asyncio.gather(*(one() for _ in range(requests)))
    took, spent = time.perf_counter() - started, time.process_time() - cpu
    return requests / took, spent / requests * 1e6


async def bench(url: str, args: argparse.Namespace) -> None:
    timeout = aiohttp.ClientTimeout(total=15)
    session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=500, limit_per_host=0), timeout=timeout)
    poster = Poster()

    async def with_aiohttp() -> None:
        async with session.post(url, data=BODY, headers=HEADERS, allow_redirects=False, timeout=timeout) as answer:
            assert answer.status == 204, answer.status

    async def with_poster() -> None:
        answer = await poster.post(url, BODY, HEADERS, timeout=15)
        assert answer.status == 204, answer.status

    print(f"{args.requests} POSTs a round, {args.in_flight} in flight")
    print(f"{'client':<10}{'requests/s':>12}{'µs CPU/request':>16}")
    try:
        for _ in range(args.rounds):
            for name, post in (("aiohttp", with_aiohttp), ("poster", with_poster)):
                rate, cpu = await measure(post, args.requests, args.in_flight)
                print(f"{name:<10}{rate:>12.0f}{cpu:>16.1f}", flush=True)
    finally:
        await session.close()
        await poster.aclose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=6000)
    parser.add_argument("--in-flight", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    port = free_port()
    receiver = start_receiver(port)
    try:
        time.sleep(1.0)  # the receiver's process starts listening
        asyncio.run(bench(f"http://127.0.0.1:{port}/bench", args))
    finally:
        receiver.terminate()
        receiver.wait(10)


if __name__ == "__main__":
    main()
