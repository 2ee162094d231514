"""Who works on which partition: leases in Redis, shared fairly among the live workers.

Order per conversation follows from one rule: a partition is worked on by at most one worker at a
time. Each worker heartbeats into `omni:workers`, aims at ceil(partitions / live workers) leases,
renews what it holds, takes free ones and gives back extras. A worker killed with SIGKILL stops
renewing; its leases expire after `lease_seconds` and the survivors take them over — together with
the unacknowledged entries, because the stream consumer is named after the partition, not the worker.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import socket
import time
from collections.abc import Callable, Coroutine
from typing import Any

from redis.asyncio import Redis

from bot.context import keys

log = logging.getLogger(__name__)

_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""

PartitionRunner = Callable[[int, asyncio.Event], Coroutine[Any, Any, None]]


class PartitionLeases:
    """Runs `runner(p, stop)` for every partition this process holds, and stops it when the lease goes."""

    def __init__(self, redis: Redis, partitions: int, lease_seconds: float, runner: PartitionRunner) -> None:
        self.redis = redis
        self.partitions = partitions
        self.lease_ms = int(lease_seconds * 1000)
        self.runner = runner
        self.me = f"{socket.gethostname()}:{os.getpid()}:{id(self):x}"
        self.held: dict[int, tuple[asyncio.Task[None], asyncio.Event]] = {}
        self._renew = redis.register_script(_RENEW)
        self._release = redis.register_script(_RELEASE)

    async def run(self, stop: asyncio.Event) -> None:
        try:
            while not stop.is_set():
                try:
                    await self.rebalance()
                except (ConnectionError, OSError) as exc:  # Redis away: keep trying, leases will lapse
                    log.warning("lease round failed: %s", exc)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), self.lease_ms / 3000)
        finally:
            await self.release_all()

    async def rebalance(self) -> None:
        now = time.time()
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.zadd(keys.WORKERS, {self.me: now + self.lease_ms / 1000})
            pipe.zremrangebyscore(keys.WORKERS, "-inf", now)
            pipe.zcard(keys.WORKERS)
            *_, live = await pipe.execute()
        target = math.ceil(self.partitions / max(int(live), 1))
        for p in list(self.held):
            task, _ = self.held[p]
            if task.done() or not await self._renew(keys=[keys.lease(p)], args=[self.me, self.lease_ms]):
                await self._drop(p)
        while len(self.held) > target:
            await self._drop(max(self.held), release=True)
        for p in range(self.partitions):
            if len(self.held) >= target:
                break
            if p not in self.held and await self.redis.set(keys.lease(p), self.me, nx=True, px=self.lease_ms):
                halt = asyncio.Event()
                self.held[p] = (asyncio.create_task(self.runner(p, halt), name=f"partition-{p}"), halt)

    async def _drop(self, p: int, release: bool = False) -> None:
        task, halt = self.held.pop(p)
        halt.set()
        with contextlib.suppress(asyncio.CancelledError):
            try:
                await asyncio.wait_for(task, self.lease_ms / 1000)
            except TimeoutError:
                log.warning("partition %s did not stop in time", p)
            except Exception:
                log.exception("partition %s failed", p)
        if release:
            await self._release(keys=[keys.lease(p)], args=[self.me])

    async def release_all(self) -> None:
        for p in list(self.held):
            await self._drop(p, release=True)
        await self.redis.zrem(keys.WORKERS, self.me)
