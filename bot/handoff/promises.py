"""The teams' response promises, kept: SLA clocks (bot.handoff.sla) armed when a conversation is
assigned or has a new message, and judged against the history when they run out.

A clock is a wake-up, not the truth: when one runs out, the conversation's history since the
assignment says whether the agent really owes an answer and since when (`assignment.owed`), so a
clock armed twice, late or by the agent's own message never counts against anyone.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from redis.asyncio import Redis

from bot.context import keys
from bot.context.store import ContextStore
from bot.crm.events import CloudEvent, SlaBreached
from bot.crm.outbox import Emitter
from bot.handoff import live, sla
from bot.handoff.assignment import owed, sla_deadline, team_for
from bot.settings import TeamSettings

HISTORY_LOOKBACK = 50  # entries read to tell whether an SLA is really broken
ARM_WINDOW_SECONDS = 10.0  # how far back to look for conversations people claimed


@dataclass(frozen=True)
class Breach:
    conversation_id: str
    contact_id: str
    agent_id: str
    clock: sla.Clock


class Promises:
    def __init__(self, redis: Redis, store: ContextStore, default_team: str, emitter: Emitter) -> None:
        self.redis, self.store, self.default_team, self.emitter = redis, store, default_team, emitter
        self.wrote: set[str] = set()  # contacts with a message in an assigned conversation, since the last round
        self.armed: dict[str, float] = {}  # contact id -> the assignment (index score) whose clock is set

    def heard(self, change: live.Change) -> None:
        if change.event == "message" and change.mode == "assigned":
            self.wrote.add(change.contact)

    async def arm(self, teams: dict[str, TeamSettings]) -> None:
        await self._arm_new_assignments(teams)
        await self._arm_reply_clocks(teams)

    async def _arm_new_assignments(self, teams: dict[str, TeamSettings]) -> None:
        """Start the first-response clock of conversations people claimed themselves (the console, the
        API; the router's own start theirs at once): the mode index lists what became assigned lately.
        It is written just before the contact's MULTI, so the window looks back a few seconds."""
        since = time.time() - ARM_WINDOW_SECONDS
        recent: list[tuple[str, float]] = await self.redis.zrangebyscore(  # type: ignore[assignment]
            keys.by_mode("assigned"), since, "+inf", withscores=True)
        self.armed = {cid: at for cid, at in self.armed.items() if at >= since}
        for cid, at in recent:
            if self.armed.get(cid) == at:
                continue
            conv: dict[str, str] = await self.redis.hgetall(keys.conversation(cid))  # type: ignore[assignment]
            team = team_for(teams, conv.get("team"), self.default_team)
            if conv.get("mode") != "assigned" or not conv.get("assigned_at") or team is None:
                continue  # not committed yet (seen again next round), or moved on already
            self.armed[cid] = at
            deadline = sla_deadline(team, "first", float(conv["assigned_at"])) * 1000
            await self.redis.zadd(keys.SLA, {sla.member("first", cid): deadline}, nx=True)

    async def _arm_reply_clocks(self, teams: dict[str, TeamSettings]) -> None:
        """Start the reply clock of assigned conversations that had a message since the last round
        (`NX`: a running clock keeps its deadline)."""
        touched, self.wrote = sorted(self.wrote), set()
        if not touched:
            return
        async with self.redis.pipeline(transaction=False) as read:  # one round trip for them all
            for cid in touched:
                read.hmget(keys.conversation(cid), "mode", "team")
            found = await read.execute()
        async with self.redis.pipeline(transaction=False) as pipe:
            for cid, (mode, team_name) in zip(touched, found, strict=True):
                team = team_for(teams, team_name, self.default_team)
                if mode == "assigned" and team is not None:
                    sla.customer_wrote(pipe, cid, team)
            if len(pipe):
                await pipe.execute()

    async def broken(self, teams: dict[str, TeamSettings], now: float) -> list[Breach]:
        """The promises broken by `now`, each recorded as a `conversation.sla_breached` event; a clock
        that ran out on a promise kept is dropped, or re-armed for a newer message still unanswered."""
        breaches = []
        for cid in dict.fromkeys(cid for _, cid in await sla.overdue(self.redis, now)):  # both clocks: once
            conv: dict[str, str] = await self.redis.hgetall(keys.conversation(cid))  # type: ignore[assignment]
            team = team_for(teams, conv.get("team"), self.default_team)
            due = None
            if conv.get("mode") == "assigned" and conv.get("id") and conv.get("assigned_at") and team is not None:
                due = owed(await self.store.recent_history(cid, HISTORY_LOOKBACK), float(conv["assigned_at"]))
            breach = None
            if due is not None and team is not None and (deadline := sla_deadline(team, *due)) <= now:
                breach = Breach(conv["id"], cid, conv.get("assignee", ""), due[0])
                # emitted before the clock stops: a crash between finds the breach again, and the same
                # id (the clock's deadline is the cause) is not appended twice
                data = SlaBreached(conversation_id=conv["id"], contact_id=cid, clock=due[0], team=conv.get("team"),
                                   agent_id=conv.get("assignee"), due_at=deadline)
                await self.emitter.emit_once(CloudEvent.of(data, cid, f"{conv['id']}/{due[0]}/{deadline}"))
                breaches.append(breach)
            async with self.redis.pipeline(transaction=False) as pipe:
                sla.stop(pipe, cid)  # nothing owed (resolved, released, answered) unless re-armed below
                if due is not None and team is not None and breach is None:
                    pipe.zadd(keys.SLA, {sla.member(due[0], cid): sla_deadline(team, *due) * 1000})
                await pipe.execute()
        return breaches
