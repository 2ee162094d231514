"""The Telegram emulator checked by a client that is not ours: python-telegram-bot's `Bot`.

Our connector and the emulator were written side by side, so a wire-format mistake made in both would
pass their own tests. PTB parses every answer into its own objects (a `Message` needs `chat`, `date`,
`message_id`; errors are mapped from `error_code` and `description`), so these tests fail when the
emulator answers anything a real Bot API client would not accept.
"""

from __future__ import annotations

import datetime as dtm
from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx
import pytest
from telegram import Bot, InlineKeyboardButton, InlineKeyboardMarkup, MessageEntity
from telegram.error import BadRequest, Conflict, Forbidden, InvalidToken, RetryAfter

from bot.sandbox.emulator_kit import serve
from bot.sandbox.telegram_api import TelegramEmulator, create_telegram_emulator

TOKEN = "7000000001:AAE-sandbox_token"
BOT_ID = 7000000001
CUSTOMER = 123456789
SECRET = "webhook-secret_42"
KEYBOARD = InlineKeyboardMarkup([[
    InlineKeyboardButton("Order #1001", callback_data="order:1001"),
    InlineKeyboardButton("Другой", callback_data="other"),
]])


@dataclass
class Wire:
    bot: Bot  # PTB's, initialised (its getMe done)
    emulator: TelegramEmulator
    url: str  # the emulator's base URL, for its control routes

    async def control(self, route: str, body: dict[str, object]) -> httpx.Response:
        async with httpx.AsyncClient() as http:
            answer = await http.post(f"{self.url}/_/{route}", json=body)
        assert answer.status_code == 200, answer.text
        return answer


@pytest.fixture
async def wire() -> AsyncIterator[Wire]:
    app = create_telegram_emulator(TOKEN)  # no webhook: the customers' updates wait for getUpdates
    async with serve(app) as url, Bot(TOKEN, base_url=f"{url}/bot") as bot:
        yield Wire(bot, app.state.emulator, url)


async def test_get_me_is_the_bot_of_the_token(wire: Wire) -> None:
    me = await wire.bot.get_me()
    assert (me.id, me.is_bot, me.username, me.first_name) == (BOT_ID, True, "omnihub_demo_bot", "Omnihub")
    assert wire.bot.username == "omnihub_demo_bot"  # what `async with Bot` learnt at start-up


async def test_a_wrong_token_is_refused_as_telegram_refuses_it(wire: Wire) -> None:
    stranger = Bot("7000000001:not-the-token", base_url=f"{wire.url}/bot")
    with pytest.raises(InvalidToken):  # PTB's start-up getMe: a 401 is a token Telegram does not know
        await stranger.initialize()
    await stranger.shutdown()


async def test_send_message_with_an_inline_keyboard(wire: Wire) -> None:
    message = await wire.bot.send_message(CUSTOMER, "Which order?", reply_markup=KEYBOARD)

    assert (message.message_id, message.chat.id, message.chat.type) == (1, CUSTOMER, "private")
    assert message.from_user is not None and message.from_user.id == BOT_ID and message.from_user.is_bot
    assert message.text == "Which order?" and message.reply_markup == KEYBOARD
    assert abs(message.date - dtm.datetime.now(dtm.UTC)) < dtm.timedelta(seconds=5)
    [sent] = wire.emulator.outbox.after(str(CUSTOMER), 0)
    assert (sent.provider_id, sent.text) == ("1", "Which order?")
    assert sent.buttons == [{"title": "Order #1001", "payload": "order:1001"}, {"title": "Другой", "payload": "other"}]
    assert sent.raw["reply_markup"] == KEYBOARD.to_dict()
    assert (await wire.bot.send_message(CUSTOMER, "Thanks")).message_id == 2  # ids count per chat


async def test_a_pressed_button_arrives_as_a_callback_query_and_is_answered_once(wire: Wire) -> None:
    await wire.bot.send_message(CUSTOMER, "Which order?", reply_markup=KEYBOARD)
    await wire.control("inbound", {"user_id": CUSTOMER, "callback_data": "order:1001", "first_name": "Ann"})

    [update] = await wire.bot.get_updates()
    query = update.callback_query
    assert query is not None and query.data == "order:1001"
    assert query.from_user.id == CUSTOMER and query.from_user.first_name == "Ann"
    assert query.message is not None and query.message.reply_markup == KEYBOARD  # the message pressed on

    assert await wire.bot.answer_callback_query(query.id, text="Noted") is True
    assert list(wire.emulator.answered_callbacks) == [query.id]
    with pytest.raises(BadRequest, match=r"(?i)query is too old"):  # PTB drops "Bad Request: ", capitalises
        await wire.bot.answer_callback_query(query.id)


async def test_a_command_arrives_with_its_entity_and_updates_are_confirmed_by_offset(wire: Wire) -> None:
    await wire.control("inbound", {"user_id": CUSTOMER, "text": "/start link-7Hq2xZ_9"})
    await wire.control("inbound", {"user_id": CUSTOMER, "text": "hello"})

    first, second = await wire.bot.get_updates()
    assert first.message is not None and first.message.text == "/start link-7Hq2xZ_9"
    assert first.message.parse_entities([MessageEntity.BOT_COMMAND]) == {
        MessageEntity(MessageEntity.BOT_COMMAND, 0, len("/start")): "/start"}
    assert second.update_id == first.update_id + 1 and second.effective_user is not None
    [left] = await wire.bot.get_updates(offset=second.update_id)
    assert left.update_id == second.update_id
    assert await wire.bot.get_updates(offset=second.update_id + 1) == ()


async def test_set_webhook_shows_in_get_webhook_info_and_blocks_get_updates(wire: Wire) -> None:
    hook = "https://hub.example/webhooks/telegram"
    assert await wire.bot.set_webhook(hook, secret_token=SECRET, max_connections=10) is True

    info = await wire.bot.get_webhook_info()
    assert (info.url, info.max_connections, info.pending_update_count) == (hook, 10, 0)
    assert info.has_custom_certificate is False
    assert (wire.emulator.webhook_url, wire.emulator.webhook_secret) == (hook, SECRET)
    with pytest.raises(Conflict, match="webhook is active"):
        await wire.bot.get_updates()
    with pytest.raises(BadRequest, match=r"(?i)secret token contains unallowed"):
        await wire.bot.set_webhook(hook, secret_token="not allowed!")

    assert await wire.bot.delete_webhook() is True
    assert (await wire.bot.get_webhook_info()).url == ""
    assert await wire.bot.get_updates() == ()


async def test_faults_reach_ptb_as_telegram_errors(wire: Wire) -> None:
    await wire.control("faults", {"method": "sendMessage", "status": 429, "retry_after": 7, "times": 1})
    with pytest.raises(RetryAfter) as flood:
        await wire.bot.send_message(CUSTOMER, "hello")
    assert flood.value.retry_after in (7, dtm.timedelta(seconds=7))  # an int until PTB switches to timedelta

    await wire.control("faults", {"status": 403, "times": 1})
    with pytest.raises(Forbidden, match="bot was blocked by the user"):
        await wire.bot.send_message(CUSTOMER, "hello")
    assert wire.emulator.outbox.after(str(CUSTOMER), 0) == []
    assert (await wire.bot.send_message(CUSTOMER, "hello")).message_id == 1  # the faults are used up
