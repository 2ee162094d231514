"""Each step kind and each rule of a turn, asserted on what the customer reads."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from bot.dialogue import ActionContext, ActionResult, DialogState, Engine, Turn, action, validator
from bot.dialogue.backend import DialogueRequest, HandoffRequest

DIALOGS = """
    intents:
      greet:
        commands: [/start]
        examples: {en: [hello, hi], ru: [привет, здравствуйте]}
      order:
        keywords: [order, заказ]
        examples: {en: [where is my order], ru: [где мой заказ]}
      human:
        examples: {en: [talk to a human], ru: [позовите оператора]}
      analytics_only:
        examples: {en: [what is the weather like]}
      loop: {commands: [/loop]}
      boom: {commands: [/boom]}
      fragile: {commands: [/fragile]}
      evil: {commands: [/evil]}

    flows:
      greeting:
        trigger: greet
        steps:
          - say: hello
            buttons:
              - {text: btn_order, payload: order}
              - {title: Size, payload: "flow:size"}
      order:
        trigger: order
        steps:
          - id: number
            ask: order_id
            prompt: ask_order
            pattern: '\\d{4}'
            retry: bad_order
          - action: t_lookup
          - set:
              last_order: "{{ slots.order_id }}"
              greeted: "yes"
          - if: "slots.order_id == '4242'"
            then: vip
            else: regular
          - id: vip
            say: vip_text
          - end
          - id: regular
            say: regular_text
      size:
        steps:
          - ask: size
            prompt: ask_size
            validator: t_size
            buttons:
              - {title: Small, payload: small}
              - {title: Medium, payload: medium}
          - say: size_text
          - goto: goodbye
      goodbye:
        steps:
          - say: bye
          - end
          - say: never_said
      human:
        trigger: human
        steps:
          - handoff: passing
            reason: asked for a human
            team: billing
      loop:
        trigger: loop
        steps:
          - goto: loop
      boom:
        trigger: boom
        steps:
          - say: before
          - action: t_boom
      fragile:
        trigger: fragile
        steps:
          - ask: anything
            prompt: ask_size
            validator: t_fragile
      evil:
        trigger: evil
        steps:
          - say: evil_text

    fallback:
      say: what
      buttons:
        - {text: btn_order, payload: order}
      handoff_after: 3
      handoff: giving_up
      error: broken

    texts:
      hello:
        en: "Hello{% if contact.name %}, {{ contact.name }}{% endif %}! You write from {{ channel }}."
        ru: "Привет{% if contact.name %}, {{ contact.name }}{% endif %}!"
      btn_order: {en: My order, ru: Мой заказ}
      ask_order: {en: "Your order number?", ru: "Номер заказа?"}
      bad_order: {en: "Four digits, please."}
      status: {en: "Status: {{ slots.status }}.", ru: "Статус: {{ slots.status }}."}
      vip_text: {en: "Welcome back, VIP."}
      regular_text: {en: "Last order: {{ contact.attributes.last_order }}."}
      ask_size: {en: "Which size?"}
      size_text: {en: "Size {{ slots.size }} it is."}
      bye: {en: Bye!}
      never_said: {en: This is never said.}
      passing: {en: Passing you to a colleague.}
      before: {en: Let me check.}
      evil_text: {en: "{{ contact.tags.append('hacked') }}"}
      what: {en: "Sorry, what?", ru: "Простите, что?"}
      giving_up: {en: Let me find a human.}
      broken: {en: Something broke; a colleague will help.}
"""


@action("t_lookup")
async def t_lookup(ctx: ActionContext) -> ActionResult:
    return ActionResult(slots={"status": f"shipped via {ctx.channel}"}, text_key="status", texts=["(raw)"])


@action("t_boom")
async def t_boom(ctx: ActionContext) -> ActionResult:
    raise RuntimeError("the order service is down")


@validator("t_size")
def t_size(answer: str) -> str | None:
    return {"s": "small", "m": "medium", "small": "small", "medium": "medium"}.get(answer.strip().casefold())


@validator("t_fragile")
def t_fragile(answer: str) -> str | None:
    raise ValueError("validators should not raise, but this one does")


@pytest.fixture
def engine(write: Callable[[str, str], Path], tmp_path: Path) -> Engine:
    write("test.yaml", DIALOGS)
    return Engine.load(tmp_path)


@pytest.fixture
def chat(engine: Engine, new_chat: Callable[..., object]) -> object:
    return new_chat(engine, name="Ann")


async def test_say_with_buttons_and_personalisation(chat) -> None:
    result = await chat.send("/start")
    assert [r.text for r in result.replies] == ["Hello, Ann! You write from telegram."]
    assert chat.buttons() == [("My order", "order"), ("Size", "flow:size")]
    assert result.intent == "greet"
    assert result.language == "en"


async def test_a_contact_without_a_name(engine: Engine, new_chat) -> None:
    assert await new_chat(engine).texts("/start") == ["Hello! You write from telegram."]


async def test_language_detected_from_cyrillic_and_texts_follow_it(chat) -> None:
    assert await chat.texts("привет") == ["Привет, Ann!"]
    assert chat.last.language == "ru"
    assert chat.buttons() == [("Мой заказ", "order"), ("Size", "flow:size")]


async def test_an_english_greeting_switches_a_stored_russian_back(engine: Engine, new_chat) -> None:
    chat = new_chat(engine, language="ru")
    assert await chat.texts("hello") == ["Hello! You write from telegram."]
    assert chat.language == "en"


async def test_a_message_that_says_nothing_keeps_the_stored_language(engine: Engine, new_chat) -> None:
    chat = new_chat(engine, language="ru")
    assert await chat.texts("ok") == ["Простите, что?"]
    assert chat.language == "ru"


async def test_a_chosen_language_wins_over_the_message(engine: Engine, new_chat) -> None:
    chat = new_chat(engine, chosen="ru")
    assert await chat.texts("hello") == ["Привет!"]


async def test_a_language_without_texts_gets_english(engine: Engine, new_chat) -> None:
    chat = new_chat(engine, chosen="de")
    assert await chat.texts("hello") == ["Hello! You write from telegram."]
    assert chat.language == "en"


async def test_cyrillic_text_switches_a_stored_english(engine: Engine, new_chat) -> None:
    chat = new_chat(engine, language="en")
    await chat.texts("/start")
    assert await chat.texts("где мой заказ") == ["Номер заказа?"]
    assert chat.language == "ru"


async def test_missing_translation_falls_back_to_english(chat) -> None:
    await chat.texts("где мой заказ")
    assert await chat.texts("12") == ["Four digits, please."]


async def test_ask_validates_and_reprompts_then_runs_action_set_and_branch(chat) -> None:
    assert await chat.texts("where is my order") == ["Your order number?"]
    assert chat.state.flow == "order" and chat.state.step == "number"
    assert await chat.texts("12a4") == ["Four digits, please."]
    assert chat.state.misses == 1 and chat.state.flow == "order"
    texts = await chat.texts("1234")
    assert texts == ["Status: shipped via telegram.", "(raw)", "Last order: 1234."]
    assert chat.last.set_attributes == {"last_order": "1234", "greeted": "yes"}
    assert chat.state == DialogState()  # flow over: slots forgotten, misses reset


async def test_branch_takes_then(chat) -> None:
    await chat.send(payload="order")
    texts = await chat.texts("4242")
    assert texts == ["Status: shipped via telegram.", "(raw)", "Welcome back, VIP."]


async def test_ask_buttons_payload_validator_goto_and_end(chat) -> None:
    assert await chat.texts(payload="flow:size") == ["Which size?"]
    assert chat.buttons() == [("Small", "small"), ("Medium", "medium")]
    assert await chat.texts("huge") == ["Which size?"]  # no retry text: the prompt again
    assert await chat.texts(payload="medium") == ["Size medium it is.", "Bye!"]
    assert chat.state == DialogState()


async def test_validator_cleans_a_typed_answer(chat) -> None:
    await chat.send(payload="flow:size")
    assert await chat.texts(" S ") == ["Size small it is.", "Bye!"]


async def test_handoff(chat) -> None:
    result = await chat.send("talk to a human")
    assert [r.text for r in result.replies] == ["Passing you to a colleague."]
    assert result.handoff == "asked for a human"
    assert result.handoff_team == "billing"  # the step names whose queue it goes to
    assert result.intent == "human"


async def test_changing_the_subject_while_an_ask_waits(chat) -> None:
    await chat.send("where is my order")
    result = await chat.send("talk to a human")
    assert result.handoff == "asked for a human"
    assert result.state == DialogState()


async def test_a_command_abandons_a_waiting_ask(chat) -> None:
    await chat.send("where is my order")
    assert await chat.texts("/start") == ["Hello, Ann! You write from telegram."]
    assert chat.state == DialogState()


async def test_payload_intent_name_starts_its_flow(chat) -> None:
    result = await chat.send(payload="order")
    assert [r.text for r in result.replies] == ["Your order number?"]
    assert result.intent == "order"


async def test_fallback_rephrases_then_hands_off_after_n_misses(chat) -> None:
    assert await chat.texts("qwerty") == ["Sorry, what?"]
    assert chat.buttons() == [("My order", "order")]
    assert await chat.texts(payload="stale-button") == ["Sorry, what?"]
    result = await chat.send("asdf")
    assert [r.text for r in result.replies] == ["Let me find a human."]
    assert result.handoff == "fallback"
    assert result.state.misses == 0


async def test_an_understood_message_resets_the_misses(chat) -> None:
    await chat.send("qwerty")
    await chat.send("qwerty")
    await chat.send("hello")
    assert chat.state.misses == 0
    assert (await chat.send("qwerty")).handoff is None


async def test_bad_answers_count_as_misses(chat) -> None:
    await chat.send("where is my order")
    await chat.send("1")
    await chat.send("2")
    result = await chat.send("3")
    assert [r.text for r in result.replies] == ["Let me find a human."]
    assert result.handoff == "fallback"
    assert result.state == DialogState()


async def test_an_intent_without_a_flow_is_reported_but_not_answered(chat) -> None:
    result = await chat.send("what is the weather like")
    assert result.intent == "analytics_only"
    assert [r.text for r in result.replies] == ["Sorry, what?"]


async def test_a_failing_action_hands_off_after_what_was_said(chat) -> None:
    result = await chat.send("/boom")
    assert [r.text for r in result.replies] == ["Let me check.", "Something broke; a colleague will help."]
    assert result.handoff == "error"
    assert result.state == DialogState()


async def test_a_failing_validator_hands_off(chat) -> None:
    await chat.send("/fragile")
    result = await chat.send("M")
    assert [r.text for r in result.replies] == ["Something broke; a colleague will help."]
    assert result.handoff == "error"


async def test_a_goto_loop_is_stopped(chat) -> None:
    result = await chat.send("/loop")
    assert result.handoff == "error"
    assert [r.text for r in result.replies] == ["Something broke; a colleague will help."]


async def test_sandbox_blocks_a_template_and_nothing_leaks(chat) -> None:
    result = await chat.send("/evil")
    assert [r.text for r in result.replies] == ["Something broke; a colleague will help."]
    assert result.handoff == "error"
    assert chat.contact["tags"] == []


async def test_a_state_from_older_dialogs_starts_afresh(engine: Engine, new_chat) -> None:
    chat = new_chat(engine)
    chat.state = DialogState(flow="renamed_flow", step="3", slots={"x": "1"})
    assert await chat.texts("hello") == ["Hello! You write from telegram."]
    assert chat.state == DialogState()


async def test_respond_leaves_its_input_alone(engine: Engine) -> None:
    state = DialogState(flow="order", step="number", slots={"kept": "1"}, misses=1)
    contact = {"id": "c1", "name": None, "phone": None, "attributes": {"a": "1"}, "tags": []}
    turn = Turn(text="1234", payload=None, language="en", state=state, channel="sms", contact=contact)
    result = await engine.respond(turn)
    assert result.set_attributes["last_order"] == "1234"
    assert state == DialogState(flow="order", step="number", slots={"kept": "1"}, misses=1)
    assert contact["attributes"] == {"a": "1"}


async def test_as_a_backend_the_state_is_opaque_json_and_an_unreadable_one_starts_afresh(engine: Engine) -> None:
    contact = {"id": "c1", "name": None, "phone": None, "attributes": {}, "tags": []}
    asked = await engine.answer(DialogueRequest("where is my order", None, "en", "sms", contact, None))
    assert [r.text for r in asked.replies] == ["Your order number?"] and asked.state is not None
    answered = await engine.answer(DialogueRequest("1234", None, "en", "sms", contact, asked.state))
    assert answered.replies[0].text == "Status: shipped via sms." and answered.state is None
    for unreadable in ("not json", '{"misses": "many"}', "[]"):
        fresh = await engine.answer(DialogueRequest("hello", None, "en", "sms", contact, unreadable))
        assert [r.text for r in fresh.replies] == ["Hello! You write from sms."]


async def test_as_a_backend_a_handoff_is_a_request_with_its_reason(engine: Engine) -> None:
    contact = {"id": "c1", "name": None, "phone": None, "attributes": {}, "tags": []}
    answer = await engine.answer(DialogueRequest("talk to a human", None, "en", "sms", contact, None))
    assert answer.handoff == HandoffRequest("asked for a human", "billing")
