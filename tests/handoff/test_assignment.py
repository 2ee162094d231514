"""The router's rules as pure functions: who serves what, who is next, when a wait or a promise ends."""

from __future__ import annotations

from datetime import UTC, datetime

from bot.context.history import HistoryEntry
from bot.handoff.agents import Agent
from bot.handoff.assignment import owed, plan, queue_deadline, serves
from bot.handoff.desk import ConversationView
from bot.settings import BusinessHours, TeamSettings

SUPPORT = TeamSettings()
TEAMS = {"support": SUPPORT, "ru": TeamSettings(languages=["ru"], channels=["telegram", "viber"])}


def agent(name: str, capacity: int = 2, teams: tuple[str, ...] = ("support",), **kw: object) -> Agent:
    return Agent(id=name, email=f"{name}@example.com", name=name, role="agent", teams=teams, capacity=capacity,
                 **kw)  # type: ignore[arg-type]


def waiting(n: int, team: str = "support", language: str | None = "en", channel: str = "telegram") -> ConversationView:
    return ConversationView(id=f"c{n}-1", contact_id=f"c{n}", mode="queued", channel=channel, user_id="u",
                            assignee=None, team=team, handoff_reason="requested", queued_at=float(n),
                            assigned_at=None, name=None, language=language, window_open=None)


def entry(direction: str, author: str, at: float) -> HistoryEntry:
    return HistoryEntry(id=f"e{at}", ch="telegram", d=direction, at=at, by=author)  # type: ignore[arg-type]


def test_skills_of_team_and_agent() -> None:
    ru_team = TEAMS["ru"]
    assert serves(agent("a"), "support", SUPPORT, waiting(1))
    assert not serves(agent("a"), "ru", ru_team, waiting(1, "ru", "ru"))  # not in the team
    ivan = agent("ivan", teams=("ru",))
    assert serves(ivan, "ru", ru_team, waiting(1, "ru", "ru"))
    assert not serves(ivan, "ru", ru_team, waiting(1, "ru", "en"))  # the team speaks Russian only
    assert not serves(ivan, "ru", ru_team, waiting(1, "ru", "ru", channel="sms"))
    assert serves(ivan, "ru", ru_team, waiting(1, "ru", None))  # a language not known yet: anyone
    polyglot = agent("p", languages=("de",))
    assert not serves(polyglot, "support", SUPPORT, waiting(1)) and serves(polyglot, "support", SUPPORT,
                                                                         waiting(1, language="de"))


def test_least_loaded_then_round_robin_then_capacity() -> None:
    agents = [agent("a"), agent("b"), agent("c", capacity=1)]
    loads = {"a": 1, "b": 0, "c": 0}
    picks = plan([waiting(n) for n in range(6)], TEAMS, "support", agents, loads, {}, {})
    assert [p.agent_id for p in picks] == ["b", "c", "a", "b"]  # the least loaded first, ties by turn
    assert loads == {"a": 2, "b": 2, "c": 1}  # nobody past capacity; two conversations still wait
    assert [p.conversation.contact_id for p in picks] == ["c0", "c1", "c2", "c3"]  # oldest first


def test_turns_carry_over_between_rounds_and_avoid_the_breaching_agent() -> None:
    agents, last_pick = [agent("a", 5), agent("b", 5)], {}
    first = plan([waiting(1)], TEAMS, "support", agents, {"a": 0, "b": 0}, last_pick, {})
    second = plan([waiting(2)], TEAMS, "support", agents, {"a": 0, "b": 0}, last_pick, {})
    assert [first[0].agent_id, second[0].agent_id] == ["a", "b"]
    taken = plan([waiting(3)], TEAMS, "support", agents, {"a": 0, "b": 3}, {}, {"c3": "a"})
    assert taken[0].agent_id == "b"  # busier, but not the one who let the customer down
    alone = plan([waiting(3)], TEAMS, "support", agents[:1], {"a": 0}, {}, {"c3": "a"})
    assert alone[0].agent_id == "a"  # still better than nobody


def test_a_conversation_nobody_serves_does_not_hold_up_the_rest() -> None:
    picks = plan([waiting(1, "ru", "ru"), waiting(2)], TEAMS, "support", [agent("a")], {}, {}, {})
    assert [p.conversation.contact_id for p in picks] == ["c2"]
    unknown = plan([waiting(1, "gone")], TEAMS, "support", [agent("a", teams=("gone",))], {}, {}, {})
    assert [p.agent_id for p in unknown] == ["a"]  # a deleted team's chats follow the default rules


def test_queue_timeout_counts_from_opening_time() -> None:
    office = TeamSettings(queue_timeout_seconds=600, hours=BusinessHours(week={"mon": ["09:00-17:00"]}))
    monday_8 = datetime(2027, 1, 4, 8, 0, tzinfo=UTC).timestamp()
    monday_10 = datetime(2027, 1, 4, 10, 0, tzinfo=UTC).timestamp()
    assert queue_deadline(office, monday_8) == datetime(2027, 1, 4, 9, 10, tzinfo=UTC).timestamp()
    assert queue_deadline(office, monday_10) == monday_10 + 600
    assert queue_deadline(SUPPORT, 100.0) == 100.0 + SUPPORT.queue_timeout_seconds


def test_what_an_agent_owes() -> None:
    assert owed([], 10.0) == ("first", 10.0)
    assert owed([entry("in", "customer", 5.0), entry("out", "bot", 8.0)], 10.0) == ("first", 10.0)
    answered = [entry("out", "agent", 12.0)]
    assert owed(answered, 10.0) is None
    assert owed([*answered, entry("in", "customer", 20.0), entry("in", "customer", 25.0)], 10.0) == ("reply", 20.0)
    assert owed([*answered, entry("in", "customer", 20.0), entry("out", "agent", 30.0)], 10.0) is None
    assert owed([entry("note", "agent", 12.0)], 10.0) == ("first", 10.0)  # a note is no answer


def test_a_round_stops_at_its_limit_oldest_first() -> None:
    picks = plan([waiting(n) for n in range(5)], TEAMS, "support", [agent("a", 10)], {}, {}, {}, limit=2)
    assert [p.conversation.contact_id for p in picks] == ["c0", "c1"]


def test_a_team_that_claims_by_hand_gets_no_assignments() -> None:
    teams = {**TEAMS, "desk": TeamSettings(auto_assign=False)}
    picks = plan([waiting(1, "desk"), waiting(2)], teams, "support", [agent("a", teams=("support", "desk"))],
                 {}, {}, {})
    assert [p.conversation.contact_id for p in picks] == ["c2"]
