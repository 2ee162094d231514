"""The language rule on its own: each message is judged by itself; short tokens keep the language."""

from __future__ import annotations

import pytest

from bot.dialogue.language import reply_language, written_in


@pytest.mark.parametrize("text", [
    "привет", "где мой заказ?", "Здравствуйте, когда вы открыты", "ok спасибо", "iPhone 13 не работает",
    "Ёлка", "ЗАКАЗ 104582 где",
])
def test_cyrillic_is_russian(text: str) -> None:
    assert written_in(text) == "ru"


@pytest.mark.parametrize("text", [
    "hello", "Hi!", "hey there", "good morning", "what are your opening hours", "Where is my order?",
    "thank you", "I need help", "Hello, my name is Иван", "can I pay by card",
])
def test_an_english_sentence_or_greeting_is_english(text: str) -> None:
    assert written_in(text) == "en"


@pytest.mark.parametrize("text", [
    None, "", "ok", "OK", "yes", "no", "1", "2", "104582", "#10453", "order 104582", "A1B2C3", "/start",
    "/start ref42", "thanks", "help", "STOP", "iPhone 13 Pro", "my order", "privet kak dela", "do svidaniya",
    "a gde moi zakaz", "👍", "...", "wo ist meine Bestellung",
])
def test_what_says_nothing_about_language(text: str | None) -> None:
    assert written_in(text) is None


def test_a_short_message_keeps_the_current_language() -> None:
    assert reply_language("ok", chosen=None, current="ru", default="en") == "ru"
    assert reply_language("12345", chosen=None, current="en", default="ru") == "en"


def test_each_message_switches_by_itself() -> None:
    assert reply_language("what are your opening hours", chosen=None, current="ru", default="en") == "en"
    assert reply_language("привет", chosen=None, current="en", default="en") == "ru"


def test_a_chosen_language_wins_over_detection() -> None:
    assert reply_language("what are your opening hours", chosen="ru", current="en", default="en") == "ru"
    assert reply_language("привет", chosen="en", current="ru", default="en") == "en"


def test_nothing_known_falls_back_to_the_default() -> None:
    assert reply_language("ok", chosen=None, current=None, default="ru") == "ru"
