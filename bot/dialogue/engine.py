"""The YAML dialogue engine: one customer turn in; replies, the next state and side effects out.

`respond` is pure apart from awaiting actions: the caller loads the `DialogState` and the contact and
stores what comes back (state, language, attributes, handoff). A flow only ever pauses at an `ask`, so
the whole state is "which ask is waiting", the slots filled so far and the count of misses. `answer`
is the same as a `DialogueBackend` (bot.dialogue.backend), with the state as opaque JSON.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, TypeVar

from jinja2.environment import TemplateExpression

from bot.dialogue.actions import ActionContext, RetryLater
from bot.dialogue.backend import DialogueAnswer, DialogueRequest, HandoffRequest
from bot.dialogue.loader import FLOW_PAYLOAD, Dialogs, load_dialogs
from bot.dialogue.nlu import IntentMatcher, Understand
from bot.dialogue.spec import Ask, Branch, ButtonSpec, CallAction, End, Flow, Goto, Handoff, Ref, Say, SetAttributes
from bot.dialogue.turn import DialogState, Turn, TurnResult
from bot.models import Button, Reply

log = logging.getLogger(__name__)
_T = TypeVar("_T")

MAX_STEPS = 100  # steps one turn may run: a goto loop fails (and hands off) instead of spinning


class _Broken(Exception):
    """A step failed at run time: an action or validator raised, or a template did."""


@dataclass(frozen=True)
class _Waiting:
    flow: Flow
    index: int
    ask: Ask


@dataclass
class _Run:
    """What one turn builds up before it becomes a `TurnResult`."""

    turn: Turn
    language: str
    slots: dict[str, str]
    misses: int
    attributes: dict[str, str] = field(default_factory=dict)
    replies: list[Reply] = field(default_factory=list)
    waiting: tuple[str, str] | None = None  # (flow, step) of the ask left waiting
    handoff: str | None = None
    handoff_team: str | None = None
    intent: str | None = None
    entities: dict[str, str] = field(default_factory=dict)  # an outside NLU's, for the flow it starts
    prefilled: set[str] = field(default_factory=set)  # slots an entity filled: their asks are skipped

    def context(self) -> dict[str, Any]:
        """Template variables; attributes set earlier in this turn are already visible."""
        contact = dict(self.turn.contact)
        contact["attributes"] = {**(contact.get("attributes") or {}), **self.attributes}
        return {
            "contact": contact,
            "slots": self.slots,
            "channel": self.turn.channel,
            "language": self.language,
        }

    def result(self) -> TurnResult:
        if self.waiting is None:
            state = DialogState(misses=self.misses)  # a finished flow forgets its slots
        else:
            state = DialogState(
                flow=self.waiting[0], step=self.waiting[1], slots=self.slots, misses=self.misses
            )
        return TurnResult(self.replies, state, self.language, self.attributes, self.handoff, self.intent,
                          self.handoff_team)


class Engine:
    def __init__(self, dialogs: Dialogs, understand: Understand | None = None) -> None:
        """`understand`: an outside NLU (Rasa's `/model/parse`, bot.rasa) asked before the built-in
        matcher, which answers whenever it has no opinion (slow, down)."""
        self._d = dialogs
        self._understand = understand
        self._matcher = IntentMatcher(dialogs.intents.values())
        self._languages = frozenset(code for text in dialogs.texts.values() for code in text.by_language)

    @classmethod
    def load(cls, directory: Path) -> Engine:
        """Load and check every `*.yaml` in `directory`; raises `DialogError("file:line: ...")`."""
        return cls(load_dialogs(directory))

    async def answer(self, request: DialogueRequest) -> DialogueAnswer:
        state = DialogState.read(request.state)
        turn = Turn(request.text, request.payload, request.language, state, request.channel, request.contact)
        result = await self.respond(turn)
        kept = result.state.model_dump_json(exclude_defaults=True) if result.state != DialogState() else None
        handoff = HandoffRequest(result.handoff, result.handoff_team) if result.handoff else None
        return DialogueAnswer(result.replies, kept, result.language, result.set_attributes, handoff)

    async def respond(self, turn: Turn) -> TurnResult:
        waiting = self._waiting(turn)
        slots = dict(turn.state.slots) if waiting else {}
        run = _Run(turn, self._language(turn), slots, turn.state.misses)
        try:
            await self._dispatch(turn, waiting, run)
        except _Broken:
            log.exception("dialog step failed; handing the conversation to a human")
            run.waiting, run.misses, run.handoff = None, 0, "error"
            if self._d.fallback.error is not None:
                with contextlib.suppress(_Broken):  # a broken error text must not hide the handoff
                    self._say(self._d.fallback.error.name, (), run)
        return run.result()

    async def _dispatch(self, turn: Turn, waiting: _Waiting | None, run: _Run) -> None:
        payload = (turn.payload or "").strip() or None
        text = (turn.text or "").strip() or None
        command = self._command(payload) or self._command(text)
        if command is not None:  # /start and friends restart whatever was going on
            return await self._start_intent(command, waiting, run)
        if payload is not None:
            if waiting is not None and any(b.payload == payload for b in waiting.ask.buttons):
                return await self._answer(waiting, payload, run)
            if payload.startswith(FLOW_PAYLOAD) and payload.removeprefix(FLOW_PAYLOAD) in self._d.flows:
                return await self._start(self._d.flows[payload.removeprefix(FLOW_PAYLOAD)], run)
            if (named := payload.removeprefix("/").partition("{")[0]) in self._d.intents:
                return await self._start_intent(named, waiting, run)  # `human`, or Rasa's `/human`
            if waiting is not None:
                return await self._reply_to_ask(waiting, payload, run)
        if text is None:  # an unknown payload or nothing readable (a sticker, a photo)
            return await self._miss(waiting, run)
        if waiting is not None:
            return await self._reply_to_ask(waiting, text, run)
        await self._start_intent(await self._intent(text, run), waiting, run)

    async def _reply_to_ask(self, waiting: _Waiting, answer: str, run: _Run) -> None:
        value = self._validate(waiting.ask, answer)
        if value is not None:
            return await self._answer(waiting, value, run)
        intent = await self._intent(answer, run)
        if intent is not None and self._d.starts.get(intent, waiting.flow.name) != waiting.flow.name:
            return await self._start_intent(intent, waiting, run)  # the customer changed the subject
        await self._miss(waiting, run)

    async def _start_intent(self, intent: str | None, waiting: _Waiting | None, run: _Run) -> None:
        run.intent = intent
        flow = self._d.starts.get(intent) if intent is not None else None
        if flow is None:
            return await self._miss(waiting, run)
        await self._start(self._d.flows[flow], run)

    async def _start(self, flow: Flow, run: _Run) -> None:
        run.slots, run.misses, run.prefilled = dict(run.entities), 0, set(run.entities)
        await self._go(flow, 0, run)

    async def _intent(self, text: str, run: _Run) -> str | None:
        """The intent of a message: the outside NLU's when it has an opinion, else the built-in one's.
        An intent these dialogs do not know is no intent."""
        if self._understand is not None and (reading := await self._understand(text, run.language)) is not None:
            run.entities = dict(reading.entities)
            return reading.intent if reading.intent in self._d.intents else None
        return self._matcher.match(text)

    async def _answer(self, waiting: _Waiting, value: str, run: _Run) -> None:
        run.slots[waiting.ask.slot] = value
        run.misses = 0
        await self._go(waiting.flow, waiting.index + 1, run)

    async def _miss(self, waiting: _Waiting | None, run: _Run) -> None:
        fallback = self._d.fallback
        run.misses += 1
        if run.misses >= fallback.handoff_after:
            self._say(fallback.handoff.name, (), run)
            run.misses, run.handoff = 0, "fallback"
        elif waiting is not None:
            ask = waiting.ask
            self._say((ask.retry or ask.prompt).name, ask.buttons, run)
            run.waiting = (waiting.flow.name, waiting.flow.key(waiting.index))
        else:
            self._say(fallback.say.text.name, fallback.say.buttons, run)

    async def _go(self, flow: Flow, index: int, run: _Run) -> None:
        for _ in range(MAX_STEPS):
            if index >= len(flow.steps):
                return
            match flow.steps[index].kind:
                case Say(text=text, buttons=buttons):
                    self._say(text.name, buttons, run)
                case Ask(slot=slot, prompt=prompt, buttons=buttons) as ask:
                    given = run.slots.get(slot) if slot in run.prefilled else None
                    run.prefilled.discard(slot)
                    if given is None or (value := self._validate(ask, given)) is None:
                        self._say(prompt.name, buttons, run)
                        run.waiting = (flow.name, flow.key(index))
                        return
                    run.slots[slot] = value  # the message that started the flow said it already
                case Branch(condition=condition, then=then, otherwise=otherwise):
                    target = then if self._test(condition, run) else otherwise
                    if target is not None:
                        flow, index = self._target(flow, target.name)
                        continue
                case SetAttributes(values=values):
                    for name, template in values:
                        run.attributes[name] = _render(f"set '{name}'", template.render, run).strip()
                case CallAction(action=ref):
                    await self._call(ref.name, run)
                case Handoff(text=text, reason=reason, team=team):
                    self._say(text.name, (), run)
                    run.handoff, run.handoff_team = reason, team
                    return
                case Goto(flow=ref):
                    flow, index = self._d.flows[ref.name], 0
                    continue
                case End():
                    return
            index += 1
        raise _Broken(f"flow '{flow.name}' ran {MAX_STEPS} steps in one turn; is there a goto loop?")

    def _target(self, flow: Flow, name: str) -> tuple[Flow, int]:
        """A step id of this flow wins over a flow of the same name."""
        if name in flow.ids:
            return flow, flow.ids[name]
        return self._d.flows[name], 0

    async def _call(self, name: str, run: _Run) -> None:
        context = ActionContext(
            slots=MappingProxyType(dict(run.slots)),
            contact=MappingProxyType(run.context()["contact"]),
            language=run.language,
            channel=run.turn.channel,
        )
        try:
            result = await self._d.actions[name](context)
        except RetryLater:
            raise  # the worker tries the whole turn again later (and dead-letters it after its attempts)
        except Exception as exc:  # an action is foreign code: its failure becomes a handoff
            raise _Broken(f"action '{name}' failed: {exc!r}") from exc
        # stored as text whatever the action returned: a state that cannot be saved fails every retry
        run.slots.update({key: str(value) for key, value in result.slots.items()})
        run.attributes.update({key: str(value) for key, value in result.attributes.items()})
        if result.text_key is not None:
            if result.text_key not in self._d.texts:
                raise _Broken(f"action '{name}' returned unknown text '{result.text_key}'")
            self._say(result.text_key, (), run)
        run.replies.extend(Reply(text=str(text)) for text in result.texts)

    def _validate(self, ask: Ask, answer: str) -> str | None:
        """The answer as the slot stores it (cleaned by the validator), or None when it is rejected."""
        value: str | None = answer
        if ask.validator is not None:
            try:
                value = self._d.validators[ask.validator.name](answer)
            except Exception as exc:  # foreign code, as with actions
                raise _Broken(f"validator '{ask.validator.name}' failed: {exc!r}") from exc
        if value is None or (ask.pattern is not None and not ask.pattern.fullmatch(value)):
            return None
        return value

    def _say(self, text: str, buttons: tuple[ButtonSpec, ...], run: _Run) -> None:
        body = self._text(text, run)
        rendered = tuple(
            Button(
                title=self._text(b.label.name, run) if isinstance(b.label, Ref) else b.label,
                payload=b.payload,
            )
            for b in buttons
        )
        if body or rendered:
            run.replies.append(Reply(text=body or None, buttons=rendered))

    def _text(self, name: str, run: _Run) -> str:
        text = self._d.texts[name]
        return _render(f"text '{name}'", lambda context: text.render(run.language, context), run)

    def _test(self, condition: TemplateExpression, run: _Run) -> bool:
        return bool(_render("condition", lambda context: condition(**context), run))

    def _waiting(self, turn: Turn) -> _Waiting | None:
        """The ask the state points at; None when there is none or the dialogs changed under it."""
        state = turn.state
        flow = self._d.flows.get(state.flow) if state.flow is not None else None
        index = flow.index(state.step) if flow is not None and state.step is not None else None
        if flow is None or index is None:
            return None
        step = flow.steps[index].kind
        return _Waiting(flow, index, step) if isinstance(step, Ask) else None

    def _language(self, turn: Turn) -> str:
        """The language asked for if the dialogs have texts in it, else English. Which one to ask for
        is the pipeline's rule (bot.dialogue.language), the same whatever the backend."""
        code = (turn.language or "").split("-")[0].lower()
        return code if code in self._languages else "en"

    def _command(self, message: str | None) -> str | None:
        """`/start`, `/start CODE` (a Telegram deep link) or `/start@OmnishopBot` → the command's intent."""
        if message is None or not message.startswith("/"):
            return None
        return self._d.commands.get(message.split()[0].split("@")[0].casefold())


def _render(what: str, render: Callable[[dict[str, Any]], _T], run: _Run) -> _T:
    try:
        return render(run.context())
    except Exception as exc:  # SecurityError, UndefinedError, or Python errors inside a template
        raise _Broken(f"{what} failed to render: {exc!r}") from exc
