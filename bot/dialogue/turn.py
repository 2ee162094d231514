"""What the caller and the engine exchange for one customer turn.

`DialogState` is persisted per conversation as JSON between turns, so it stays small: which `ask` is
waiting, the slots filled so far and the count of misses.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, Field, ValidationError

from bot.models import Reply


class DialogState(BaseModel):
    """Where a conversation stands; the caller persists it as JSON between turns."""

    flow: str | None = None
    step: str | None = None  # id (or index) of the `ask` step waiting for an answer
    slots: dict[str, str] = Field(default_factory=dict)
    misses: int = 0  # consecutive messages the bot did not understand

    @classmethod
    def read(cls, stored: str | None) -> DialogState:
        """The stored state; a fresh one when there is none or it cannot be read (written by another
        backend or an older version), so one bad field cannot fail every turn of a conversation."""
        if stored is None:
            return cls()
        try:
            return cls.model_validate_json(stored)
        except ValidationError:
            return cls()


@dataclass(frozen=True)
class Turn:
    text: str | None
    payload: str | None
    language: str | None
    state: DialogState
    channel: str
    contact: Mapping[str, Any]  # {"id", "name", "phone", "attributes": {str: str}, "tags": [str]}


@dataclass(frozen=True)
class TurnResult:
    replies: list[Reply]
    state: DialogState
    language: str
    set_attributes: dict[str, str]
    handoff: str | None  # "requested" (or a handoff step's reason), "fallback", "error"; else None
    intent: str | None
    handoff_team: str | None = None  # the handoff step's team, if it names one
