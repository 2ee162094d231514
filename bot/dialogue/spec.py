"""The parsed, checked form of the dialogs: what the engine walks at run time.

Every name that points elsewhere is a `Ref` carrying its line, so the cross-file checks that run after
all files are read can still blame the exact place.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from jinja2 import Template
from jinja2.environment import TemplateExpression

from bot.dialogue.errors import Where


@dataclass(frozen=True)
class Ref:
    name: str
    where: Where


@dataclass(frozen=True)
class ButtonSpec:
    """A button titled by a translated text (a `Ref`) or by a literal title (a `str`)."""

    label: Ref | str
    payload: str
    where: Where


@dataclass(frozen=True)
class Say:
    text: Ref
    buttons: tuple[ButtonSpec, ...] = ()


@dataclass(frozen=True)
class Ask:
    slot: str
    prompt: Ref
    retry: Ref | None = None
    pattern: re.Pattern[str] | None = None
    validator: Ref | None = None
    buttons: tuple[ButtonSpec, ...] = ()


@dataclass(frozen=True)
class Branch:
    condition: TemplateExpression
    then: Ref
    otherwise: Ref | None = None  # None: carry on with the next step


@dataclass(frozen=True)
class SetAttributes:
    values: tuple[tuple[str, Template], ...]


@dataclass(frozen=True)
class CallAction:
    action: Ref


@dataclass(frozen=True)
class Handoff:
    text: Ref
    reason: str
    team: str | None = None  # whose queue; None: the hub's default team


@dataclass(frozen=True)
class Goto:
    flow: Ref


@dataclass(frozen=True)
class End:
    pass


StepKind = Say | Ask | Branch | SetAttributes | CallAction | Handoff | Goto | End


@dataclass(frozen=True)
class Step:
    kind: StepKind
    where: Where
    id: str | None = None


@dataclass(frozen=True)
class Flow:
    name: str
    where: Where
    steps: tuple[Step, ...]
    triggers: tuple[Ref, ...] = ()
    ids: Mapping[str, int] = field(default_factory=dict)  # step id → index

    def key(self, index: int) -> str:
        """How `DialogState.step` names a step: its id, else its index."""
        return self.steps[index].id or str(index)

    def index(self, key: str) -> int | None:
        if key in self.ids:
            return self.ids[key]
        return int(key) if key.isdigit() and int(key) < len(self.steps) else None


@dataclass(frozen=True)
class Intent:
    name: str
    where: Where
    examples: Mapping[str, tuple[str, ...]]  # language → phrases
    keywords: tuple[str, ...] = ()
    commands: tuple[str, ...] = ()


@dataclass(frozen=True)
class Text:
    name: str
    where: Where
    by_language: Mapping[str, Template]  # always has "en"
    fixed: Mapping[str, str] = field(default_factory=dict)  # language -> the words, where no variable is read

    def render(self, language: str, context: Mapping[str, Any]) -> str:
        template = self.by_language.get(language) or self.by_language["en"]
        return template.render(context).strip()


@dataclass(frozen=True)
class Fallback:
    where: Where
    say: Say
    handoff: Ref
    handoff_after: int
    error: Ref | None = None
