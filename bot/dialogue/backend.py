"""The seam between the pipeline and whatever converses with the customer.

The YAML `Engine` is one backend; a Rasa server is another (bot.rasa). The pipeline hands a backend the
turn and the conversation's state as an opaque string that only the backend reads and writes, and
stores whatever comes back — so nothing outside a backend knows the shape of its state.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from bot.models import Reply


@dataclass(frozen=True)
class HandoffRequest:
    """The backend wants a human: why, and (when it knows) which team."""

    reason: str
    team: str | None = None


@dataclass(frozen=True)
class DialogueRequest:
    """One customer turn as a backend sees it. `language` is the one to answer in (the pipeline's
    rules decided it); `state` is what the backend returned last time for this conversation;
    `conversation` its id, for a backend that keeps its own state by conversation (Rasa's sender)."""

    text: str | None
    payload: str | None
    language: str
    channel: str
    contact: Mapping[str, Any]  # {"id", "name", "phone", "attributes": {str: str}, "tags": [str]}
    state: str | None
    conversation: str | None = None


@dataclass(frozen=True)
class DialogueAnswer:
    """`state` None: nothing to remember. `language`: the one the replies are in (a backend without
    texts in the requested language falls back)."""

    replies: list[Reply]
    state: str | None
    language: str
    set_attributes: dict[str, str] = field(default_factory=dict)
    handoff: HandoffRequest | None = None


class DialogueBackend(Protocol):
    async def answer(self, request: DialogueRequest) -> DialogueAnswer:
        """Answer one turn. Must not raise for a state it cannot read: start afresh instead."""
        ...
