"""Who works on which partition: leases in Redis, shared fairly among the live workers.

Order per conversation follows from one rule: a partition is worked on by at most one worker at a
time. Each worker heartbeats into `omni:workers`, aims at ceil(partitions / live workers) leases,
renews what it holds, takes free ones and gives back extras. A worker killed with SIGKILL stops
renewing; its leases expire after `lease_seconds` and the survivors take them over — together with
the unacknowledged entries, because the stream consumer is named after the partition, not the worker.

While Redis is away nothing can be renewed, and after `lease_seconds` another worker may hold the
partition once Redis is back; so a partition whose lease was last renewed longer ago than that is
stopped here, without waiting to hear it was lost. Rounds go on (with backoff) until Redis answers,
and then the leases are taken again as on a fresh start.
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
from redis.exceptions import NoScriptError

from bot.context import keys
from bot.pipeline.streams import Backoff
from bot.redis_server import REDIS_FAILURES

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
        self.renewed: dict[int, float] = {}  # partition -> monotonic time its lease was last confirmed
        self.stopping: dict[int, asyncio.Task[None]] = {}  # told to stop, maybe still finishing a batch
        self._renew = redis.register_script(_RENEW)
        self._release = redis.register_script(_RELEASE)

    async def run(self, stop: asyncio.Event) -> None:
        backoff = Backoff(first=self.lease_ms / 3000, ceiling=self.lease_ms / 3000)
        try:
            while not stop.is_set():
                wait = self.lease_ms / 3000
                try:
                    await self.rebalance()
                    backoff.reset()
                except REDIS_FAILURES as exc:  # Redis away: keep trying; stop what may have lapsed meanwhile
                    log.warning("lease round failed: %s", exc)
                    self.drop_lapsed()
                    wait = backoff.next_delay()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), wait)
        finally:
            with contextlib.suppress(*REDIS_FAILURES):
                await self.release_all()

    async def rebalance(self) -> None:
        now = time.time()
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.zadd(keys.WORKERS, {self.me: now + self.lease_ms / 1000})
            pipe.zremrangebyscore(keys.WORKERS, "-inf", now)
            pipe.zcard(keys.WORKERS)
            *_, live = await pipe.execute()
        target = math.ceil(self.partitions / max(int(live), 1))
        held = list(self.held)
        async with self.redis.pipeline(transaction=False) as pipe:  # one round trip for every renewal
            for p in held:
                pipe.execute_command("EVALSHA", self._renew.sha, 1, keys.lease(p), self.me, self.lease_ms)
            answers = await pipe.execute(raise_on_error=False) if held else []
        if any(isinstance(a, NoScriptError) for a in answers):  # Redis restarted and forgot the script
            answers = [await self._renew(keys=[keys.lease(p)], args=[self.me, self.lease_ms]) for p in held]
        for p, renewed in zip(held, answers, strict=True):
            if isinstance(renewed, Exception):
                raise renewed
            task, halt = self.held[p]
            if not renewed:  # someone else has it now: stop at once, nothing left to give back
                log.warning("lease of partition %s lost", p)
                self._stop(p)
                continue
            self.renewed[p] = time.monotonic()
            if task.done():  # stopped (handed over, or failed): only now may another worker take it
                del self.held[p]
                self._report(p, task)
                await self._release(keys=[keys.lease(p)], args=[self.me])
        running = [p for p, (_, halt) in self.held.items() if not halt.is_set()]
        for p in sorted(running, reverse=True)[: max(len(running) - target, 0)]:
            self.held[p][1].set()  # hand over after the current batch; the lease is kept until then
        self.stopping = {p: task for p, task in self.stopping.items() if not task.done()}
        for p in range(self.partitions):
            if len(self.held) >= target:
                break
            if p in self.held or p in self.stopping:
                continue
            if await self.redis.set(keys.lease(p), self.me, nx=True, px=self.lease_ms):
                self.renewed[p] = time.monotonic()
                halt = asyncio.Event()
                self.held[p] = (asyncio.create_task(self.runner(p, halt), name=f"partition-{p}"), halt)

    def drop_lapsed(self) -> None:
        """Stop every partition whose lease may have expired: another worker may own it by now."""
        deadline = time.monotonic() - self.lease_ms / 1000 * 0.8  # keep a margin for clock rates
        for p in [p for p in self.held if self.renewed.get(p, 0.0) < deadline]:
            log.warning("lease of partition %s not renewed in time; stopping it", p)
            self._stop(p)

    def _stop(self, p: int) -> None:
        """Stop partition `p` without giving its lease back (it is gone, or may be)."""
        task, halt = self.held.pop(p)
        halt.set()
        self.stopping[p] = task

    @staticmethod
    def _report(p: int, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None:
            log.error("partition %s stopped on an error", p, exc_info=task.exception())

    async def release_all(self) -> None:
        """Stop every partition (all at once), then give their leases back."""
        for _, halt in self.held.values():
            halt.set()
        tasks = [task for task, _ in self.held.values()] + list(self.stopping.values())
        await asyncio.gather(*tasks, return_exceptions=True)
        for p in list(self.held):
            await self._release(keys=[keys.lease(p)], args=[self.me])
        self.held.clear()
        await self.redis.zrem(keys.WORKERS, self.me)
