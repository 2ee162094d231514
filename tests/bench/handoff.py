"""Handoff benchmark: how fast the router gives 1,000 waiting conversations to 50 agents.

    .venv/bin/python tests/bench/handoff.py [--conversations 1000] [--agents 50] [--partitions 16]

Starts a throwaway Redis and a hub's partition workers (no API, no router of its own: the benchmark
holds the router lease), writes `--conversations` queued conversations (a contact and its
conversation, as a handoff leaves them) and `--agents` online agents of the `support` team with room
for all of them, then prints:
- the routing decision alone (`assignment.plan`, pure) for the whole queue;
- the router's rounds that assign the whole queue: their wall time, and each assignment's latency
  (`Desk.assign`: read the conversation, reserve the agent's place, queue the Assign command on the
  contact's partition, wait for the worker's answer, read again) p50/p99 at the router's
  concurrency (target p99 <= 20 ms);
- that for each `--concurrency` (assignments the router has in flight; 1 is also what a person
  clicking "claim" sees).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from pathlib import Path

from redis.asyncio import Redis

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from bot.context import keys  # noqa: E402
from bot.context.store import Changes  # noqa: E402
from bot.handoff.assignment import plan  # noqa: E402
from bot.handoff.desk import ConversationView, Desk  # noqa: E402
from bot.handoff.router import Router  # noqa: E402
from bot.hub import Hub  # noqa: E402
from bot.redis_server import EmbeddedRedis, connect  # noqa: E402
from bot.settings import load_settings  # noqa: E402

BATCH = 500
WARM_UP = 50  # conversations assigned before measuring


class TimedDesk(Desk):
    """The hub's desk, with each assignment's latency written down."""

    samples: list[float] = []  # noqa: RUF012 - reset per round by the benchmark

    async def assign(self, conversation_id: str, agent_id: str, take_over: bool = False) -> ConversationView:
        started = time.perf_counter()
        try:
            return await super().assign(conversation_id, agent_id, take_over)
        finally:
            self.samples.append(time.perf_counter() - started)


def percentiles(samples: list[float]) -> str:
    cuts = statistics.quantiles(samples, n=100)
    return (f"p50 {cuts[49] * 1000:.1f} ms, p90 {cuts[89] * 1000:.1f} ms, p99 {cuts[98] * 1000:.1f} ms, "
            f"max {max(samples) * 1000:.1f} ms")


async def queue(hub: Hub, first: int, count: int) -> None:
    """`count` contacts whose conversation waits in the support queue, oldest first."""
    now = time.time()
    for start in range(first, first + count, BATCH):
        async with hub.redis.pipeline(transaction=False) as pipe:
            for n in range(start, min(start + BATCH, first + count)):
                cid, at = f"c{n:016x}", now - 60 + n / 1000  # well inside the queue timeout
                changes = Changes(
                    profile={f"i:telegram:{900_000 + n}": f"{at:.0f}", "name": f"Customer {n}", "lang": "en"},
                    conversation={"id": f"{cid}-{int(at * 1000)}-0", "mode": "queued", "ch": "telegram",
                                  "uid": str(900_000 + n), "team": "support", "queued_at": f"{at:.3f}",
                                  "handoff": "requested"},
                    mode=("", "queued"))
                hub.store.stage(pipe, cid, changes, at)
                pipe.zadd(keys.by_mode("queued"), {cid: at})
            await pipe.execute()


async def until_workers(redis: Redis, partitions: int) -> None:
    """Until every partition has its worker (a lease)."""
    for _ in range(600):
        if await redis.exists(*(keys.lease(p) for p in range(partitions))) == partitions:
            return
        await asyncio.sleep(0.05)
    raise RuntimeError("the workers did not start")


async def main(conversations: int, agents: int, partitions: int, concurrencies: list[int]) -> None:
    server = EmbeddedRedis()
    url = server.start()
    redis = connect(url)  # the hub's own client: its pool waits for a free connection instead of failing
    # an hour's lease: the benchmark's router routes, the one the hub starts stays idle
    settings = load_settings({"REDIS_URL": url}, pipeline__partitions=partitions, port=0,
                             handoff__router_lease_seconds=3600)
    hub = Hub(settings, redis, run_api=False)
    desk = TimedDesk(redis, hub.store, hub.ingest, hub.agents)
    try:
        router = Router(redis, desk, hub.agents, hub.teams, settings.handoff)
        assert await router.lead()
        await hub.start()
        await until_workers(redis, partitions)
        capacity = -(-(conversations * len(concurrencies) + WARM_UP) // agents)  # room for every queue
        staff = [await hub.agents.create(f"agent{n}@example.com", f"Agent {n}", "correct horse", capacity=capacity)
                 for n in range(agents)]
        for agent in staff:
            await hub.agents.heartbeat(agent.id)
        await queue(hub, 10_000_000, WARM_UP)  # warm up: connections, scripts, the workers' first reads
        await router.round()
        print(f"{conversations} queued conversations, {agents} agents, {partitions} partitions, "
              "router and workers in one process")
        for round_number, concurrency in enumerate(concurrencies):
            await queue(hub, round_number * conversations, conversations)
            waiting = await desk.queued(limit=conversations)
            loads = await hub.agents.loads([a.id for a in staff])
            started = time.perf_counter()
            picks = plan(waiting, settings.handoff.teams, "support", staff, loads, {}, {})
            decided = time.perf_counter() - started
            print(f"decision (assignment.plan): {len(picks)} picks in {decided * 1000:.1f} ms "
                  f"({decided / max(len(picks), 1) * 1e6:.0f} µs each)")
            router.concurrency = concurrency
            desk.samples = []
            started, assigned, rounds = time.perf_counter(), 0, 0
            while True:  # as the router's loop goes on at once while a round leaves work
                report = await router.round()
                assigned, rounds = assigned + len(report.assigned), rounds + 1
                if not report.more:
                    break
            took = time.perf_counter() - started
            print(f"router, {concurrency} assignment(s) in flight: {assigned} assigned in {rounds} rounds, "
                  f"{took:.2f} s ({assigned / took:.0f}/s); Desk.assign {percentiles(desk.samples)}")
    finally:
        await hub.stop()
        await redis.aclose()
        server.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--conversations", type=int, default=1000)
    parser.add_argument("--agents", type=int, default=50)
    parser.add_argument("--partitions", type=int, default=16)
    parser.add_argument("--concurrency", default="1,32", help="assignments in flight, one round each")
    args = parser.parse_args()
    asyncio.run(main(args.conversations, args.agents, args.partitions, [int(c) for c in args.concurrency.split(",")]))
