"""The router: gives waiting conversations to agents, takes them back from agents who left, and keeps
the teams' promises (queue timeouts, response SLAs). One process routes at a time (a lease).

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
from bot.context.events import stage_event
from bot.handoff import live, sla
from bot.handoff.agents import Agent, AgentStore
from bot.handoff.assignment import Pick, owed, plan, queue_deadline, sla_deadline
from bot.handoff.desk import ConversationView, Desk, DeskError
from bot.handoff.teams import Teams
from bot.pipeline.streams import Backoff
from bot.redis_server import REDIS_FAILURES
from bot.settings import HandoffSettings, TeamSettings

log = logging.getLogger(__name__)
STALE_RESERVATION_MS = 30_000  # a place held this long for a conversation the agent does not have is a leak
HISTORY_LOOKBACK = 50  # entries read to tell whether an SLA is really broken
ARM_WINDOW_SECONDS = 10.0  # how far back the router looks for conversations people claimed
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


class Router:
    def __init__(self, redis: Redis, desk: Desk, agents: AgentStore, teams: Teams, settings: HandoffSettings,
                 concurrency: int = 1) -> None:
        self.redis, self.desk, self.agents, self.teams, self.settings = redis, desk, agents, teams, settings
        self.concurrency = concurrency
        self.me = f"{socket.gethostname()}:{os.getpid()}:{id(self):x}"
        self.leading = False
        self.last_pick: dict[str, int] = {}
        self.avoid: dict[str, str] = {}  # contact id -> the agent an SLA breach took it from
        self.next_timeout_scan = 0.0
        self.wrote: set[str] = set()  # contacts with a message in an assigned conversation, heard since the last round
        self.armed: dict[str, float] = {}  # contact id -> the assignment (index score) whose clock is set
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
                    if await self.lead():
                        await self.round()
                    backoff.reset()
                except REDIS_FAILURES as exc:
                    wait = backoff.next_delay()
                    log.warning("routing round failed (%s); again in %.1f s", exc, wait)
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
        return self.leading

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
        await self._take_back(everyone, {a.id for a in present}, report)
        await self._arm_new_assignments(teams)
        await self._arm_reply_clocks(teams)
        await self._enforce_slas(teams, now, report)
        loads = await self.agents.loads([a.id for a in present])
        room = any(loads[a.id] < a.capacity for a in present)
        if not room and now < self.next_timeout_scan:
            return report  # nobody can take a chat: reading the whole queue can wait for the timeout scan
        self.next_timeout_scan = now + TIMEOUT_SCAN_SECONDS
        queued = await self.desk.queued()
        waiting = await self._time_out(queued, teams, now, report)
        picks = plan(waiting, teams, self.settings.default_team, present, loads, self.last_pick, self.avoid)
        gate = asyncio.Semaphore(self.concurrency)
        done = await asyncio.gather(*(self._assign(pick, teams, gate) for pick in picks))
        report.assigned = [pick for pick, ok in zip(picks, done, strict=True) if ok]
        return report

    async def _assign(self, pick: Pick, teams: dict[str, TeamSettings], gate: asyncio.Semaphore) -> bool:
        async with gate:
            try:
                await self.desk.assign(pick.conversation.id, pick.agent_id)
            except DeskError as exc:  # someone claimed it first, or the agent's last place went: next round
                log.info("assigning %s to %s refused: %s", pick.conversation.id, pick.agent_id, exc)
                return False
            team = self._team(teams, pick.conversation.team)
            if team is not None:
                async with self.redis.pipeline(transaction=False) as pipe:
                    sla.assigned(pipe, pick.conversation.contact_id, team)
                    await pipe.execute()
            self.avoid.pop(pick.conversation.contact_id, None)
            return True

    async def _take_back(self, everyone: list[Agent], present: set[str], report: RoundReport) -> None:
        """Conversations of agents who went offline, idle or disabled go back to their team's queue."""
        absent = [a.id for a in everyone if a.id not in present]
        held = {agent_id: n for agent_id, n in (await self.agents.loads(absent)).items() if n}
        for agent_id in held:
            places: list[tuple[str, float]] = await self.redis.zrange(
                keys.agent_load(agent_id), 0, -1, withscores=True)  # type: ignore[assignment]
            for cid, since in places:
                fields = ["id", "mode", "assignee"]
                conv_id, mode, assignee = await self.redis.hmget(keys.conversation(str(cid)), fields)
                if mode == "assigned" and assignee == agent_id and conv_id:
                    if await self._release(str(conv_id), "agent_offline"):
                        report.released.append(str(conv_id))
                elif time.time() * 1000 - since > STALE_RESERVATION_MS:
                    await self.agents.release(agent_id, str(cid))  # a place for a conversation it no longer has

    async def _arm_new_assignments(self, teams: dict[str, TeamSettings]) -> None:
        """Start the first-response clock of conversations people claimed themselves (the console, the
        API): the mode index lists what became assigned lately. It is written just before the
        contact's MULTI, so the window looks back `ARM_WINDOW_SECONDS` rather than from the last round."""
        since = time.time() - ARM_WINDOW_SECONDS
        recent: list[tuple[str, float]] = await self.redis.zrangebyscore(  # type: ignore[assignment]
            keys.by_mode("assigned"), since, "+inf", withscores=True)
        self.armed = {cid: at for cid, at in self.armed.items() if at >= since}
        for cid, at in recent:
            if self.armed.get(cid) == at:
                continue
            conv: dict[str, str] = await self.redis.hgetall(keys.conversation(cid))  # type: ignore[assignment]
            team = self._team(teams, conv.get("team"))
            if conv.get("mode") != "assigned" or not conv.get("assigned_at") or team is None:
                continue  # not committed yet (seen again next round), or moved on already
            self.armed[cid] = at
            deadline = sla_deadline(team, "first", float(conv["assigned_at"])) * 1000
            await self.redis.zadd(keys.SLA, {sla.member("first", cid): deadline}, nx=True)

    async def _enforce_slas(self, teams: dict[str, TeamSettings], now: float, report: RoundReport) -> None:
        """An overdue clock is checked against the history (the truth): a broken promise is recorded and
        the conversation goes back to its queue, preferably to someone else; a kept one is re-armed."""
        for clock, cid in await sla.overdue(self.redis, now):
            conv: dict[str, str] = await self.redis.hgetall(keys.conversation(cid))  # type: ignore[assignment]
            team = self._team(teams, conv.get("team"))
            due = None
            if conv.get("mode") == "assigned" and conv.get("id") and conv.get("assigned_at") and team is not None:
                due = owed(await self.desk.store.recent_history(cid, HISTORY_LOOKBACK), float(conv["assigned_at"]))
            breached = False
            async with self.redis.pipeline(transaction=False) as pipe:
                sla.stop(pipe, cid)  # nothing owed (resolved, released, answered) unless re-armed below
                if due is not None and team is not None:
                    deadline = sla_deadline(team, *due)
                    if deadline > now:  # answered in time, and a newer message is waiting
                        pipe.zadd(keys.SLA, {sla.member(due[0], cid): deadline * 1000})
                    else:
                        breached = True
                        stage_event(pipe, "conversation.sla_breached", cid, {
                            "conversation_id": conv["id"], "clock": due[0], "agent_id": conv.get("assignee"),
                            "team": conv.get("team"), "due_at": deadline})
                await pipe.execute()
            if breached and await self._release(conv["id"], f"sla_{clock}"):
                self.avoid[cid] = conv.get("assignee", "")
                report.breached.append(conv["id"])

    async def _time_out(self, queued: list[ConversationView], teams: dict[str, TeamSettings], now: float,
                        report: RoundReport) -> list[ConversationView]:
        """Conversations nobody took in time are escalated or handed back to the bot (the customer is told);
        returns the ones still waiting."""
        waiting = []
        for view in queued:
            team = self._team(teams, view.team)
            if team is None or view.queued_at is None or queue_deadline(team, view.queued_at) > now:
                waiting.append(view)
                continue
            async with self.redis.pipeline(transaction=False) as pipe:
                stage_event(pipe, "conversation.queue_timeout", view.contact_id, {
                    "conversation_id": view.id, "team": view.team, "queued_at": view.queued_at,
                    "action": team.on_timeout, "to_team": team.escalate_to if team.on_timeout == "escalate" else None})
                await pipe.execute()
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

    def _team(self, teams: dict[str, TeamSettings], name: str | None) -> TeamSettings | None:
        """A conversation's team; the default team's rules for a team that no longer exists."""
        return teams.get(name or self.settings.default_team) or teams.get(self.settings.default_team)

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
        with contextlib.suppress(ValidationError):
            change = live.Change.model_validate_json(message.get("data") or "")
            if change.event == "message" and change.mode == "assigned":
                self.wrote.add(change.contact)

    async def _arm_reply_clocks(self, teams: dict[str, TeamSettings]) -> None:
        """Start the reply clock of assigned conversations that had a message since the last round
        (`NX`: a clock already running keeps its deadline; one started by the agent's own message is
        dropped when it fires, as nothing is owed)."""
        touched, self.wrote = self.wrote, set()
        for cid in touched:
            conv: dict[str, str] = await self.redis.hgetall(keys.conversation(cid))  # type: ignore[assignment]
            team = self._team(teams, conv.get("team"))
            if conv.get("mode") == "assigned" and team is not None:
                async with self.redis.pipeline(transaction=False) as pipe:
                    sla.customer_wrote(pipe, cid, team)
                    await pipe.execute()

    async def _pause(self, stop: asyncio.Event, seconds: float) -> None:
        stopping = asyncio.ensure_future(stop.wait())
        waking = asyncio.ensure_future(self._wake.wait())
        try:
            await asyncio.wait({stopping, waking}, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopping.cancel()
            waking.cancel()
        self._wake.clear()

