"""Who gets which waiting conversation, when a wait is too long, and what an agent still owes:
pure functions of what the router read, so every rule is tested without Redis."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from bot.context.history import HistoryEntry
from bot.handoff.agents import Agent
from bot.handoff.desk import ConversationView
from bot.handoff.hours import next_open
from bot.handoff.sla import Clock
from bot.settings import TeamSettings


@dataclass(frozen=True)
class Pick:
    conversation: ConversationView
    agent_id: str


def team_for(teams: Mapping[str, TeamSettings], name: str | None, default_team: str) -> TeamSettings | None:
    """A conversation's team; the default team's rules for one that no longer exists."""
    return teams.get(name or default_team) or teams.get(default_team)


def serves(agent: Agent, team_name: str, team: TeamSettings, view: ConversationView) -> bool:
    """The agent is in the conversation's team and has its skills: a team that declares languages or
    channels serves only those; an agent who declares languages speaks only those."""
    if team_name not in agent.teams:
        return False
    if team.channels and view.channel not in team.channels:
        return False
    spoken = agent.languages or tuple(team.languages)
    return not spoken or view.language is None or view.language in spoken


def plan(
    queued: Sequence[ConversationView], teams: Mapping[str, TeamSettings], default_team: str,
    agents: Sequence[Agent], loads: dict[str, int], last_pick: dict[str, int], avoid: Mapping[str, str],
    limit: int | None = None,
) -> list[Pick]:
    """Assignments for `queued` (oldest first): each to the least-loaded agent with a free place who
    serves it; among equals the one picked longest ago (round-robin), and not the agent it was taken
    from (`avoid`: contact id -> agent) while another can have it; at most `limit` of them. Updates
    `loads` and `last_pick`."""
    picks: list[Pick] = []
    turn = max(last_pick.values(), default=0)
    for view in queued:
        if limit is not None and len(picks) >= limit:
            break
        team_name = view.team or default_team
        team = team_for(teams, team_name, default_team)
        if team is None or not team.auto_assign:
            continue
        free = [a for a in agents if not a.disabled and loads.get(a.id, 0) < a.capacity
                and serves(a, team_name, team, view)]
        if not free:
            continue
        chosen = min(free, key=lambda a: (avoid.get(view.contact_id) == a.id, loads.get(a.id, 0),
                                          last_pick.get(a.id, 0), a.id))
        turn += 1
        loads[chosen.id] = loads.get(chosen.id, 0) + 1
        last_pick[chosen.id] = turn
        picks.append(Pick(view, chosen.id))
    return picks


def queue_deadline(team: TeamSettings, queued_at: float) -> float:
    """When a wait becomes too long: the timeout counts from the team's next opening, so a chat left
    at night is not "timed out" before anyone was due in."""
    opens = next_open(team.hours, datetime.fromtimestamp(queued_at, UTC)).timestamp()
    return max(opens, queued_at) + team.queue_timeout_seconds


def owed(entries: Sequence[HistoryEntry], assigned_at: float) -> tuple[Clock, float] | None:
    """What the assignee owes the customer, from the history since the assignment: a first response
    (owed since the assignment), a reply (owed since the oldest customer message after the agent's
    last one), or nothing."""
    clock: Clock = "first"
    since: float | None = assigned_at
    for entry in entries:
        if entry.at < assigned_at:
            continue
        if entry.direction == "out" and entry.author == "agent":
            clock, since = "reply", None
        elif entry.direction == "in" and since is None:
            since = entry.at
    return (clock, since) if since is not None else None


def sla_deadline(team: TeamSettings, clock: Clock, since: float) -> float:
    return since + (team.first_response_sla_seconds if clock == "first" else team.reply_sla_seconds)
