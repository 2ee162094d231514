"""Reading one partition's outbound lanes contact by contact, so that a slow chat holds up only itself.

A partition has two lanes: live (`omni:out:{p}`: bot and agent replies) and bulk (`omni:bulk:{p}`:
campaigns). The loop reads without waiting for sends: each entry joins its contact's queue on its
lane, and each queue has one task sending its messages one after another — a contact's message n+1
never leaves before n's outcome is recorded. A contact waiting out a 429 or a backoff waits alone; the
loop keeps reading and the other contacts keep going. (`streams.consume` hands out whole batches, so
one throttled chat used to hold up its batch and everything read after it.)

Both lanes are read in one blocking read (bulk only while fewer than a batch of its entries are
held). Bulk sends through its own, smaller pool of slots and takes rate-limit tokens only above the
reserve (`bot.pipeline.ratelimit`): it cannot delay a live reply. (Reading live alone first cost a
second round trip per read, most of them empty.) Entries held in memory are bounded (`window`);
beyond it the loop stops reading until sends drain. Everything held is still pending in Redis: the
sender acknowledges an entry only with its outcome, so after a crash the next owner reads the rest
again, first.

Redis going away is waited out with jittered backoff; a consumer group the server lost (NOGROUP) is
created again.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from pydantic import ValidationError
from redis.asyncio import Redis

from bot.context import keys
from bot.models import OutboundMessage
from bot.pipeline.streams import TRIM_EVERY_SECONDS, Backoff, Entry, ensure_group, pause, trim_below_pending
from bot.redis_server import REDIS_FAILURES

if TYPE_CHECKING:
    from bot.pipeline.sender import Sender

log = logging.getLogger(__name__)
Lane = Literal["live", "bulk"]
BULK_SLOTS_SHARE = 8  # bulk gets 1/8 of the partition's send slots (at least one)
BLOCK_MS = 500


def lane_stream(message: OutboundMessage, p: int) -> str:
    """The stream a message is queued on: campaigns go to the bulk lane, everything else live."""
    return keys.bulk(p) if message.bulk else keys.outbound(p)


@dataclass(frozen=True)
class Held:
    """An entry read and not yet acknowledged."""

    stream: str
    entry_id: str
    message: OutboundMessage
    partition: int


class Dispatch:
    def __init__(self, redis: Redis, p: int, sender: Sender, batch: int, concurrency: int, halt: asyncio.Event):
        self.redis, self.sender, self.batch, self.halt = redis, sender, batch, halt
        self.p, self.consumer = p, f"p{p}"
        self.streams: dict[Lane, str] = {"live": keys.outbound(p), "bulk": keys.bulk(p)}
        self.slots: dict[Lane, asyncio.Semaphore] = {
            "live": asyncio.Semaphore(concurrency),
            "bulk": asyncio.Semaphore(max(1, concurrency // BULK_SLOTS_SHARE)),
        }
        self.window = 4 * max(batch, concurrency)
        self.queues: dict[tuple[Lane, str], deque[Held]] = {}
        self.held: dict[Lane, set[str]] = {"live": set(), "bulk": set()}
        self.tasks: set[asyncio.Task[None]] = set()
        self.drained = asyncio.Event()

    async def run(self) -> None:
        backoff = Backoff()
        groups_ready = False
        cursors: dict[Lane, str | None] = {"live": "0", "bulk": "0"}  # pending entries first
        last_trim = time.monotonic()
        try:
            while not self.halt.is_set():
                try:
                    if not groups_ready:
                        for stream in self.streams.values():
                            await ensure_group(self.redis, stream)
                        groups_ready = True
                    await self._read(cursors)
                    if time.monotonic() - last_trim > TRIM_EVERY_SECONDS:
                        last_trim = time.monotonic()
                        for stream in self.streams.values():
                            await trim_below_pending(self.redis, stream)
                    backoff.reset()
                except REDIS_FAILURES as exc:
                    if "NOGROUP" in str(exc):
                        groups_ready = False
                    cursors = {"live": "0", "bulk": "0"}  # what was read and not finished is still pending
                    delay = backoff.next_delay()
                    log.warning("%s: Redis error (%s); reading again in %.2f s", self.consumer, exc, delay)
                    await pause(self.halt, delay)
        finally:
            await asyncio.gather(*self.tasks, return_exceptions=True)

    async def _read(self, cursors: dict[Lane, str | None]) -> None:
        room = min(self.batch, self.window - len(self.held["live"]) - len(self.held["bulk"]))
        if room <= 0:
            self.drained.clear()
            await pause(self.drained, BLOCK_MS / 1000)  # or until sends make room
            return
        backlog = {lane: cursor for lane, cursor in cursors.items() if cursor is not None}
        if backlog:  # page through the pending lists, oldest first
            for lane, cursor in backlog.items():
                read = await self._xread({self.streams[lane]: cursor}, max(1, room // len(backlog)), None)
                entries = read[0][1] if read else []
                cursors[lane] = entries[-1][0] if entries else None  # the next page starts after it
                await self._admit(lane, entries)
            return
        # one read of both lanes (live admitted first): bulk entries read with live ones wait for
        # bulk's own slots and tokens (see the module's docstring), so they cannot hold up a live reply
        wanted = {self.streams["live"]: ">"}
        if len(self.held["bulk"]) < self.batch:
            wanted[self.streams["bulk"]] = ">"
        for stream, entries in await self._xread(wanted, room, BLOCK_MS):
            await self._admit("live" if stream == self.streams["live"] else "bulk", entries)

    async def _xread(self, streams: dict[str, str], count: int, block: int | None) -> list[tuple[str, list[Entry]]]:
        response: Any = await self.redis.xreadgroup(keys.GROUP, self.consumer, streams,  # type: ignore[arg-type]
                                                    count=count, block=block)
        return [(stream, entries) for stream, entries in response or [] if entries]

    async def _admit(self, lane: Lane, entries: list[Entry]) -> None:
        """Queue each entry behind its contact's earlier ones; acknowledge the ones nobody can send."""
        stream, held, unsendable = self.streams[lane], self.held[lane], []
        for entry_id, fields in entries:
            if entry_id in held:  # a pending entry read again while still queued here
                continue
            try:
                message = OutboundMessage.model_validate_json(fields["m"])
            except (KeyError, ValidationError) as exc:  # trimmed away, deleted, or not a message at all
                if fields:
                    log.error("outbound entry %s on %s is not a message, dropped: %s", entry_id, stream, exc)
                unsendable.append(entry_id)
                continue
            held.add(entry_id)
            key = (lane, message.contact_id)
            if key not in self.queues:
                self.queues[key] = deque()
                task = asyncio.create_task(self._drain(key), name=f"send {self.consumer} {key}")
                self.tasks.add(task)
                task.add_done_callback(self.tasks.discard)
            self.queues[key].append(Held(stream, entry_id, message, self.p))
        if unsendable:
            await self.redis.xack(stream, keys.GROUP, *unsendable)

    async def _drain(self, key: tuple[Lane, str]) -> None:
        """Send one contact's queue in order; stop when it is empty or the partition is handed over."""
        lane, queue = key[0], self.queues[key]
        try:
            while queue and not self.halt.is_set():
                held = queue[0]
                if not await self.sender.send(held, self.slots[lane], self.halt, bulk=lane == "bulk"):
                    return  # halted: the entry stays pending for the next owner
                queue.popleft()
                self.held[lane].discard(held.entry_id)
                self.drained.set()
        finally:
            if not queue or self.halt.is_set():
                del self.queues[key]
