"""`omnihub agents add|list|disable|passwd` and `omnihub teams add|list`, against the hub's Redis."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated, TypeVar

import typer
from redis.asyncio import Redis

from bot.cli_support import with_redis
from bot.handoff.agents import Agent, AgentError, AgentStore
from bot.handoff.teams import TeamError, Teams, team_of
from bot.settings import WEEKDAYS, Settings

agents = typer.Typer(help="The people who answer customers: add, list, disable, change a password.",
                     no_args_is_help=True)
teams = typer.Typer(help="Teams (skills, hours, timeouts): the configuration's plus those added here.",
                    no_args_is_help=True)
T = TypeVar("T")


def _with_redis(action: Callable[[Redis, Settings], Awaitable[T]]) -> T:
    return with_redis(action, "the Redis of the hub to change", (AgentError, TeamError))


def _store(redis: Redis, settings: Settings) -> AgentStore:
    return AgentStore(redis, settings.handoff.idle_seconds, settings.handoff.agent_capacity)


async def _find(store: AgentStore, who: str) -> Agent:
    agent = await store.by_email(who) if "@" in who else await store.get(who)
    if agent is None:
        raise AgentError(f"no agent {who!r} (give an id or an email from `omnihub agents list`)", 404)
    return agent


Who = Annotated[str, typer.Argument(help="the agent's id or email")]
Password = Annotated[str, typer.Option(prompt=True, hide_input=True, confirmation_prompt=True,
                                       help="at least 8 characters (asked for when left out)")]


@agents.command("add")
def add_agent(
    email: Annotated[str, typer.Argument(help="the agent's email (their login)")],
    password: Password,
    name: Annotated[str, typer.Option(help="shown to colleagues")] = "",
    role: Annotated[str, typer.Option(help="agent, supervisor, admin or marketer")] = "agent",
    team: Annotated[list[str] | None, typer.Option(help="a team (repeat for several); default: support")] = None,
    capacity: Annotated[int | None, typer.Option(help="conversations at once (default handoff.agent_capacity)")] = None,
    language: Annotated[list[str] | None, typer.Option(help="a language the agent answers in (repeat)")] = None,
) -> None:
    """Create an agent; prints its id."""
    async def create(redis: Redis, settings: Settings) -> Agent:
        return await _store(redis, settings).create(
            email, name or email.split("@")[0], password, role=role, teams=team or (settings.handoff.default_team,),
            capacity=capacity, languages=language or ())
    agent = _with_redis(create)
    typer.echo(f"{agent.id}  {agent.email}  {agent.role}  teams {','.join(agent.teams)}  capacity {agent.capacity}")


@agents.command("list")
def list_agents() -> None:
    """Every agent: id, email, role, teams, load/capacity, presence."""
    async def listed(redis: Redis, settings: Settings) -> list[tuple[Agent, int, bool]]:
        store = _store(redis, settings)
        everyone = await store.list()
        loads, online = await store.loads([a.id for a in everyone]), await store.online_ids()
        return [(a, loads[a.id], a.id in online) for a in everyone]
    rows = _with_redis(listed)
    if not rows:
        typer.echo("no agents (add one with `omnihub agents add EMAIL`)")
    for agent, load, online in rows:
        state = "disabled" if agent.disabled else "online" if online else "offline"
        typer.echo(f"{agent.id}  {agent.email:<30} {agent.role:<10} {','.join(agent.teams):<20} "
                   f"{load}/{agent.capacity}  {state}  {agent.name}")


@agents.command("disable")
def disable_agent(who: Who) -> None:
    """No more logins or new conversations; the router gives what the agent held back to the queue."""
    async def disable(redis: Redis, settings: Settings) -> Agent:
        store = _store(redis, settings)
        return await store.disable((await _find(store, who)).id)
    typer.echo(f"{_with_redis(disable).email} disabled")


@agents.command("passwd")
def change_password(who: Who, password: Password) -> None:
    """Set a new password."""
    async def change(redis: Redis, settings: Settings) -> Agent:
        store = _store(redis, settings)
        agent = await _find(store, who)
        await store.set_password(agent.id, password)
        return agent
    typer.echo(f"password of {_with_redis(change).email} changed")


def _week(hours: list[str]) -> dict[str, list[str]] | None:
    """`mon=09:00-13:00,14:00-18:00` options as a week; none: around the clock."""
    week: dict[str, list[str]] = {}
    for spec in hours:
        day, _, periods = spec.partition("=")
        if day not in WEEKDAYS or not periods:
            raise TeamError(f"--hours {spec!r}: write it as mon=09:00-18:00 (days {', '.join(WEEKDAYS)})")
        week.setdefault(day, []).extend(p.strip() for p in periods.split(","))
    return week or None


@teams.command("add")
def add_team(
    name: Annotated[str, typer.Argument(help="the team's name (replaces a stored team of that name)")],
    language: Annotated[list[str] | None, typer.Option(help="a language it serves (repeat); none: all")] = None,
    channel: Annotated[list[str] | None, typer.Option(help="a channel it serves (repeat); none: all")] = None,
    timezone: Annotated[str, typer.Option(help="IANA time zone of its hours")] = "UTC",
    hours: Annotated[list[str] | None, typer.Option(help="mon=09:00-13:00,14:00-18:00 (repeat); none: 24/7")] = None,
    holiday: Annotated[list[str] | None, typer.Option(help="a closed date, YYYY-MM-DD (repeat)")] = None,
    manual: Annotated[bool, typer.Option(help="agents claim chats themselves (no auto-assignment)")] = False,
    queue_timeout: Annotated[float, typer.Option(help="seconds a chat may wait for an agent")] = 600,
    on_timeout: Annotated[str, typer.Option(help="escalate or bot")] = "bot",
    escalate_to: Annotated[str | None, typer.Option(help="the team escalations go to")] = None,
    first_response_sla: Annotated[float, typer.Option(help="seconds for an agent's first answer")] = 300,
    reply_sla: Annotated[float, typer.Option(help="seconds for each later answer")] = 600,
) -> None:
    """Store a team in Redis (it wins over the configuration's team of the same name)."""
    async def add(redis: Redis, settings: Settings) -> None:
        team = team_of({
            "languages": language or [], "channels": channel or [], "queue_timeout_seconds": queue_timeout,
            "auto_assign": not manual,
            "hours": {"timezone": timezone, "week": _week(hours or []), "holidays": holiday or []},
            "on_timeout": on_timeout, "escalate_to": escalate_to, "first_response_sla_seconds": first_response_sla,
            "reply_sla_seconds": reply_sla,
        })
        await Teams(redis, settings.handoff).add(name, team)
    _with_redis(add)
    typer.echo(f"team {name} stored")


@teams.command("list")
def list_teams() -> None:
    """Every team, where it comes from, and its rules."""
    async def listed(redis: Redis, settings: Settings) -> list[tuple[str, str, str]]:
        found = Teams(redis, settings.handoff)
        stored = set(await found.stored_names())
        return [(name, "redis" if name in stored else "config", team.model_dump_json(exclude_defaults=True))
                for name, team in sorted((await found.all()).items())]
    for name, source, rules in _with_redis(listed):
        typer.echo(f"{name:<16} {source:<6} {rules}")
