"""Read every `*.yaml` in the dialogs directory into one checked `Dialogs`.

Files are merged section by section; a name defined twice is an error, as is any reference to a text,
intent, flow, step, action or validator that does not exist. Everything is checked here so the engine
can trust the data and never fail on a typo in front of a customer.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from bot.dialogue.actions import ACTIONS, VALIDATORS, ActionFn, ValidatorFn
from bot.dialogue.errors import DialogError
from bot.dialogue.parse import parse
from bot.dialogue.source import read
from bot.dialogue.spec import (
    Ask,
    Branch,
    ButtonSpec,
    CallAction,
    Fallback,
    Flow,
    Goto,
    Handoff,
    Intent,
    Ref,
    Say,
    Text,
)
from bot.models import Button

FLOW_PAYLOAD = "flow:"


@dataclass(frozen=True)
class Dialogs:
    intents: Mapping[str, Intent]
    flows: Mapping[str, Flow]
    texts: Mapping[str, Text]
    fallback: Fallback
    starts: Mapping[str, str]  # intent → the flow it triggers
    commands: Mapping[str, str]  # "/start" → intent
    actions: Mapping[str, ActionFn]
    validators: Mapping[str, ValidatorFn]

    def fixed_buttons(self) -> list[tuple[Button, ...]]:
        """Each row of buttons a step offers, in each language, where no title reads a variable: the
        same for everyone (the history stores them once, bot.context.phrases). Titled as the engine
        titles them: a text missing a language falls back to English."""
        rows = [row for row in [self.fallback.say.buttons, *(
            step.kind.buttons for flow in self.flows.values() for step in flow.steps
            if isinstance(step.kind, Say | Ask))] if row]
        languages = sorted({code for text in self.texts.values() for code in text.by_language})
        fixed = []
        for row in rows:
            for language in languages:
                titles = [self._fixed_title(spec.label, language) for spec in row]
                if None not in titles:
                    fixed.append(tuple(Button(title=str(title), payload=spec.payload)
                                       for title, spec in zip(titles, row, strict=True)))
        return fixed

    def _fixed_title(self, label: Ref | str, language: str) -> str | None:
        if isinstance(label, str):
            return label
        text = self.texts[label.name]
        return text.fixed.get(language if language in text.by_language else "en")


_N = TypeVar("_N", Intent, Flow, Text)


def load_dialogs(directory: Path) -> Dialogs:
    if not directory.is_dir():
        raise DialogError(f"{directory}: not a directory")
    files = sorted(directory.glob("*.yaml"))
    parts = [parse(doc) for path in files if (doc := read(path)) is not None]
    if not parts:
        raise DialogError(f"{directory}: no dialogs (*.yaml files) in the directory")
    for part in parts:
        _import(part.imports)
    fallbacks = [part.fallback for part in parts if part.fallback is not None]
    if not fallbacks:
        raise DialogError(f"{directory}: no file defines a 'fallback'")
    if len(fallbacks) > 1:
        first = fallbacks[0].where
        raise fallbacks[1].where.error(f"fallback is defined twice (first at {first.path}:{first.line})")
    intents = _merge("intent", (i for part in parts for i in part.intents))
    flows = _merge("flow", (f for part in parts for f in part.flows))
    dialogs = Dialogs(
        intents=intents,
        flows=flows,
        texts=_merge("text", (t for part in parts for t in part.texts)),
        fallback=fallbacks[0],
        starts=_starts(flows.values(), intents),
        commands=_commands(intents.values()),
        actions=dict(ACTIONS),
        validators=dict(VALIDATORS),
    )
    _check(dialogs)
    return dialogs


def _import(modules: list[Ref]) -> None:
    for module in modules:
        try:
            importlib.import_module(module.name)
        except Exception as exc:  # any failure of the imported code is the author's to fix
            raise module.where.error(f"cannot import '{module.name}': {exc}") from exc


def _merge(kind: str, items: Iterable[_N]) -> dict[str, _N]:
    merged: dict[str, _N] = {}
    for item in items:
        if (first := merged.get(item.name)) is not None:
            at = f"{first.where.path}:{first.where.line}"
            raise item.where.error(f"{kind} '{item.name}' is defined twice (first at {at})")
        merged[item.name] = item
    return merged


def _starts(flows: Iterable[Flow], intents: Mapping[str, Intent]) -> dict[str, str]:
    starts: dict[str, str] = {}
    for flow in flows:
        for trigger in flow.triggers:
            _need(trigger, intents, "intent")
            if trigger.name in starts:
                raise trigger.where.error(
                    f"intent '{trigger.name}' already starts flow '{starts[trigger.name]}'"
                )
            starts[trigger.name] = flow.name
    return starts


def _commands(intents: Iterable[Intent]) -> dict[str, str]:
    commands: dict[str, str] = {}
    for intent in intents:
        for command in intent.commands:
            if command in commands:
                raise intent.where.error(
                    f"command '{command}' already belongs to intent '{commands[command]}'"
                )
            commands[command] = intent.name
    return commands


def _check(d: Dialogs) -> None:
    for flow in d.flows.values():
        for step in flow.steps:
            match step.kind:
                case Say(text=text, buttons=buttons):
                    _need(text, d.texts, "text")
                    _check_menu(buttons, d)
                case Ask() as ask:
                    for ref in (ask.prompt, ask.retry):
                        _need(ref, d.texts, "text")
                    _need(ask.validator, d.validators, "validator")
                    for button in ask.buttons:  # any payload: it is the answer
                        _need_label(button, d)
                case Branch(then=then, otherwise=otherwise):
                    for target in (then, otherwise):
                        if target is not None and target.name not in flow.ids and target.name not in d.flows:
                            raise target.where.error(f"unknown step or flow '{target.name}'")
                case CallAction(action=ref):
                    _need(ref, d.actions, "action")
                case Handoff(text=text):
                    _need(text, d.texts, "text")
                case Goto(flow=ref):
                    _need(ref, d.flows, "flow")
    fallback = d.fallback
    for ref in (fallback.say.text, fallback.handoff, fallback.error):
        _need(ref, d.texts, "text")
    _check_menu(fallback.say.buttons, d)


def _check_menu(buttons: tuple[ButtonSpec, ...], d: Dialogs) -> None:
    """Buttons outside an `ask` must start something: an intent, a command or `flow:<name>`."""
    for button in buttons:
        _need_label(button, d)
        payload = button.payload
        if payload.startswith(FLOW_PAYLOAD):
            _need(Ref(payload.removeprefix(FLOW_PAYLOAD), button.where), d.flows, "flow")
            continue
        intent = payload if payload in d.intents else d.commands.get(payload.casefold())
        if intent is None:
            raise button.where.error(f"button payload '{payload}' is not an intent, a command or flow:<name>")
        if intent not in d.starts:
            raise button.where.error(f"button payload '{payload}': intent '{intent}' starts no flow")


def _need_label(button: ButtonSpec, d: Dialogs) -> None:
    if isinstance(button.label, Ref):
        _need(button.label, d.texts, "text")


def _need(ref: Ref | None, known: Mapping[str, object], kind: str) -> None:
    if ref is not None and ref.name not in known:
        raise ref.where.error(f"unknown {kind} '{ref.name}'")
