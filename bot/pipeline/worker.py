"""The worker side of a partition: take inbound entries in order, apply them, hand replies to the sender.

An entry is a customer event (field `e`) or a contact-addressed command (field `k`, see
`bot.pipeline.commands`). Per entry: load the contact, run the turn or the command, save its changes
(one MULTI on the contact's slot). Per batch: append the replies to the outbound stream and
acknowledge the inbound entries (one MULTI on the partition's slot). If the process dies between the
two, the replayed entry is recognised by the conversation's `last` field and its replies are rebuilt
from the history instead of being answered twice. Contacts of one batch run concurrently; the entries
of one contact strictly one after another.

A partition has two inbound lanes (`bot.pipeline.ingest.bulk_lane`): live — the customers' messages
and the commands of people and the CRM — and bulk — receipts and campaign steps, which a campaign
brings by the thousand. Each lane has its own loop; a contact's entries still go one at a time
across both (`ContactLocks`), and a bulk batch waits, up to `BULK_YIELD_SECONDS`, while a live batch
is being worked anywhere in the process (`LiveFirst`). Before the lanes, a customer's message during
a 10,000-recipient campaign waited behind its steps and receipts: p99 6 s instead of 14 ms
(tests/bench/campaign.py). Each lane records its last applied entry in its own conversation field
(`last`, `lastb`): the ids of two streams are not one order, so replays are recognised per lane.

An entry that fails waits and is tried again, and the contact's later entries wait behind it (they
stay pending, so a crash loses none of them). The attempt count is kept in Redis (`omni:att:{p}`), so
a new owner of the partition goes on counting. After `attempts` failures — at once for an entry that
cannot even be read — the entry goes to the partition's dead-letter stream with its error
(`bot.pipeline.dead_letters`) and the contact moves on. A `RedisError` is not the entry's fault: it
propagates, nothing is counted, and the stream loop waits for Redis.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field

import orjson
from pydantic import ValidationError
from redis.asyncio import Redis

from bot.campaigns.steps import Reach, apply_step
from bot.campaigns.store import Campaigns
from bot.context import keys
from bot.context.history import Delivery
from bot.context.linking import Linker
from bot.context.store import LAST_BULK, Changes, ContextStore, Snapshot
from bot.crm import outbox
from bot.crm.derive import events_of, status_event
from bot.crm.events import CloudEvent
from bot.handoff import live
from bot.models import EventKind, InboundEvent, OutboundMessage, Reply
from bot.pipeline import dead_letters
from bot.pipeline.commands import COMMAND, AnyCommand, CampaignStep, CommandRefused, UpdateContact, apply
from bot.pipeline.dispatch import lane_stream
from bot.pipeline.streams import Entry, consume, pause, stream_id
from bot.pipeline.turns import TurnHandler
from bot.redis_server import REDIS_FAILURES

log = logging.getLogger(__name__)
FIRST_RETRY_SECONDS = 0.5
MAX_RETRY_SECONDS = 5.0
BULK_YIELD_SECONDS = 0.05  # the longest a bulk batch waits for live work to pause
LIVE_DELAY_SECONDS = 0.02  # a live entry read later than this after it was appended: bulk backs off
LOOP_LAG_SECONDS = 0.002  # and so it does when the event loop takes longer than this to come back to it
LATE_MEMORY_SECONDS = 1.0
MIN_BULK_PAUSE_SECONDS, MAX_BULK_PAUSE_SECONDS = 0.005, 1.0
BULK_BATCH_SHARE = 4  # bulk batches are a quarter of the live batch: short, so live work slots in between


OnQueued = Callable[[str, str, str | None, str], Awaitable[None]]


class Unreadable(Exception):
    """An entry whose body is not an event or a command this version knows: dead-lettered at once."""


@dataclass(frozen=True)
class Lane:
    """One of a partition's inbound streams, with its attempt counts and its `last` field."""

    stream: str
    attempts: str
    last: str
    bulk: bool

    def source(self, entry_id: str) -> str:
        """The entry's name among both of the partition's streams: an id is unique only within its
        stream, and a receipt and a message appended in the same millisecond both get `<ms>-0`."""
        return f"bulk:{entry_id}" if self.bulk else entry_id


def lanes(p: int) -> tuple[Lane, Lane]:
    return (Lane(keys.inbound(p), keys.attempts(p), "last", bulk=False),
            Lane(keys.inbound_bulk(p), keys.bulk_attempts(p), LAST_BULK, bulk=True))


class LiveFirst:
    """The process's live work comes first. A bulk batch waits while a live batch is in progress (up
    to `BULK_YIELD_SECONDS`), and it backs off while the process is busy: when live entries wait
    longer than `LIVE_DELAY_SECONDS` to be read, or when the event loop takes longer than
    `LOOP_LAG_SECONDS` to come back to the bulk loop (its other work — or the machine's — is queueing).
    The back-off doubles (up to `MAX_BULK_PAUSE_SECONDS`) while busy and halves once it is not, so a
    campaign takes what the live traffic leaves and no more."""

    def __init__(self) -> None:
        self.busy = 0
        self.idle = asyncio.Event()
        self.idle.set()
        self.pause = 0.0
        self.late_until = 0.0  # a late live entry counts as "busy" for a second (live traffic may stop)
        self.gate = asyncio.Lock()  # a pause holds it: at most one bulk batch per pause in the process

    @contextlib.contextmanager
    def live(self, oldest_entry_id: str) -> Iterator[None]:
        if time.time() - stream_id(oldest_entry_id)[0] / 1000 > LIVE_DELAY_SECONDS:
            self.late_until = time.monotonic() + LATE_MEMORY_SECONDS
        self.busy += 1
        self.idle.clear()
        try:
            yield
        finally:
            self.busy -= 1
            if not self.busy:
                self.idle.set()

    async def bulk_turn(self, halt: asyncio.Event) -> None:
        started = time.perf_counter()
        await asyncio.sleep(0)  # back once everything ready to run before us has run
        busy = time.monotonic() < self.late_until or time.perf_counter() - started > LOOP_LAG_SECONDS
        self.pause = min(MAX_BULK_PAUSE_SECONDS, max(MIN_BULK_PAUSE_SECONDS, self.pause * 2)) if busy \
            else (self.pause / 2 if self.pause > MIN_BULK_PAUSE_SECONDS else 0.0)
        if self.pause:
            async with self.gate:
                await pause(halt, self.pause)
        if not self.idle.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.idle.wait(), BULK_YIELD_SECONDS)


class ContactLocks:
    """One contact's entries one at a time, across the partition's two lanes."""

    def __init__(self) -> None:
        self._held: dict[str, tuple[asyncio.Lock, int]] = {}

    @contextlib.asynccontextmanager
    async def hold(self, cid: str) -> AsyncIterator[None]:
        lock, users = self._held[cid] if cid in self._held else (asyncio.Lock(), 0)
        self._held[cid] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._held[cid]
            if users == 1:
                del self._held[cid]
            else:
                self._held[cid] = (lock, users - 1)


@dataclass(frozen=True)
class Waiting:
    """A contact held back: its oldest pending entry failed and may be tried again at `retry_at`."""

    entry_id: str
    retry_at: float


@dataclass
class Produced:
    """What finishing one entry queues in the partition's MULTI: replies to send, events for the feed."""

    outbound: list[OutboundMessage] = field(default_factory=list)
    events: list[CloudEvent] = field(default_factory=list)
    due: list[tuple[str, float]] = field(default_factory=list)  # campaign steps to schedule (bot.campaigns)

    def __iadd__(self, other: Produced) -> Produced:
        self.outbound += other.outbound
        self.events += other.events
        self.due += other.due
        return self


@dataclass
class ContactResult:
    done: list[str] = field(default_factory=list)
    produced: Produced = field(default_factory=Produced)
    dead: list[dead_letters.DeadLetter] = field(default_factory=list)


class Worker:
    def __init__(
        self, redis: Redis, store: ContextStore, turns: TurnHandler, linker: Linker, batch: int, attempts: int = 3,
        on_queued: OnQueued | None = None, campaigns: Campaigns | None = None, reach: Reach | None = None,
    ) -> None:
        """`on_queued(cid, conversation id, team, entry id)`: a conversation entered the queue (to tell
        the customer their place, bot.handoff.queue_notices). `campaigns` and `reach`: what campaign
        steps need (bot.campaigns.steps); without them a step is refused."""
        self.campaigns, self.reach = campaigns, reach
        self.on_queued = on_queued
        self.redis = redis
        self.store = store
        self.turns = turns
        self.linker = linker
        self.batch = batch
        self.attempts = attempts
        self.live_first = LiveFirst()
        self.contacts = ContactLocks()

    async def run(self, p: int, halt: asyncio.Event) -> None:
        async with asyncio.TaskGroup() as group:
            for lane in lanes(p):
                group.create_task(self._lane(p, lane, halt), name=f"p{p} {lane.stream}")

    async def _lane(self, p: int, lane: Lane, halt: asyncio.Event) -> None:
        waiting: dict[str, Waiting] = {}  # this owner's view; a new owner rebuilds it from the pending list
        batch = max(1, self.batch // BULK_BATCH_SHARE) if lane.bulk else self.batch
        await consume(self.redis, lane.stream, f"p{p}", batch, halt,
                      lambda entries: self._batch(p, lane, entries, waiting, halt), retry_seconds=FIRST_RETRY_SECONDS,
                      left_pending=lambda: bool(waiting))

    async def _batch(
        self, p: int, lane: Lane, entries: list[Entry], waiting: dict[str, Waiting], halt: asyncio.Event
    ) -> None:
        if lane.bulk:
            await self.live_first.bulk_turn(halt)
            if not halt.is_set():  # handed over while it waited: the entries stay pending for the next owner
                await self._work(p, lane, entries, waiting)
        else:
            with self.live_first.live(entries[0][0]):
                await self._work(p, lane, entries, waiting)

    async def _work(self, p: int, lane: Lane, entries: list[Entry], waiting: dict[str, Waiting]) -> None:
        by_contact: dict[str, list[Entry]] = defaultdict(list)
        for entry in entries:
            by_contact[entry[1].get("c", "")].append(entry)
        # A TaskGroup, not gather: when one contact's work fails (Redis away), the others are cancelled
        # too. Left running, they would go on while the stream loop reads their entries again — two
        # turns of one contact at once.
        try:
            async with asyncio.TaskGroup() as group:
                tasks = [group.create_task(self._contact(p, lane, cid, items, waiting))
                         for cid, items in by_contact.items()]
        except ExceptionGroup as failed:  # the stream loop judges the first failure (a Redis one: it waits)
            raise failed.exceptions[0] from None
        results = [task.result() for task in tasks]
        done = [entry_id for result in results for entry_id in result.done]
        dead = [letter for result in results for letter in result.dead]
        async with self.redis.pipeline(transaction=True) as pipe:
            for message in (m for result in results for m in result.produced.outbound):
                pipe.xadd(lane_stream(message, p), {"m": message.model_dump_json(exclude_defaults=True)})
            outbox.append(pipe, p, (e for result in results for e in result.produced.events))
            if due := {member: at for result in results for member, at in result.produced.due}:
                pipe.zadd(keys.campaign_due(p), due)
            for letter in dead:
                dead_letters.stage(pipe, p, letter)
            if finished := done + [letter.entry_id for letter in dead]:
                pipe.xack(lane.stream, keys.GROUP, *finished)
                pipe.hdel(lane.attempts, *finished)  # O(1) per id when nothing failed
            await pipe.execute()

    async def _contact(
        self, p: int, lane: Lane, cid: str, entries: list[Entry], waiting: dict[str, Waiting]
    ) -> ContactResult:
        """One contact's entries in order. A waiting contact is skipped until its failed entry comes
        round again (from the pending list) and its retry time has passed."""
        result = ContactResult()
        held = waiting.get(cid)
        if held is not None:
            if entries[0][0] != held.entry_id or time.monotonic() < held.retry_at:
                return result  # they stay pending behind the failed one
            del waiting[cid]
        async with self.contacts.hold(cid):
            await self._in_order(lane, cid, entries, waiting, result)
        return result

    async def _in_order(
        self, lane: Lane, cid: str, entries: list[Entry], waiting: dict[str, Waiting], result: ContactResult
    ) -> None:
        for entry_id, fields in entries:
            try:
                result.produced += await self._entry(lane, cid, entry_id, fields)
            except REDIS_FAILURES:
                raise
            except Exception as exc:
                failures = await self.redis.hincrby(lane.attempts, entry_id, 1)
                unreadable = isinstance(exc, Unreadable | CommandRefused)  # no retry can help those
                if failures < self.attempts and not unreadable:
                    delay = min(FIRST_RETRY_SECONDS * 2 ** (failures - 1), MAX_RETRY_SECONDS)
                    waiting[cid] = Waiting(entry_id, time.monotonic() + delay)
                    log.exception("entry %s of contact %s failed (attempt %s); retrying in %.1f s",
                                  entry_id, cid, failures, delay)
                    break
                log.error("entry %s of contact %s dead-lettered after %s attempt(s)", entry_id, cid, failures,
                          exc_info=exc)
                result.dead.append(dead_letters.DeadLetter.of(entry_id, fields, exc, failures))
                continue
            result.done.append(entry_id)

    async def _entry(self, lane: Lane, cid: str, entry_id: str, fields: dict[str, str]) -> Produced:
        if "k" in fields:
            return await self._command(lane, cid, entry_id, fields["k"])
        try:
            event = InboundEvent.model_validate_json(fields["e"])
        except (KeyError, ValidationError) as exc:
            raise Unreadable(f"not an inbound event: {exc}") from exc
        snapshot = await self.store.load(cid)
        if event.kind is EventKind.status and event.status_of:  # idempotent: a replay simply does it again
            return await self._status(lane, snapshot, event, entry_id)
        last = snapshot.conversation.get(lane.last)
        if last and stream_id(entry_id) <= stream_id(last):
            return await self._replay(lane, cid, entry_id, event.user_id)
        prepared = await self.linker.prepare(cid, snapshot, event, lane.source(entry_id))
        if prepared is None:  # the contact was merged or erased since: the event went to its new owner
            return Produced()
        outcome = await self.turns.handle(prepared.snapshot, event, entry_id, prepared.notice)
        in_lane(lane, prepared.snapshot, outcome.changes, entry_id)
        existed, merged_into = await self.store.commit(cid, outcome.changes)
        await self.linker.settle(cid, prepared.snapshot, existed, merged_into)
        moved = outcome.changes.mode is not None and outcome.changes.mode[0] != ""  # not a new conversation
        people = prepared.snapshot.mode != "bot" or moved
        if people and event.kind is EventKind.message:  # a console shows it, or the queue changed
            await self._tell_people(prepared.snapshot, outcome.changes, ["message", "mode"], entry_id)
        return Produced(outcome.outbound, outcome.changes.events)

    async def _status(self, lane: Lane, snapshot: Snapshot, event: InboundEvent, entry_id: str) -> Produced:
        """A provider's receipt: onto the message's history entry, to the console's ticks, into the feed."""
        prepared = await self.linker.prepare(snapshot.cid, snapshot, event, lane.source(entry_id))
        if prepared is None:  # the contact was merged since: the receipt went to its new owner
            return Produced()
        snapshot = prepared.snapshot
        delivery = Delivery(status=str(event.status), error=event.error)
        found = await self.store.update_history(snapshot.cid, ("pid", str(event.status_of)), delivery.stored())
        if snapshot.mode != "bot":  # the console's delivered/read ticks
            await self._tell_people(snapshot, Changes(), ["status"], entry_id)
        receipt = status_event(snapshot.cid, event, lane.source(entry_id), found) if found else None
        return Produced(events=[receipt] if receipt else [])

    async def _command(self, lane: Lane, cid: str, entry_id: str, body: str) -> Produced:
        try:
            command = COMMAND.validate_json(body)
        except ValidationError as exc:
            raise Unreadable(f"not a command: {exc}") from exc
        snapshot = await self.store.load(cid)
        last = snapshot.conversation.get(lane.last)
        if last and stream_id(entry_id) <= stream_id(last):
            return await self._replay(lane, cid, entry_id, snapshot.conversation.get("uid", ""))
        creates = isinstance(command, UpdateContact) and command.create
        if "merged_into" in snapshot.profile or not (snapshot.profile or creates):
            await self._answer(cid, command.id, "the contact was erased or merged into another")
            raise CommandRefused("the contact was erased or merged into another")
        if isinstance(command, CampaignStep):
            return await self._campaign_step(lane, snapshot, command, entry_id)
        outcome = apply(snapshot, command, entry_id, self.turns.say, self.turns.default_team)
        in_lane(lane, snapshot, outcome.changes, entry_id, command)
        await self.store.commit(cid, outcome.changes)
        await self._answer(cid, command.id, outcome.refusal)
        if outcome.events:
            await self._tell_people(snapshot, outcome.changes, outcome.events, entry_id)
        return Produced(outcome.outbound, outcome.changes.events)

    async def _campaign_step(self, lane: Lane, snapshot: Snapshot, command: CampaignStep, entry_id: str) -> Produced:
        campaign = await self.campaigns.cached(command.campaign_id) if self.campaigns and self.reach else None
        if campaign is None or self.reach is None:
            raise CommandRefused(f"no campaign {command.campaign_id!r} (or campaigns are off in this worker)")
        history = await self.store.recent_history(snapshot.cid, 50) if command.check else []
        outcome = apply_step(snapshot, campaign, command.step, command.check, entry_id, history, self.reach)
        in_lane(lane, snapshot, outcome.changes, entry_id, command)
        await self.store.commit(snapshot.cid, outcome.changes)
        return Produced(outcome.outbound, outcome.changes.events, outcome.due)

    async def _answer(self, cid: str, command_id: str, refusal: str | None) -> None:
        """Hand the outcome to whoever waits for it (bot.handoff.desk), for a minute."""
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.rpush(keys.command_result(cid, command_id), orjson.dumps({"refusal": refusal}))
            pipe.expire(keys.command_result(cid, command_id), 60)
            await pipe.execute()

    async def _tell_people(self, snapshot: Snapshot, changes: Changes, events: list[str], entry_id: str) -> None:
        """Publish what changed to the consoles; when the queue grew, nudge the router and tell the customer."""
        conversation = {**snapshot.conversation, **changes.conversation}
        for name in changes.drop_conversation_fields:
            conversation.pop(name, None)
        queued = changes.mode is not None and changes.mode[1] == "queued"
        for message in live.changes(snapshot.cid, conversation, events):  # not pipelined: a cluster refuses
            await self.redis.publish(live.CONSOLE, message)                 # PUBLISH in a pipeline
        if queued:
            await self.redis.publish(live.ROUTER, snapshot.cid)
        if queued and self.on_queued is not None:
            await self.on_queued(snapshot.cid, conversation.get("id", ""), conversation.get("team"), entry_id)

    async def _replay(self, lane: Lane, cid: str, entry_id: str, user_id: str) -> Produced:
        """The entry was saved but its replies and events were not queued: take them back from the
        history and the outbox."""
        log.info("entry %s was saved before a crash; re-queueing its replies", entry_id)
        return Produced([
            OutboundMessage(
                id=item.id, contact_id=cid, channel=item.channel, user_id=user_id,
                reply=Reply(text=item.text, buttons=item.buttons), author=item.author,
                keyword_reply=item.keyword_reply, purpose=item.purpose or "service", campaign_id=item.campaign_id,
                agent_id=item.agent_id,
            )
            for item in await self.store.recent_history(cid, 50)
            if item.answers == entry_id and item.direction == "out"
        ], await outbox.saved(self.redis, cid, lane.source(entry_id)))


def in_lane(lane: Lane, snapshot: Snapshot, changes: Changes, entry_id: str, command: AnyCommand | None = None
            ) -> None:
    """Ready a turn's or command's changes for the commit: the entry it saves (`last`, set by the pure
    functions) filed under its lane's field, and the events it causes, named after the entry."""
    if lane.last != "last" and "last" in changes.conversation:
        changes.conversation[lane.last] = changes.conversation.pop("last")
    changes.cause = lane.source(entry_id)
    changes.events = events_of(snapshot, changes, changes.cause, command)

