"""Rasa 3.6 training data from the hub's dialogs, so a team can train Rasa on the intents the built-in
engine uses and keep one set of dialogs.

What carries over: intents (examples and the keywords written in the chosen language's script), every
text as an `utter_<name>` response (`{{ slots.x }}` becomes Rasa's `{x}`), a `say` step's buttons, and
one rule per *simple* flow — started by an intent, only `say`, `handoff` and `end` steps — plus the
fallback's rule on `nlu_fallback`.

What does not: flows with `ask`, `action`, `if`, `set` or `goto` steps (their logic lives in the engine;
each is named in a note); other Jinja (conditions, contact fields), rendered as for a contact without
them; a handoff step's team and reason, because a rule cannot set slots — its rule runs
`action_handoff`, which reads `handoff_team`/`handoff_reason` only if something else set them; and the
fallback's hand-over after repeated misses.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from jinja2 import meta, nodes

from bot.dialogue.loader import FLOW_PAYLOAD, Dialogs
from bot.dialogue.source import Map, read
from bot.dialogue.spec import (
    Ask,
    Branch,
    ButtonSpec,
    CallAction,
    End,
    Goto,
    Handoff,
    Say,
    SetAttributes,
    StepKind,
    Text,
)
from bot.dialogue.templates import ENV

FORMAT_VERSION = "3.1"  # Rasa 3.x training data
HANDOFF_ACTION = "action_handoff"
ACTIONS = (HANDOFF_ACTION, "action_set_contact_attribute", "action_crm_lookup")
# Set by the hub's action server (slot mappings of type custom), never by NLU; none steers the dialogue.
HUB_SLOTS = {
    **{name: "text" for name in ("handoff_team", "handoff_reason", "attribute_name", "attribute_value",
                                 "contact_name", "contact_phone", "contact_language")},
    "contact_attributes": "any",
}
ENGINE_ONLY: dict[type, str] = {Ask: "ask", CallAction: "action", Branch: "if", SetAttributes: "set", Goto: "goto"}
CYRILLIC_LANGUAGES = frozenset({"ru", "uk", "be", "bg", "kk", "mk", "sr"})
_CYRILLIC = re.compile(r"[а-яё]", re.IGNORECASE)
HEADER = "# Written by `omnihub rasa export` from the hub's dialogs: edit those and export again.\n"


@dataclass(frozen=True)
class Project:
    """The files of a Rasa project (path → YAML document) and what could not be carried over."""

    files: dict[str, dict[str, Any]]
    notes: list[str] = field(default_factory=list)


def languages(dialogs: Dialogs) -> list[str]:
    """The languages the dialogs have examples or texts in."""
    found = {"en"}
    for intent in dialogs.intents.values():
        found.update(intent.examples)
    for text in dialogs.texts.values():
        found.update(text.by_language)
    return sorted(found)


def export_project(dialogs: Dialogs, language: str, *, hub_url: str, token: str | None) -> Project:
    notes: list[str] = []
    responses, slot_names = _responses(dialogs, language, notes)
    domain = {
        "version": FORMAT_VERSION,
        "intents": list(dialogs.intents),
        "slots": _slots(dialogs, slot_names),
        "responses": responses,
        "actions": list(ACTIONS),
        "session_config": {"session_expiration_time": 60, "carry_over_slots_to_new_session": True},
    }
    endpoint: dict[str, str] = {"url": f"{hub_url.rstrip('/')}/rasa/webhook"}
    if token:
        endpoint["token"] = token  # Rasa sends it as the `token` query parameter
    return Project(
        files={
            "config.yml": _config(language),
            "domain.yml": domain,
            "data/nlu.yml": {"version": FORMAT_VERSION, "nlu": _nlu(dialogs, language, notes)},
            "data/rules.yml": {"version": FORMAT_VERSION, "rules": _rules(dialogs, notes)},
            "endpoints.yml": {"action_endpoint": endpoint},
            "credentials.yml": {"rest": None},
        },
        notes=list(dict.fromkeys(notes)),  # a button on three menus is one warning
    )


def write_project(project: Project, out: Path) -> list[Path]:
    """Write every file under `out`; an OSError says what could not be written."""
    written = []
    for name, document in project.files.items():
        path = out / name
        path.parent.mkdir(parents=True, exist_ok=True)
        dumped = yaml.dump(document, Dumper=_Dumper, allow_unicode=True, sort_keys=False, width=10_000)
        path.write_text(HEADER + dumped, encoding="utf-8")
        written.append(path)
    return written


def _config(language: str) -> dict[str, Any]:
    """Small enough to train in about a minute on two cores; char n-grams absorb word endings. A fixed
    seed makes a retrain answer the same; `constrain_similarities` left off, as it sent more unrelated
    text to an intent with near-certain confidence instead of to the fallback."""
    return {
        "recipe": "default.v1",
        "assistant_id": f"omnihub-{language}",
        "language": language,
        "pipeline": [
            {"name": "WhitespaceTokenizer"},
            {"name": "CountVectorsFeaturizer"},
            {"name": "CountVectorsFeaturizer", "analyzer": "char_wb", "min_ngram": 1, "max_ngram": 4},
            {"name": "DIETClassifier", "epochs": 100, "random_seed": 1},
            {"name": "EntitySynonymMapper"},
            {"name": "FallbackClassifier", "threshold": 0.5},
        ],
        "policies": [{"name": "MemoizationPolicy"}, {"name": "RulePolicy"}],
    }


def _nlu(dialogs: Dialogs, language: str, notes: list[str]) -> list[dict[str, Any]]:
    cyrillic = language in CYRILLIC_LANGUAGES
    entries = []
    for intent in dialogs.intents.values():
        keywords = [k for k in intent.keywords if bool(_CYRILLIC.search(k)) == cyrillic]
        examples = list(dict.fromkeys([*intent.examples.get(language, ()), *keywords]))
        if not examples:
            notes.append(f"warning: intent '{intent.name}' has no examples in {language}: "
                         f"only the payload /{intent.name} reaches it")
            continue
        entries.append({"intent": intent.name, "examples": _Block("".join(f"- {e}\n" for e in examples))})
    return entries


def _rules(dialogs: Dialogs, notes: list[str]) -> list[dict[str, Any]]:
    rules = []
    for flow in dialogs.flows.values():
        engine_only = sorted({ENGINE_ONLY[type(s.kind)] for s in flow.steps if type(s.kind) in ENGINE_ONLY})
        if engine_only:
            notes.append(f"skipped flow '{flow.name}': its {', '.join(engine_only)} steps need the hub's engine")
            continue
        if not flow.triggers:
            notes.append(f"skipped flow '{flow.name}': no intent starts it")
            continue
        actions = _actions(step.kind for step in flow.steps)
        for trigger in flow.triggers:
            name = flow.name if len(flow.triggers) == 1 else f"{flow.name} ({trigger.name})"
            rules.append({"rule": name, "steps": [{"intent": trigger.name}, *actions]})
    say = dialogs.fallback.say.text.name
    rules.append({"rule": "fallback", "steps": [{"intent": "nlu_fallback"}, {"action": f"utter_{say}"}]})
    return rules


def _actions(steps: Iterable[StepKind]) -> list[dict[str, str]]:
    """A simple flow's steps as rule actions, up to its first `end` or `handoff`."""
    actions: list[dict[str, str]] = []
    for kind in steps:
        match kind:
            case Say(text=text):
                actions.append({"action": f"utter_{text.name}"})
            case Handoff(text=text):
                actions += [{"action": f"utter_{text.name}"}, {"action": HANDOFF_ACTION}]
                break
            case End():
                break
    return actions


def _responses(dialogs: Dialogs, language: str, notes: list[str]) -> tuple[dict[str, Any], set[str]]:
    """`utter_<text>` for every text, and the slots the texts mention."""
    buttons = _buttons_by_text(dialogs, notes)
    files: dict[Path, Map] = {}
    responses: dict[str, Any] = {}
    slots: set[str] = set()
    for name, text in dialogs.texts.items():
        tree = ENV.parse(_source(text, language, files))
        slots.update(_slot_names(tree))
        rendered = text.render(language, {"slots": _AsRasaSlot()})
        if beyond := _beyond_slots(tree):
            rendered = re.sub(r" {2,}", " ", rendered)  # where an empty value stood
            notes.append(f"warning: text '{name}' uses {beyond}, which Rasa has not: exported as {rendered!r}")
        response: dict[str, Any] = {"text": rendered}
        if name in buttons:
            response["buttons"] = [_button(b, dialogs, language, notes) for b in buttons[name]]
        responses[f"utter_{name}"] = [response]
    return responses, slots


def _source(text: Text, language: str, files: dict[Path, Map]) -> str:
    """A text's Jinja as written: compiled templates keep no source, so it is read back from its file."""
    path = text.where.path
    if path not in files:
        files[path] = read(path) or Map(text.where)
    entry = files[path].mapping("texts", str(path)).mapping(text.name, text.name)
    return entry.text(language if language in text.by_language else "en", text.name)


def _buttons_by_text(dialogs: Dialogs, notes: list[str]) -> dict[str, tuple[ButtonSpec, ...]]:
    """The buttons each text is said with; a text said with different sets keeps the first."""
    says: list[StepKind] = [step.kind for flow in dialogs.flows.values() for step in flow.steps]
    says.append(dialogs.fallback.say)
    found: dict[str, tuple[ButtonSpec, ...]] = {}
    for kind in says:
        if not isinstance(kind, Say) or not kind.buttons:
            continue
        first = found.setdefault(kind.text.name, kind.buttons)
        if [(b.label, b.payload) for b in first] != [(b.label, b.payload) for b in kind.buttons]:
            where = kind.buttons[0].where
            notes.append(f"warning: text '{kind.text.name}' has other buttons at {where.path}:{where.line}: "
                         "its response keeps the first set")
    return found


def _button(button: ButtonSpec, dialogs: Dialogs, language: str, notes: list[str]) -> dict[str, str]:
    title = button.label if isinstance(button.label, str) else dialogs.texts[button.label.name].render(language, {})
    payload = button.payload
    if payload.startswith(FLOW_PAYLOAD):
        triggers = dialogs.flows[payload.removeprefix(FLOW_PAYLOAD)].triggers
        intent = triggers[0].name if triggers else None
    else:
        intent = payload if payload in dialogs.intents else dialogs.commands.get(payload.casefold())
    if intent is None:
        notes.append(f"warning: button '{title}': no intent starts '{payload}', "
                     "so Rasa gets the payload as a message")
        return {"title": title, "payload": payload}
    return {"title": title, "payload": f"/{intent}"}


def _slots(dialogs: Dialogs, mentioned: set[str]) -> dict[str, Any]:
    """The hub's slots, then any other slot a text mentions or an `ask` fills (for a custom action)."""
    asked = {s.kind.slot for flow in dialogs.flows.values() for s in flow.steps if isinstance(s.kind, Ask)}
    types = {**HUB_SLOTS, **{name: "text" for name in sorted((mentioned | asked) - HUB_SLOTS.keys())}}
    return {name: {"type": kind, "influence_conversation": False, "mappings": [{"type": "custom"}]}
            for name, kind in types.items()}


def _slot_names(tree: nodes.Template) -> set[str]:
    return {node.attr for node in tree.find_all(nodes.Getattr) if _is_slot(node)}


def _beyond_slots(tree: nodes.Template) -> str:
    """What a text uses besides plain `{{ slots.x }}` (e.g. "contact, conditions"); "" for nothing."""
    used = sorted(meta.find_undeclared_variables(tree) - {"slots"})
    if not all(isinstance(node, nodes.Output) for node in tree.body):  # {% if %}, {% for %}
        used.append("conditions")
    elif not used and not all(isinstance(part, nodes.TemplateData) or _is_slot(part)
                              for output in tree.body for part in output.iter_child_nodes()):
        used.append("expressions")  # filters, arithmetic
    return ", ".join(used)


def _is_slot(node: nodes.Node) -> bool:
    return isinstance(node, nodes.Getattr) and isinstance(node.node, nodes.Name) and node.node.name == "slots"


class _AsRasaSlot(dict[str, str]):
    """`{{ slots.x }}` renders as Rasa's `{x}`, which Rasa fills from its own slot `x`."""

    def __missing__(self, key: str) -> str:
        return f"{{{key}}}"


class _Block(str):
    """A string written as a YAML literal block, the way Rasa's own examples are laid out."""


class _Dumper(yaml.SafeDumper):
    pass


_Dumper.add_representer(
    _Block, lambda dumper, value: dumper.represent_scalar("tag:yaml.org,2002:str", str(value), style="|"))
