"""Partition leases against a real Redis: shared fairly, never run twice at once, and outliving Redis."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path

from redis.asyncio import Redis

from bot.context import keys
from bot.pipeline.partitions import PartitionLeases
from bot.redis_server import EmbeddedRedis

PARTITIONS = 8
LEASE_SECONDS = 0.6


class Runners:
    """Partition runners that record who runs what, and fail the test if two run one partition."""

    def __init__(self) -> None:
        self.running: dict[int, str] = {}
        self.overlaps: list[int] = []

    def runner(self, name: str) -> Callable[[int, asyncio.Event], object]:
        async def run(p: int, halt: asyncio.Event) -> None:
            if p in self.running:
                self.overlaps.append(p)
            self.running[p] = name
            try:
                await halt.wait()
                await asyncio.sleep(0.05)  # finishing the current batch
            finally:
                self.running.pop(p, None)

        return run

    def held_by(self, name: str) -> set[int]:
        return {p for p, owner in self.running.items() if owner == name}


async def until(condition: Callable[[], bool], wait: float = 10.0) -> None:
    deadline = time.monotonic() + wait
    while not condition():
        assert time.monotonic() < deadline, "condition never held"
        await asyncio.sleep(0.02)


async def test_two_workers_share_the_partitions_and_the_survivor_takes_all(redis: Redis) -> None:
    runners = Runners()
    a = PartitionLeases(redis, PARTITIONS, LEASE_SECONDS, runners.runner("a"))  # type: ignore[arg-type]
    b = PartitionLeases(redis, PARTITIONS, LEASE_SECONDS, runners.runner("b"))  # type: ignore[arg-type]
    stop_a, stop_b = asyncio.Event(), asyncio.Event()
    task_a = asyncio.create_task(a.run(stop_a))
    await until(lambda: len(runners.held_by("a")) == PARTITIONS)
    task_b = asyncio.create_task(b.run(stop_b))
    await until(lambda: len(runners.held_by("a")) == len(runners.held_by("b")) == PARTITIONS // 2)
    stop_a.set()
    await task_a
    await until(lambda: len(runners.held_by("b")) == PARTITIONS)
    stop_b.set()
    await task_b
    assert runners.overlaps == []
    assert await redis.zcard(keys.WORKERS) == 0
    assert [await redis.get(keys.lease(p)) for p in range(PARTITIONS)] == [None] * PARTITIONS


async def test_leases_outlive_a_redis_restart(tmp_path: Path) -> None:
    server = EmbeddedRedis(data_dir=tmp_path / "redis")
    redis = Redis.from_url(server.start(), decode_responses=True)
    runners = Runners()
    leases = PartitionLeases(redis, PARTITIONS, LEASE_SECONDS, runners.runner("a"))  # type: ignore[arg-type]
    stop = asyncio.Event()
    task = asyncio.create_task(leases.run(stop))
    try:
        await until(lambda: len(runners.held_by("a")) == PARTITIONS)
        server.stop()
        # nothing can be renewed: every partition stops before its lease could be someone else's
        await until(lambda: not runners.running, wait=LEASE_SECONDS * 3)
        assert not task.done()
        server.start()
        await until(lambda: len(runners.held_by("a")) == PARTITIONS)
        assert runners.overlaps == []
    finally:
        stop.set()
        await task
        await redis.aclose()
        server.stop()
