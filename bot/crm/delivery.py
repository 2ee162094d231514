"""Delivering the feed: every sink is a consumer group on every partition's event stream.

The holder of a partition's lease runs one `SinkReader` per sink on that partition's stream
(`Feed.run`, next to the partition's worker and sender). A reader works like the sender's dispatch
(`bot.pipeline.dispatch`): each entry joins its contact's queue and one task per queue delivers that
contact's events one after another, so a later event of a contact never overtakes an earlier one
that is still being retried, while other contacts go on. Sinks are independent: a receiver that
takes 10 s an answer, or is down for a day, holds up only its own group.

A failed delivery waits for the next step of the schedule (Svix's by default: immediately, 5 s,
5 min, 30 min, 2 h, 5 h, 10 h, 10 h), or the receiver's Retry-After if that is later. The attempt
count and the time of the next attempt are kept in Redis (`omni:wha:{p}`), so a new holder of the
partition goes on with the schedule rather than starting it again. After the last attempt — or at
once for a `Reject` — the event goes to the partition's dead letters (`omni:whdead:{p}`) in the same
MULTI that acknowledges it. A `Gone` (HTTP 410) disables the subscription; so does failing for
`disable_after_days` without one success. Both emit `omnihub.webhook.disabled`.

New entries are read at most every `READ_EVERY_SECONDS` (half a second), so that under load a read
brings a batch rather than the one event that has just arrived; an idle reader still blocks on the
stream and sees a new event at once, and a read that came back full is followed at once by the
next. Each read and each acknowledgement costs the same whatever it carries, and there is one
reader per partition and sink (32 of them with 16 partitions and two subscriptions): at 0.2 s reads
and 5 ms acknowledgements they took as much of the hub's CPU as the POSTs did, and the feed cost
the chat 17.5 % of its messages/s; at 0.5 s and 0.25 s, 9.9 % (tests/bench/events.py). A CRM does
not notice half a second. Only entries read again from the pending list can have attempts on
record to look up. Delivered entries are acknowledged in batches (one MULTI every
`ACK_EVERY_SECONDS`): a crash between a delivery and its acknowledgement delivers that event again,
with the same `webhook-id` — at-least-once, which is what Standard Webhooks receivers are built for.
Everything a reader holds is pending in Redis until then, so a SIGKILL loses nothing.

Streams are trimmed below what every active sink has finished and only past the retention, so
`omnihub events replay --since` can still find delivered events.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

from pydantic import ValidationError
from redis.asyncio import Redis
from redis.exceptions import ResponseError

from bot.context import keys
from bot.crm.events import CloudEvent
from bot.crm.sinks import Gone, Reject, Retry, Sink
from bot.pipeline.streams import Backoff, Entry, after, pause, stream_id
from bot.redis_server import REDIS_FAILURES

log = logging.getLogger(__name__)
BLOCK_MS = 500
ACK_EVERY_SECONDS = 0.25
READ_EVERY_SECONDS = 0.5
DEAD_CAP = 10_000
TRIM_EVERY_SECONDS = 5.0
OnGone = Callable[[Sink, str], Awaitable[None]]


@dataclass
class Held:
    entry_id: str
    event: CloudEvent | None  # None: not for this sink (or unreadable): acknowledged without a delivery
    only: str | None = None  # a redelivery meant for one sink (bot.crm.replay)
    attempts: int = 0
    next_at: float = 0.0  # epoch seconds


@dataclass
class Acks:
    """Finished entries waiting for the next batched acknowledgement."""

    ids: list[str] = field(default_factory=list)
    retried: list[str] = field(default_factory=list)  # their attempt records go too
    delivered: int = 0


class SinkReader:
    def __init__(self, redis: Redis, p: int, sink: Sink, schedule: Sequence[float], concurrency: int,
                 halt: asyncio.Event, on_gone: OnGone, disable_after: float) -> None:
        self.redis, self.p, self.sink, self.halt = redis, p, sink, halt
        self.schedule = list(schedule)
        self.slots = asyncio.Semaphore(concurrency)
        self.window = max(64, 8 * concurrency)
        self.on_gone, self.disable_after = on_gone, disable_after
        self.stream, self.group = keys.events(p), sink.name
        self.queues: dict[str, deque[Held]] = {}
        self.held: set[str] = set()
        self.acks = Acks()
        self.acked = asyncio.Event()
        self.room = asyncio.Event()
        self.last_read = 0.0
        self.backlog = False
        self.tasks: set[asyncio.Task[None]] = set()

    async def run(self) -> None:
        backoff, ready, cursor = Backoff(), False, "0"
        acker = asyncio.create_task(self._ack_loop(), name=f"acks {self.group} p{self.p}")
        try:
            while not self.halt.is_set():
                try:
                    if not ready:
                        await self._ensure_group()
                        ready = True
                    cursor = await self._read(cursor)
                    backoff.reset()
                except REDIS_FAILURES as exc:
                    ready = ready and "NOGROUP" not in str(exc)
                    cursor = "0"  # what was read and not finished is still pending
                    delay = backoff.next_delay()
                    log.warning("feed %s p%s: Redis error (%s); again in %.2f s", self.group, self.p, exc, delay)
                    await pause(self.halt, delay)
        finally:
            await asyncio.gather(*self.tasks, return_exceptions=True)
            self.acked.set()
            await acker
            with contextlib.suppress(*REDIS_FAILURES):
                await self._flush()

    async def _ensure_group(self) -> None:
        """The group exists from the subscription's creation; a Redis that lost it starts it again at 0."""
        try:
            await self.redis.xgroup_create(self.stream, self.group, id="0", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    async def _read(self, cursor: str) -> str:
        room = self.window - len(self.held)
        if room <= 0:
            self.room.clear()
            await pause(self.room, BLOCK_MS / 1000)
            return cursor
        pending, count = cursor != ">", min(room, 500)
        if not pending and not self.backlog:
            if (wait := self.last_read + READ_EVERY_SECONDS - time.monotonic()) > 0:
                await pause(self.halt, wait)
            self.last_read = time.monotonic()
        response = await self.redis.xreadgroup(self.group, f"p{self.p}", {self.stream: cursor}, count=count,
                                               block=None if pending else BLOCK_MS)
        entries: list[Entry] = response[0][1] if response else []  # type: ignore[index,assignment]
        self.backlog = not pending and len(entries) == count  # more is waiting: read again as soon as there is room
        await self._admit(entries, pending)
        if pending:
            return entries[-1][0] if entries else ">"
        return ">"

    async def _admit(self, entries: list[Entry], pending: bool) -> None:
        """`pending`: read again from the pending list; only those can have been tried before."""
        fresh = [(i, f) for i, f in entries if i not in self.held]
        attempts = await self._attempts([i for i, _ in fresh]) if fresh and pending else [None] * len(fresh)
        for (entry_id, fields), record in zip(fresh, attempts, strict=True):
            held = self._held(entry_id, fields, record)
            contact = fields.get("c", "") if fields else ""
            if held.event is None:
                self._finish(held)
                continue
            self.held.add(entry_id)
            if contact not in self.queues:
                self.queues[contact] = deque()
                task = asyncio.create_task(self._drain(contact), name=f"feed {self.group} p{self.p} {contact}")
                self.tasks.add(task)
                task.add_done_callback(self.tasks.discard)
            self.queues[contact].append(held)

    def _held(self, entry_id: str, fields: dict[str, str], record: str | None) -> Held:
        only = fields.get("only") if fields else None
        try:
            event = CloudEvent.read(fields["e"]) if fields else None
        except (KeyError, ValidationError):
            log.error("feed entry %s of p%s is not an event; skipped", entry_id, self.p)
            event = None
        if event is not None and ((only is not None and only != self.group) or not self.sink.wants(event.type)):
            event = None
        held = Held(entry_id, event, only)
        if record:
            n, _, next_at = record.partition(":")
            held.attempts, held.next_at = int(n), float(next_at or 0)
        return held

    async def _attempts(self, entry_ids: list[str]) -> list[str | None]:
        fields = [f"{self.group} {i}" for i in entry_ids]
        found = await self.redis.hmget(keys.delivery_attempts(self.p), fields)
        return [str(value) if value is not None else None for value in found]

    async def _drain(self, contact: str) -> None:
        queue = self.queues[contact]
        try:
            while queue and not self.halt.is_set():
                held = queue[0]
                if not await self._deliver(held):
                    return  # halted: still pending, for the next holder
                queue.popleft()
                self.held.discard(held.entry_id)
                self.room.set()
        finally:
            if not queue or self.halt.is_set():
                del self.queues[contact]

    async def _deliver(self, held: Held) -> bool:
        """Try until delivered, dead-lettered or halted; False only when halted."""
        assert held.event is not None
        while True:
            wait = held.next_at - time.time()
            if wait > 0:
                await pause(self.halt, wait)
            if self.halt.is_set():
                return False
            async with self.slots:
                try:
                    await self.sink.deliver(held.event)
                except Retry as exc:
                    failure: Exception = exc
                except (Reject, Gone) as exc:
                    failure = exc
                except Exception as exc:  # a bug in a sink must not stall the contact for good
                    log.exception("sink %s failed on %s", self.group, held.event.id)
                    failure = Retry(f"internal error: {exc!r}")
                else:
                    self._finish(held, delivered=True)
                    return True
            if not await self._failed(held, failure):
                return True

    async def _failed(self, held: Held, failure: Exception) -> bool:
        """Record a failed attempt; True when the event is to be tried again."""
        if isinstance(failure, Gone):
            await self.on_gone(self.sink, str(failure))
            self.halt.set()
            return True  # the loop sees the halt and leaves the entry pending
        held.attempts += 1
        if isinstance(failure, Reject) or held.attempts >= len(self.schedule):
            await self._with_redis(lambda: self._dead_letter(held, str(failure)))
            return False
        delay = max(self.schedule[held.attempts], getattr(failure, "after", None) or 0.0)
        held.next_at = time.time() + delay
        log.info("feed %s: %s failed (%s), attempt %s; next in %.0f s", self.group, held.entry_id, failure,
                 held.attempts, delay)
        await self._with_redis(lambda: self._note_failure(held))
        return True

    async def _note_failure(self, held: Held) -> None:
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.hset(keys.delivery_attempts(self.p), f"{self.group} {held.entry_id}",
                      f"{held.attempts}:{held.next_at:.3f}")
            pipe.hincrby(keys.delivery_counts(self.p), f"{self.group} retried", 1)
            pipe.hsetnx(keys.delivery_counts(self.p), f"{self.group} failing_since", f"{time.time():.0f}")
            pipe.hget(keys.delivery_counts(self.p), f"{self.group} failing_since")
            *_, since = await pipe.execute()
        if since and time.time() - float(since) > self.disable_after:
            await self.on_gone(self.sink, f"failing since {float(since):.0f} without one delivery")

    async def _dead_letter(self, held: Held, error: str) -> None:
        assert held.event is not None
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.xadd(keys.delivery_dead(self.p), {"sink": self.group, "e": held.event.body(), "c": held.event.subject,
                                                   "error": error[:500], "attempts": str(held.attempts),
                                                   "entry": held.entry_id}, maxlen=DEAD_CAP, approximate=True)
            pipe.xack(self.stream, self.group, held.entry_id)
            pipe.hdel(keys.delivery_attempts(self.p), f"{self.group} {held.entry_id}")
            pipe.hincrby(keys.delivery_counts(self.p), f"{self.group} dead", 1)
            await pipe.execute()
        log.error("feed %s: %s dead-lettered after %s attempt(s): %s", self.group, held.event.id, held.attempts, error)

    async def _with_redis(self, step: Callable[[], Awaitable[None]]) -> None:
        backoff = Backoff()
        while True:
            try:
                await step()
                return
            except REDIS_FAILURES as exc:
                log.warning("feed %s waits for Redis (%s)", self.group, exc)
                await asyncio.sleep(backoff.next_delay())

    def _finish(self, held: Held, delivered: bool = False) -> None:
        self.acks.ids.append(held.entry_id)
        if held.attempts:
            self.acks.retried.append(held.entry_id)
        self.acks.delivered += delivered
        self.acked.set()

    async def _ack_loop(self) -> None:
        """Acknowledge finished entries in batches; kept until Redis takes them."""
        backoff = Backoff()
        while not self.halt.is_set():
            await self.acked.wait()
            self.acked.clear()
            await asyncio.sleep(ACK_EVERY_SECONDS)
            try:
                await self._flush()
                backoff.reset()
            except REDIS_FAILURES as exc:
                log.warning("feed %s: acknowledgements wait for Redis (%s)", self.group, exc)
                await pause(self.halt, backoff.next_delay())
                self.acked.set()

    async def _flush(self) -> None:
        acks, self.acks = self.acks, Acks()
        if not acks.ids:
            return
        try:
            async with self.redis.pipeline(transaction=True) as pipe:
                pipe.xack(self.stream, self.group, *acks.ids)
                if acks.retried:
                    pipe.hdel(keys.delivery_attempts(self.p), *(f"{self.group} {i}" for i in acks.retried))
                if acks.delivered:
                    pipe.hincrby(keys.delivery_counts(self.p), f"{self.group} delivered", acks.delivered)
                    pipe.hdel(keys.delivery_counts(self.p), f"{self.group} failing_since")
                await pipe.execute()
        except BaseException:
            self.acks.ids[:0], self.acks.retried[:0] = acks.ids, acks.retried
            self.acks.delivered += acks.delivered
            raise


async def trim(redis: Redis, p: int, sinks: set[str], retention_seconds: float) -> None:
    """Drop entries older than the retention that every active sink has finished."""
    stream = keys.events(p)
    cut = f"{int((time.time() - retention_seconds) * 1000)}-0"
    floors = [cut]
    for group in await redis.xinfo_groups(stream):
        if group["name"] not in sinks:
            continue  # a disabled or deleted subscription's group holds nothing back
        if group["pending"]:
            summary = await redis.xpending(stream, group["name"])
            floors.append(summary["min"] or after(group["last-delivered-id"]))  # all acknowledged since
        elif group["last-delivered-id"] not in (None, "0-0"):
            floors.append(after(group["last-delivered-id"]))
        else:
            return  # a group that has read nothing yet: keep everything
    await redis.xtrim(stream, minid=min(floors, key=stream_id), approximate=True)
