"""Python hooks that dialogs call by name: async actions and answer validators.

Both live in module-level registries filled by decorators at import time; a dialog file lists the
modules to import under `imports:`, and the loader resolves every name once, so a typo fails at load.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar


@dataclass(frozen=True)
class ActionContext:
    """What an action may read. Read-only: the action says what to change through `ActionResult`."""

    slots: Mapping[str, str]
    contact: Mapping[str, Any]
    language: str
    channel: str


@dataclass(frozen=True)
class ActionResult:
    """Slots and contact attributes to set, then replies: `text_key` (a dialog text) and/or raw `texts`."""

    slots: Mapping[str, str] = field(default_factory=dict)
    attributes: Mapping[str, str] = field(default_factory=dict)
    text_key: str | None = None
    texts: Sequence[str] = ()


class RetryLater(Exception):
    """Raised by an action whose failure is passing (a CRM that times out): the turn is not answered
    now but tried again after a pause, the contact's later messages waiting behind it. Any other
    exception from an action hands the conversation to a human at once."""


ActionFn = Callable[[ActionContext], Awaitable[ActionResult]]
# A validator takes the customer's answer and returns it cleaned ("#12 345" → "12345"), or None to reject.
ValidatorFn = Callable[[str], str | None]

ACTIONS: dict[str, ActionFn] = {}
VALIDATORS: dict[str, ValidatorFn] = {}

_F = TypeVar("_F", ActionFn, ValidatorFn)


def _registrar(registry: dict[str, _F], kind: str, name: str) -> Callable[[_F], _F]:
    def register(fn: _F) -> _F:
        if registry.get(name, fn) is not fn:
            raise ValueError(f"{kind} '{name}' is already registered")
        registry[name] = fn
        return fn

    return register


def action(name: str) -> Callable[[ActionFn], ActionFn]:
    """Register `async def f(ctx: ActionContext) -> ActionResult` as the dialog action `name`."""
    return _registrar(ACTIONS, "action", name)


def validator(name: str) -> Callable[[ValidatorFn], ValidatorFn]:
    """Register `def f(answer: str) -> str | None` as the answer validator `name`."""
    return _registrar(VALIDATORS, "validator", name)
