"""Turn one file's YAML into spec objects: shapes, required keys, regexes and templates.

Names that point into other sections (texts, intents, flows, actions) are only recorded here as `Ref`s;
`loader` checks them once every file has been read.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from bot.dialogue.errors import Where
from bot.dialogue.nlu import stems
from bot.dialogue.source import Map, Seq
from bot.dialogue.spec import (
    Ask,
    Branch,
    ButtonSpec,
    CallAction,
    End,
    Fallback,
    Flow,
    Goto,
    Handoff,
    Intent,
    Ref,
    Say,
    SetAttributes,
    Step,
    StepKind,
    Text,
)
from bot.dialogue.templates import compile_condition, compile_template, reads_nothing

SECTIONS = ("imports", "intents", "flows", "texts", "fallback")
STEP_KINDS = ("say", "ask", "if", "set", "action", "handoff", "goto", "end")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_LANGUAGE = re.compile(r"[a-z]{2}")


@dataclass(frozen=True)
class Part:
    """What one file defines."""

    imports: list[Ref]
    intents: list[Intent]
    flows: list[Flow]
    texts: list[Text]
    fallback: Fallback | None


def parse(doc: Map) -> Part:
    doc.check_keys("a dialog file", (), SECTIONS)
    return Part(
        imports=[Ref(name, where) for name, where in doc.names("imports", "the file")],
        intents=[_intent(name, node) for name, node in _entries(doc, "intents")],
        flows=[_flow(name, node) for name, node in _entries(doc, "flows")],
        texts=[_text(name, node) for name, node in _entries(doc, "texts")],
        fallback=_fallback(doc.mapping("fallback", "the file")) if doc.get("fallback", "") else None,
    )


def _entries(doc: Map, section: str) -> list[tuple[str, Map]]:
    """The named entries of a section."""
    if doc.get(section, "") == "":
        return []
    entries = doc.mapping(section, "the file")
    result = []
    for name, value in entries.items():
        if not isinstance(value, Map):
            raise entries.at(name).error(f"'{name}' in {section} must be a mapping of keys")
        result.append((name, value))
    return result


def _intent(name: str, node: Map) -> Intent:
    what = f"intent '{name}'"
    node.check_keys(what, (), ("examples", "keywords", "commands"))
    examples: dict[str, tuple[str, ...]] = {}
    if node.get("examples", "") != "":
        by_language = node.mapping("examples", what)
        for language in by_language:
            _language(language, by_language.at(language))
            examples[language] = tuple(p for p, _ in by_language.names(language, what))
    keywords = []
    for keyword, at in node.names("keywords", what):
        if not stems(keyword):
            raise at.error(f"keyword '{keyword}' has no words to match")
        keywords.append(keyword)
    commands = []
    for command, at in node.names("commands", what):
        if not command.startswith("/") or " " in command:
            raise at.error(f"command '{command}' must be one word starting with '/', such as /start")
        commands.append(command.casefold())
    if not (examples or keywords or commands):
        raise node.where.error(f"{what} needs at least one of examples, keywords, commands")
    return Intent(name, node.where, examples, tuple(keywords), tuple(commands))


def _flow(name: str, node: Map) -> Flow:
    what = f"flow '{name}'"
    node.check_keys(what, ("steps",), ("trigger",))
    raw_steps = node["steps"]
    if not isinstance(raw_steps, Seq) or not raw_steps:
        raise node.at("steps").error(f"'steps' in {what} must be a list of steps")
    steps = tuple(_step(raw, at) for raw, at in zip(raw_steps, raw_steps.item_where, strict=True))
    ids: dict[str, int] = {}
    for index, step in enumerate(steps):
        if step.id is not None:
            if step.id in ids:
                raise step.where.error(f"duplicate step id '{step.id}' in {what}")
            ids[step.id] = index
    triggers = tuple(Ref(intent, at) for intent, at in node.names("trigger", what))
    return Flow(name, node.where, steps, triggers, ids)


def _step(raw: Any, where: Where) -> Step:
    if isinstance(raw, str):
        if raw != "end":
            raise where.error(f"unknown step kind '{raw}' (expected one of {', '.join(STEP_KINDS)})")
        return Step(End(), where)
    if not isinstance(raw, Map):
        raise where.error("a step must be a mapping such as 'say: text_name'")
    kinds = [key for key in raw if key in STEP_KINDS]
    if not kinds:
        unknown = next((key for key in raw if key != "id"), None)
        problem = f"unknown step kind '{unknown}'" if unknown else "a step without a kind"
        raise raw.at(unknown or "id").error(f"{problem} (expected one of {', '.join(STEP_KINDS)})")
    if len(kinds) > 1:
        raise raw.at(kinds[1]).error(f"a step does one thing; found both '{kinds[0]}' and '{kinds[1]}'")
    step_id = raw.optional_text("id", "a step")
    return Step(_STEP_PARSERS[kinds[0]](raw), raw.where, step_id)


def _say(node: Map) -> Say:
    node.check_keys("say step", ("say",), ("id", "buttons"))
    return Say(_ref(node, "say", "say step"), _buttons(node, "say step"))


def _ask(node: Map) -> Ask:
    what = "ask step"
    node.check_keys(what, ("ask", "prompt"), ("id", "retry", "pattern", "validator", "buttons"))
    slot = node.text("ask", what)
    if not _NAME.fullmatch(slot):
        raise node.at("ask").error(f"slot name '{slot}' must be letters, digits and _")
    pattern = None
    if (source := node.optional_text("pattern", what)) is not None:
        try:
            pattern = re.compile(source)
        except re.error as exc:
            raise node.at("pattern").error(f"bad pattern '{source}': {exc}") from exc
    return Ask(
        slot=slot,
        prompt=_ref(node, "prompt", what),
        retry=_optional_ref(node, "retry", what),
        pattern=pattern,
        validator=_optional_ref(node, "validator", what),
        buttons=_buttons(node, what),
    )


def _branch(node: Map) -> Branch:
    node.check_keys("if step", ("if", "then"), ("id", "else"))
    condition = compile_condition(node.text("if", "if step"), node.at("if"))
    return Branch(condition, _ref(node, "then", "if step"), _optional_ref(node, "else", "if step"))


def _set(node: Map) -> SetAttributes:
    node.check_keys("set step", ("set",), ("id",))
    values = node.mapping("set", "set step")
    return SetAttributes(
        tuple(
            (name, compile_template(values.text(name, "set step"), values.at(name), f"set '{name}'"))
            for name in values
        )
    )


def _action(node: Map) -> CallAction:
    node.check_keys("action step", ("action",), ("id",))
    return CallAction(_ref(node, "action", "action step"))


def _handoff(node: Map) -> Handoff:
    node.check_keys("handoff step", ("handoff",), ("id", "reason", "team"))
    reason = node.optional_text("reason", "handoff step") or "requested"
    return Handoff(_ref(node, "handoff", "handoff step"), reason, node.optional_text("team", "handoff step"))


def _goto(node: Map) -> Goto:
    node.check_keys("goto step", ("goto",), ("id",))
    return Goto(_ref(node, "goto", "goto step"))


def _end(node: Map) -> End:
    node.check_keys("end step", (), ("id", "end"))
    return End()


_STEP_PARSERS: dict[str, Callable[[Map], StepKind]] = {
    "say": _say,
    "ask": _ask,
    "if": _branch,
    "set": _set,
    "action": _action,
    "handoff": _handoff,
    "goto": _goto,
    "end": _end,
}


def _buttons(node: Map, what: str) -> tuple[ButtonSpec, ...]:
    raw = node.get("buttons", "")
    if raw == "":
        return ()
    if not isinstance(raw, Seq):
        raise node.at("buttons").error(f"'buttons' in {what} must be a list")
    buttons = []
    for item, where in zip(raw, raw.item_where, strict=True):
        if not isinstance(item, Map):
            raise where.error("a button must be a mapping such as '{text: btn_name, payload: intent}'")
        item.check_keys("button", ("payload",), ("text", "title"))
        if ("text" in item) == ("title" in item):
            raise item.where.error("a button needs exactly one of 'text' (a text name) or 'title'")
        label = _ref(item, "text", "button") if "text" in item else item.text("title", "button")
        buttons.append(ButtonSpec(label, item.text("payload", "button"), item.at("payload")))
    return tuple(buttons)


def _text(name: str, node: Map) -> Text:
    what = f"text '{name}'"
    if "en" not in node:
        raise node.where.error(f"{what} is missing required key 'en'")
    by_language, fixed = {}, {}
    for language in node:
        at = node.at(language)
        _language(language, at)
        source = node.text(language, what)
        by_language[language] = compile_template(source, at, f"{what} ({language})")
        if reads_nothing(source):
            fixed[language] = by_language[language].render().strip()  # as Text.render renders it
    return Text(name, node.where, by_language, fixed)


def _fallback(node: Map) -> Fallback:
    what = "fallback"
    node.check_keys(what, ("say", "handoff"), ("buttons", "handoff_after", "error"))
    after = node.optional_text("handoff_after", what) or "3"
    if not after.isdigit() or int(after) < 1:
        raise node.at("handoff_after").error("'handoff_after' must be a whole number, 1 or more")
    return Fallback(
        where=node.where,
        say=Say(_ref(node, "say", what), _buttons(node, what)),
        handoff=_ref(node, "handoff", what),
        handoff_after=int(after),
        error=_optional_ref(node, "error", what),
    )


def _ref(node: Map, key: str, what: str) -> Ref:
    return Ref(node.text(key, what), node.at(key))


def _optional_ref(node: Map, key: str, what: str) -> Ref | None:
    return _ref(node, key, what) if node.optional_text(key, what) is not None else None


def _language(code: str, where: Where) -> None:
    if not _LANGUAGE.fullmatch(code):
        raise where.error(f"'{code}' is not a two-letter language code such as en or ru")
