"""Helpers for dialogue tests: write dialog files into a temp directory, and chat with an engine the way
the pipeline does (state and language carried from one turn to the next, each message's language
judged by bot.dialogue.language)."""

from __future__ import annotations

import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from bot.dialogue import DialogState, Engine, Turn, TurnResult
from bot.dialogue.language import reply_language
from bot.models import Reply


class Chat:
    def __init__(
        self, engine: Engine, *, name: str | None = None, language: str | None = None, chosen: str | None = None
    ) -> None:
        self.engine = engine
        self.state = DialogState()
        self.language = language
        self.chosen = chosen  # a language set for the contact (by the CRM)
        self.contact: dict[str, Any] = {"id": "c1", "name": name, "phone": None, "attributes": {}, "tags": []}
        self.last: TurnResult | None = None

    async def send(self, text: str | None = None, payload: str | None = None) -> TurnResult:
        result = await self.engine.respond(
            Turn(
                text=text,
                payload=payload,
                language=reply_language(text, chosen=self.chosen, current=self.language, default="en"),
                state=self.state,
                channel="telegram",
                contact=self.contact,
            )
        )
        self.state, self.language, self.last = result.state, result.language, result
        self.contact["attributes"].update(result.set_attributes)
        return result

    async def texts(self, text: str | None = None, payload: str | None = None) -> list[str | None]:
        """What the customer reads after sending this."""
        return [reply.text for reply in (await self.send(text, payload)).replies]

    def buttons(self, index: int = -1) -> list[tuple[str, str]]:
        """(title, payload) of the buttons under one reply of the last turn."""
        assert self.last is not None
        reply: Reply = self.last.replies[index]
        return [(b.title, b.payload) for b in reply.buttons]


@pytest.fixture
def write(tmp_path: Path) -> Callable[[str, str], Path]:
    """Write one dialog file (dedented, so line 1 is the first line of the string)."""

    def write_file(name: str, text: str) -> Path:
        path = tmp_path / name
        path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
        return path

    return write_file


@pytest.fixture
def new_chat() -> Callable[..., Chat]:
    return Chat
