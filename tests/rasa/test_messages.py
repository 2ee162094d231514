"""Rasa's REST-channel answers, as a real Rasa 3.6.21 sent them (`tests/payloads/rasa/`), read into
our replies and the turn's handoff and attributes — and rendered per channel like any reply."""

from __future__ import annotations

from typing import Any

from bot.dialogue.backend import HandoffRequest
from bot.models import Button, Media, Reply
from bot.rasa.client import Parse, RestMessage
from bot.rasa.messages import read_answer
from bot.rendering import render
from connectors.twilio import CAPABILITIES
from tests.rasa.fake_rasa import recorded


def messages(name: str) -> list[RestMessage]:
    return [RestMessage.model_validate(m) for m in recorded(name)]


def test_text_buttons_and_several_messages_become_replies() -> None:
    [greeting] = read_answer(messages("rest_buttons.json"), "telegram").replies
    raw = recorded("rest_buttons.json")[0]
    assert greeting.text == raw["text"]
    assert greeting.buttons == tuple(Button(title=b["title"], payload=b["payload"]) for b in raw["buttons"])
    several = read_answer(messages("rest_several.json"), "telegram")
    assert [r.text for r in several.replies] == [m["text"] for m in recorded("rest_several.json")]
    assert several.handoff is None and several.set_attributes == {}


def test_an_image_is_media_and_a_custom_payload_shows_the_customers_channels_part() -> None:
    [text, image] = read_answer(messages("rest_image.json"), "viber").replies  # Rasa sends them apart
    assert text.text == recorded("rest_image.json")[0]["text"] and text.media == ()
    assert image.media == (Media(url=recorded("rest_image.json")[1]["image"], type="image"),) and image.text is None
    assert read_answer(messages("rest_custom.json"), "telegram").replies == []  # a carousel: not a message
    per_channel = [RestMessage(custom={"telegram": {"text": "Tap below", "buttons": [{"title": "Menu",
                                                                                    "payload": "/greet"}]},
                                       "sms": {"text": "Reply MENU for the menu"}})]
    [on_telegram] = read_answer(per_channel, "telegram").replies
    assert on_telegram == Reply(text="Tap below", buttons=(Button(title="Menu", payload="/greet"),))
    [on_sms] = read_answer(per_channel, "sms").replies
    assert on_sms == Reply(text="Reply MENU for the menu")


def test_a_control_message_is_the_turns_handoff_not_a_reply() -> None:
    answer = read_answer(messages("rest_action_custom_response.json"), "sms")
    assert answer.handoff == HandoffRequest("asked", "billing")
    assert [r.text for r in answer.replies] == [recorded("rest_action_custom_response.json")[0]["text"]]


def test_a_broken_control_or_unreadable_custom_payload_says_nothing_and_breaks_nothing() -> None:
    broken = [RestMessage(custom={"omnihub": {"handoff": {"team": 7, "colour": "red"}}}),
              RestMessage(custom={"omnihub": {"set_attributes": {"bad name": "x"}}}),
              RestMessage(custom={"carousel": [1, 2, 3]}),
              RestMessage(text="still here")]
    answer = read_answer(broken, "telegram")
    assert answer.handoff is None and answer.set_attributes == {}
    assert [r.text for r in answer.replies] == ["still here"]


def test_rasa_buttons_render_as_numbered_options_where_there_are_no_buttons() -> None:
    [greeting] = read_answer(messages("rest_buttons.json"), "sms").replies
    [part] = render(greeting, CAPABILITIES["sms"])
    for n, button in enumerate(recorded("rest_buttons.json")[0]["buttons"], 1):
        assert f"{n}. {button['title']}" in (part.text or "")


def test_recorded_parse_answers_are_read() -> None:
    greet: dict[str, Any] = recorded("parse_greet.json")
    parsed = Parse.model_validate(greet)
    assert parsed.intent is not None and parsed.intent.name == greet["intent"]["name"]
    assert parsed.intent.confidence == greet["intent"]["confidence"]
    no_match = Parse.model_validate(recorded("parse_nlu_fallback.json"))
    assert no_match.intent is not None and no_match.intent.name == "nlu_fallback"
