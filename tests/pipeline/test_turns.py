"""`TurnHandler` on its own: snapshots built by hand, the changes and replies it returns read back.

It does no I/O, so no Redis here. The backend is either the demo dialogs' YAML engine or a recording
backend that implements `DialogueBackend` — a backend at its protocol boundary, not a stand-in for
our code.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

import orjson
import pytest

from bot.context.store import Snapshot
from bot.dialogue import Engine
from bot.dialogue.backend import DialogueAnswer, DialogueRequest, HandoffRequest
from bot.models import Button, Capabilities, Channel, EventKind, InboundEvent, Reply
from bot.pipeline.turns import TurnHandler

DIALOGS = Path(__file__).resolve().parents[2] / "dialogs"
CAPABILITIES: dict[Channel, Capabilities] = {
    "telegram": Capabilities(max_text=4096, native_buttons=True, max_buttons=8),
    "sms": Capabilities(max_text=1600, native_buttons=False, sms_segments=True),
}


@dataclass
class RecordingBackend:
    """Answers every turn the same way (in the language asked for) and keeps what it was asked."""

    answer_with: DialogueAnswer = field(default_factory=lambda: DialogueAnswer([Reply(text="ok")], "s1", "en"))
    requests: list[DialogueRequest] = field(default_factory=list)

    async def answer(self, request: DialogueRequest) -> DialogueAnswer:
        self.requests.append(request)
        return replace(self.answer_with, language=request.language)


def message(text: str | None = None, channel: Channel = "telegram", **kw: object) -> InboundEvent:
    user = "+79990001111" if channel == "sms" else "7001"
    return InboundEvent(kind=EventKind.message, channel=channel, user_id=user, provider_id="m1", text=text, **kw)


def snapshot(profile: dict[str, str] | None = None, **conversation: str) -> Snapshot:
    return Snapshot("c1", profile or {}, conversation)


@pytest.fixture(scope="module")
def shop() -> Engine:
    return Engine.load(DIALOGS)


async def test_a_bot_turn_answers_and_records_both_sides(shop: Engine) -> None:
    outcome = await TurnHandler(shop, CAPABILITIES, "en").handle(snapshot(), message("hi", user_name="Anna"), "1-0")
    [greeting] = outcome.outbound
    assert greeting.reply.text == "Hi, Anna! Welcome to Omnishop. What can I help you with?"
    assert (greeting.id, greeting.channel, greeting.user_id, greeting.author) == ("1-0-0", "telegram", "7001", "bot")
    changes = outcome.changes
    assert (changes.conversation["mode"], changes.mode) == ("bot", ("", "bot"))
    assert (changes.profile["lang"], changes.profile["name"]) == ("en", "Anna")
    assert [(e.direction, e.id) for e in changes.history] == [("in", "1-0"), ("out", "1-0-0")]
    assert "st" in changes.drop_conversation_fields  # the greeting leaves nothing waiting


async def test_the_backend_state_is_stored_unread_and_handed_back() -> None:
    backend = RecordingBackend()
    turns = TurnHandler(backend, CAPABILITIES, "en")
    first = await turns.handle(snapshot(), message("hello"), "1-0")
    assert first.changes.conversation["st"] == "s1"
    await turns.handle(snapshot({"lang": "en"}, mode="bot", st="opaque, whatever it is"), message("hello"), "2-0")
    assert [r.state for r in backend.requests] == [None, "opaque, whatever it is"]


@pytest.mark.parametrize("mode", ["queued", "assigned"])
async def test_a_conversation_a_human_has_never_reaches_the_backend(mode: str) -> None:
    backend = RecordingBackend()
    outcome = await TurnHandler(backend, CAPABILITIES, "en").handle(snapshot(mode=mode), message("hello"), "1-0")
    assert backend.requests == [] and outcome.outbound == []
    assert [e.text for e in outcome.changes.history] == ["hello"]  # the console shows it


async def test_after_a_resolve_a_rating_is_recorded_and_anything_else_goes_to_the_bot() -> None:
    backend = RecordingBackend()
    turns = TurnHandler(backend, CAPABILITIES, "en")
    rated = await turns.handle(snapshot(mode="resolved", csat="asked", id="c1-1-0"), message("4"), "2-0")
    assert backend.requests == [] and rated.changes.conversation["csat"] == "4"
    assert rated.changes.profile["csat"] == "4" and rated.changes.mode is None
    talked = await turns.handle(snapshot(mode="resolved", csat="4", id="c1-1-0"), message("hello"), "3-0")
    assert [r.text for r in backend.requests] == ["hello"]  # a new conversation, with the bot
    assert (talked.changes.conversation["mode"], talked.changes.conversation["id"]) == ("bot", "c1-3-0")
    assert talked.changes.mode == ("resolved", "bot")


async def test_stop_is_answered_while_a_human_has_the_conversation() -> None:
    backend = RecordingBackend()
    turns = TurnHandler(backend, CAPABILITIES, "en")
    outcome = await turns.handle(snapshot(mode="assigned"), message("STOP", channel="sms"), "1-0")
    [confirmation] = outcome.outbound
    assert (confirmation.author, confirmation.keyword_reply) == ("system", True)
    assert outcome.changes.profile["cs:sms:service"] == "out"
    assert backend.requests == []


async def test_a_number_on_a_channel_without_buttons_is_the_button_it_stood_for() -> None:
    backend = RecordingBackend()
    offered = [Button(title="Order status", payload="order_status"), Button(title="Hours", payload="hours")]
    held = snapshot(mode="bot", opt=orjson.dumps([b.model_dump() for b in offered]).decode())
    await TurnHandler(backend, CAPABILITIES, "en").handle(held, message("2", channel="sms"), "1-0")
    [request] = backend.requests
    assert (request.text, request.payload) == ("2", "hours")


async def test_numbered_options_are_remembered_only_where_buttons_are_not_native(shop: Engine) -> None:
    turns = TurnHandler(shop, CAPABILITIES, "en")
    on_sms = await turns.handle(snapshot(), message("hi", channel="sms"), "1-0")
    assert [b["payload"] for b in orjson.loads(on_sms.changes.conversation["opt"])] == [
        "order_status", "flow:delivery_and_hours", "human"]
    on_telegram = await turns.handle(snapshot(), message("hi"), "1-0")
    assert "opt" not in on_telegram.changes.conversation and "opt" in on_telegram.changes.drop_conversation_fields


async def test_a_handoff_request_queues_the_conversation_for_its_team() -> None:
    answer = DialogueAnswer([Reply(text="A colleague will join.")], None, "en", {"topic": "refund"},
                            HandoffRequest("customer asked", team="billing"))
    outcome = await TurnHandler(RecordingBackend(answer), CAPABILITIES, "en").handle(
        snapshot({"lang": "en"}, mode="bot"), message("I want my money back"), "1-0")
    changes = outcome.changes
    assert (changes.conversation["mode"], changes.conversation["handoff"], changes.conversation["team"]) == (
        "queued", "customer asked", "billing")
    assert changes.mode == ("bot", "queued")
    assert changes.profile["a:topic"] == "refund"
    assert [m.reply.text for m in outcome.outbound] == ["A colleague will join."]


@pytest.mark.parametrize(("profile", "text", "hint", "asked", "stored"), [
    ({"lang": "ru"}, "what are your opening hours", None, "en", "en"),  # a full English sentence switches
    ({"lang": "ru"}, "hello", None, "en", "en"),
    ({"lang": "ru"}, "ok", None, "ru", None),  # a short token keeps the language (nothing written)
    ({"lang": "ru"}, "104582", None, "ru", None),
    ({"lang": "en"}, "привет", None, "ru", "ru"),
    ({"lang": "en", "lang_set": "ru"}, "what are your opening hours", None, "ru", "ru"),  # set by the CRM
    ({}, "/start", "ru", "ru", "ru"),  # the messenger's language for a first message that says nothing
    ({}, "/start", "de", "en", "en"),  # ... unless we have no texts in it: the default
    ({"lang": "en"}, "ok", "ru", "en", None),  # what the customer wrote in beats the messenger's setting
])
async def test_the_language_each_message_is_answered_in(
    profile: dict[str, str], text: str, hint: str | None, asked: str, stored: str | None
) -> None:
    backend = RecordingBackend()
    outcome = await TurnHandler(backend, CAPABILITIES, "en").handle(
        snapshot(profile, mode="bot"), message(text, language=hint), "1-0")
    assert backend.requests[0].language == asked
    assert outcome.changes.profile.get("lang") == stored
