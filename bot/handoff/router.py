"""The router: gives waiting conversations to agents, takes them back from agents who left, and keeps
the teams' promises (queue timeouts; response SLAs with bot.handoff.promises). One process routes at
a time (a lease).

It acts only through the desk, so every change is a command applied by the contact's partition
worker, and the desk's 409 is the one arbiter when a person claims the same conversation: the router
moves on. Each round reads everything it decides on, and the rules are pure (bot.handoff.assignment);
what the router keeps in memory (whose turn it is among equals, whom a breached conversation was
taken from) is a preference, and a new router starts without it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError
from redis.asyncio import Redis

from bot.context import keys
from bot.crm.events import CloudEvent, QueueTimedOut
from bot.crm.outbox import Emitter
from bot.handoff import live, sla
from bot.handoff.agents import AgentStore
from bot.handoff.assignment import Pick, plan, queue_deadline, team_for
from bot.handoff.desk import ConversationView, Desk, DeskError
from bot.handoff.promises import Promises
from bot.handoff.teams import Teams
from bot.pipeline.streams import Backoff
from bot.redis_server import REDIS_FAILURES
from bot.settings import HandoffSettings, TeamSettings

log = logging.getLogger(__name__)
STALE_RESERVATION_MS = 30_000  # a place held this long for a conversation the agent does not have is a leak
ROUND_PICKS = 250  # assignments per round at most, so take-backs, SLAs and timeouts are not kept waiting
RECONCILE_SECONDS = 10.0  # how often the places of agents still online are checked for leaks
TIMEOUT_SCAN_SECONDS = 1.0  # how often a full queue nobody has room for is read for queue timeouts

_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""


@dataclass
class RoundReport:
    assigned: list[Pick] = field(default_factory=list)
    released: list[str] = field(default_factory=list)  # conversation ids taken back from absent agents
    breached: list[str] = field(default_factory=list)
    timed_out: list[str] = field(default_factory=list)
    more: bool = False  # assignments left for the next round


class Router:
    def __init__(self, redis: Redis, desk: Desk, agents: AgentStore, teams: Teams, settings: HandoffSettings,
                 concurrency: int = 1) -> None:
        self.redis, self.desk, self.agents, self.teams, self.settings = redis, desk, agents, teams, settings
        self.concurrency = concurrency
        self.me = f"{socket.gethostname()}:{os.getpid()}:{id(self):x}"
        self.leading = False
        self.renewed_at = time.monotonic()
        self.last_pick: dict[str, int] = {}
        self.avoid: dict[str, str] = {}  # contact id -> the agent an SLA breach took it from
        self.next_timeout_scan = 0.0
        self.next_reconcile = 0.0
        self.emitter = Emitter(redis, desk.ingest.partitions)
        self.promises = Promises(redis, desk.store, settings.default_team, self.emitter)
        self._wake = asyncio.Event()
        self.listening = asyncio.Event()  # subscribed to the workers' news
        self._renew = redis.register_script(_RENEW)

    async def run(self, stop: asyncio.Event) -> None:
        """Route every `router_interval_seconds`, and at once when a conversation is queued, until `stop`."""
        listener = asyncio.create_task(self.listen(stop), name="router-nudges")
        backoff = Backoff()
        try:
            while not stop.is_set():
                wait = self.settings.router_interval_seconds
                try:
                    if await self.lead() and (await self.round()).more:
                        wait = 0  # the queue was longer than one round takes on: go on at once
                    backoff.reset()
                except REDIS_FAILURES as exc:
                    wait = backoff.next_delay()
                    log.warning("routing round failed (%s); again in %.1f s", exc, wait)
                except Exception:  # a bug met by one round must not stop routing for the life of the process
                    wait = backoff.next_delay()
                    log.exception("routing round failed; again in %.1f s", wait)
                await self._pause(stop, wait)
        finally:
            listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await listener
            with contextlib.suppress(*REDIS_FAILURES):
                if self.leading and await self.redis.get(keys.ROUTER_LEASE) == self.me:
                    await self.redis.delete(keys.ROUTER_LEASE)

    async def lead(self) -> bool:
        """Hold (or take) the router lease; true while this process is the one that routes."""
        lease_ms = int(self.settings.router_lease_seconds * 1000)
        if self.leading:
            self.leading = bool(await self._renew(keys=[keys.ROUTER_LEASE], args=[self.me, lease_ms]))
        if not self.leading:
            self.leading = bool(await self.redis.set(keys.ROUTER_LEASE, self.me, nx=True, px=lease_ms))
        self.renewed_at = time.monotonic()
        return self.leading

    async def still_leading(self) -> bool:
        """Renew the lease during a long round (every third of it); false once another router has it."""
        if time.monotonic() - self.renewed_at > self.settings.router_lease_seconds / 3:
            return await self.lead()
        return True

    async def round(self, now: float | None = None) -> RoundReport:
        """One pass: take back from absent agents, enforce SLAs and queue timeouts, then assign.

        Assignments go one after another by default: in a process that also runs workers they share
        one event loop, and more in flight only queues them (tests/bench/handoff.py)."""
        now = now or time.time()
        report = RoundReport()
        teams = await self.teams.all()
        everyone = await self.agents.list()
        online = await self.agents.online_ids()
        present = [a for a in everyone if a.id in online and not a.disabled]
        gone = await self.agents.gone_ids() | {a.id for a in everyone if a.disabled}
        checked = set(gone)
        if time.monotonic() >= self.next_reconcile:  # now and then, everyone's places too
            self.next_reconcile = time.monotonic() + RECONCILE_SECONDS
            checked |= {a.id for a in everyone}
        await self._take_back(sorted(checked), gone, report)
        await self.promises.arm(teams)
        for breach in await self.promises.broken(teams, now):  # back to the queue, to someone else if possible
            if await self._release(breach.conversation_id, f"sla_{breach.clock}"):
                self.avoid[breach.contact_id] = breach.agent_id
                report.breached.append(breach.conversation_id)
        loads = await self.agents.loads([a.id for a in present])
        room = any(loads[a.id] < a.capacity for a in present)
        if not room and now < self.next_timeout_scan:
            return report  # nobody can take a chat: reading the whole queue can wait for the timeout scan
        self.next_timeout_scan = now + TIMEOUT_SCAN_SECONDS
        queued = await self.desk.queued()
        waiting = await self._time_out(queued, teams, now, report)
        picks = plan(waiting, teams, self.settings.default_team, present, loads, self.last_pick, self.avoid,
                     limit=ROUND_PICKS)
        report.more = len(picks) == ROUND_PICKS
        gate = asyncio.Semaphore(self.concurrency)
        done = await asyncio.gather(*(self._assign(pick, teams, gate) for pick in picks))
        report.assigned = [pick for pick, ok in zip(picks, done, strict=True) if ok]
        return report

    async def _assign(self, pick: Pick, teams: dict[str, TeamSettings], gate: asyncio.Semaphore) -> bool:
        async with gate:
            if not await self.still_leading():
                return False
            try:
                await self.desk.assign(pick.conversation.id, pick.agent_id)
            except DeskError as exc:  # someone claimed it first, or the agent's last place went: next round
                log.info("assigning %s to %s refused: %s", pick.conversation.id, pick.agent_id, exc)
                return False
            team = team_for(teams, pick.conversation.team, self.settings.default_team)
            if team is not None:
                async with self.redis.pipeline(transaction=False) as pipe:
                    sla.assigned(pipe, pick.conversation.contact_id, team)
                    await pipe.execute()
            self.avoid.pop(pick.conversation.contact_id, None)
            return True

    async def _take_back(self, checked: list[str], gone: set[str], report: RoundReport) -> None:
        """Conversations of agents who went offline, idle or disabled go back to their team's queue; a
        place an agent holds for a conversation that is no longer theirs (a claim whose answer was
        lost, a contact erased) is freed once it is old enough not to be a claim in flight."""
        held = {agent_id: n for agent_id, n in (await self.agents.loads(checked)).items() if n}
        for agent_id in held:
            places: list[tuple[str, float]] = await self.redis.zrange(
                keys.agent_load(agent_id), 0, -1, withscores=True)  # type: ignore[assignment]
            async with self.redis.pipeline(transaction=False) as read:  # one round trip per agent
                for cid, _ in places:
                    read.hmget(keys.conversation(str(cid)), "id", "mode", "assignee")
                found = await read.execute() if places else []
            for (cid, since), (conv_id, mode, assignee) in zip(places, found, strict=True):
                if mode == "assigned" and assignee == agent_id and conv_id:
                    if agent_id in gone and await self._release(str(conv_id), "agent_offline"):
                        report.released.append(str(conv_id))
                elif time.time() * 1000 - since > STALE_RESERVATION_MS:
                    await self.agents.release(agent_id, str(cid))  # a place for a conversation it no longer has

    async def _time_out(self, queued: list[ConversationView], teams: dict[str, TeamSettings], now: float,
                        report: RoundReport) -> list[ConversationView]:
        """Conversations nobody took in time are escalated or handed back to the bot (the customer is told);
        returns the ones still waiting."""
        waiting = []
        for view in queued:
            team = team_for(teams, view.team, self.settings.default_team)
            if team is None or view.queued_at is None or queue_deadline(team, view.queued_at) > now:
                waiting.append(view)
                continue
            data = QueueTimedOut(conversation_id=view.id, contact_id=view.contact_id, team=view.team,
                                 queued_at=view.queued_at, action=team.on_timeout,
                                 to_team=team.escalate_to if team.on_timeout == "escalate" else None)
            await self.emitter.emit_once(CloudEvent.of(data, view.contact_id, f"{view.id}/{view.queued_at}"))
            try:
                if team.on_timeout == "escalate":
                    await self.desk.release(view.id, "queue_timeout", team=team.escalate_to or view.team)
                    await self.desk.tell(view.id, "queue_timeout_escalated")
                else:
                    await self.desk.back_to_bot(view.id, "queue_timeout", notice="queue_timeout_bot")
            except DeskError as exc:
                log.info("queue timeout of %s not applied: %s", view.id, exc)
                continue
            report.timed_out.append(view.id)
        return waiting

    async def _release(self, conv_id: str, reason: str) -> bool:
        try:
            await self.desk.release(conv_id, reason)
        except DeskError as exc:
            log.info("releasing %s (%s) refused: %s", conv_id, reason, exc)
            return False
        return True

    async def listen(self, stop: asyncio.Event) -> None:
        """Hear the workers: a conversation was queued (wake the loop now), or a message came or went in
        an assigned conversation (its reply clock may start). Pub/sub may be lost; rounds are not, and
        every clock is checked against the history before it counts."""
        backoff = Backoff()
        while not stop.is_set():
            try:
                async with self.redis.pubsub(ignore_subscribe_messages=True) as pubsub:
                    await pubsub.subscribe(live.ROUTER, live.CONSOLE)
                    self.listening.set()
                    backoff.reset()
                    async for message in pubsub.listen():
                        self._heard(message)
            except REDIS_FAILURES as exc:
                self.listening.clear()
                log.warning("router nudges unavailable (%s)", exc)
                await self._pause(stop, backoff.next_delay())

    def _heard(self, message: dict[str, Any]) -> None:
        if message.get("channel") == live.ROUTER:
            self._wake.set()
            return
        if self.leading:  # the router that routes keeps the clocks
            with contextlib.suppress(ValidationError):
                self.promises.heard(live.Change.model_validate_json(message.get("data") or ""))

    async def _pause(self, stop: asyncio.Event, seconds: float) -> None:
        stopping = asyncio.ensure_future(stop.wait())
        waking = asyncio.ensure_future(self._wake.wait())
        try:
            await asyncio.wait({stopping, waking}, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopping.cancel()
            waking.cancel()
        self._wake.clear()

