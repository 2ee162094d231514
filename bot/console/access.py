"""Who may see and act on which conversation: pure functions of the agent and the conversation.

An agent sees the conversations assigned to them and the queue of their teams (a conversation queued
for no team is everyone's queue); supervisors and admins see everything. Marketers use the console
for nothing conversational. The same rule decides what the HTTP routes answer and which live events
a browser is told about, so the two can never disagree.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

OVERSEERS = frozenset({"supervisor", "admin"})
HANDLERS = OVERSEERS | {"agent"}


class Person(Protocol):
    @property
    def id(self) -> str: ...
    @property
    def role(self) -> str: ...
    @property
    def teams(self) -> Sequence[str]: ...


def oversees(agent: Person) -> bool:
    """Sees every conversation and agent, and may reassign."""
    return agent.role in OVERSEERS


def may_see(agent: Person, mode: str | None, assignee: str | None, team: str | None) -> bool:
    if agent.role not in HANDLERS:
        return False
    if oversees(agent) or (assignee is not None and assignee == agent.id):
        return True
    return mode == "queued" and (team is None or team in agent.teams)
