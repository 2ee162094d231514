"""The Omnishop demo in `dialogs/`, as a customer meets it in English and in Russian."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from bot.dialogue import Engine

DIALOGS = Path(__file__).resolve().parents[2] / "dialogs"
MENU_EN = [
    ("Order status", "order_status"),
    ("Delivery & hours", "flow:delivery_and_hours"),
    ("Talk to a human", "human"),
]
GREETING_EN = "Hi, Ann! Welcome to Omnishop. What can I help you with?"


@pytest.fixture(scope="module")
def shop() -> Engine:
    return Engine.load(DIALOGS)


@pytest.fixture
def chat(shop: Engine, new_chat: Callable[..., object]) -> object:
    return new_chat(shop, name="Ann")


@pytest.mark.parametrize(("text", "payload"), [("/start", None), (None, "/start"), ("/start ref42", None)])
async def test_start_greets_by_name_with_the_menu(chat, text: str | None, payload: str | None) -> None:
    assert await chat.texts(text, payload) == [GREETING_EN]
    assert chat.buttons() == MENU_EN


async def test_greeting_without_a_name_in_russian(shop: Engine, new_chat) -> None:
    chat = new_chat(shop, language="ru")
    assert await chat.texts("/start") == ["Здравствуйте! Это Omnishop. Чем могу помочь?"]
    assert [title for title, _ in chat.buttons()] == [
        "Статус заказа",
        "Доставка и часы работы",
        "Связаться с сотрудником",
    ]


async def test_order_status_in_english(chat) -> None:
    await chat.send("/start")
    assert await chat.texts(payload="order_status") == [
        "What's your order number? You'll find it in the confirmation email, e.g. 104582."
    ]
    assert await chat.texts("my order") == [
        "Hmm, that doesn't look like an order number — it has 4 to 10 digits, e.g. 104582. "
        "Could you check it?"
    ]
    assert await chat.texts("#10453") == [
        "Order 10453 is on its way 🚚 It should reach you within 2–3 days.",
        "Anything else I can help with?",
    ]
    assert chat.buttons() == MENU_EN
    assert chat.last.set_attributes == {"last_order": "10453"}


async def test_order_status_in_russian_delivered_offers_a_human(chat) -> None:
    assert await chat.texts("где мой заказ?") == [
        "Подскажите номер заказа? Он есть в письме с подтверждением, например 104582."
    ]
    assert chat.language == "ru"
    assert await chat.texts("123") == [
        "Хм, не похоже на номер заказа — в нём от 4 до 10 цифр, например 104582. Проверьте, пожалуйста."
    ]
    assert await chat.texts("№ 12-344") == [
        "Заказ 12344 доставлен. Надеемся, вам всё понравится!",
        "Если с заказом что-то не так, я могу позвать сотрудника.",
    ]
    assert chat.buttons() == [("Связаться с сотрудником", "human"), ("Всё хорошо, спасибо", "thanks")]
    assert await chat.texts(payload="thanks") == ["Пожалуйста, Ann! Хорошего дня."]


async def test_order_being_packed(chat) -> None:
    await chat.send("order status")
    texts = await chat.texts("5557")
    assert texts[0] == "We're packing order 5557 right now 📦 It will ship within 24 hours."


async def test_delivery_and_hours(chat) -> None:
    assert await chat.texts(payload="flow:delivery_and_hours") == [
        "We deliver nationwide: by courier in 1–3 days (free over $50, otherwise $5), "
        "or pick your order up at our store for free the next day.",
        "Our store is open Mon–Fri 9:00–21:00 and Sat–Sun 10:00–18:00. "
        "I'm here in the chat around the clock.",
    ]
    assert (await chat.texts("когда вы работаете?"))[0].startswith("Магазин работает пн–пт с 9:00 до 21:00")
    assert (await chat.texts("сколько стоит доставка в Казань"))[0].startswith("Доставляем по всей стране")


async def test_talk_to_a_human(chat) -> None:
    result = await chat.send("позовите оператора, пожалуйста")
    assert [r.text for r in result.replies] == [
        "Конечно, передаю чат сотруднику — он ответит здесь в ближайшее время."
    ]
    assert result.handoff == "customer asked"


async def test_thanks_and_bye(chat) -> None:
    assert await chat.texts("thank you!") == ["You're welcome, Ann! Have a great day."]
    assert await chat.texts("bye") == ["Goodbye! Write any time — I'm always here."]


async def test_fallback_rephrases_with_the_menu_then_hands_off_after_two(chat) -> None:
    assert await chat.texts("can you knit me a scarf") == [
        "Sorry, I didn't quite get that. Could you rephrase, or pick one of the options below?"
    ]
    assert chat.buttons() == MENU_EN
    result = await chat.send("I said knit me a scarf")
    assert [r.text for r in result.replies] == [
        "I'm sorry I can't help with that myself. I've asked a colleague to join — they'll answer here soon."
    ]
    assert result.handoff == "fallback"


@pytest.mark.parametrize(
    "text",
    [
        "где мой заказ",
        "статус заказа",
        "заказы",
        "Где мои заказы???",
        "where is my order",
        "Where's my order?",
    ],
)
async def test_order_questions_are_understood(chat, text: str) -> None:
    assert (await chat.send(text)).intent == "order_status"


@pytest.mark.parametrize("text", ["my", "где", "the", "asdf qwer", "do you have red shoes"])
async def test_chatter_is_not_mistaken_for_an_intent(chat, text: str) -> None:
    assert (await chat.send(text)).intent is None

