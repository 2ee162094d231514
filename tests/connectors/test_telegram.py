"""The Telegram connector against recorded Bot API payloads and, on the wire, the loopback emulator."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from bot.models import Attachment, Button, EventKind, InboundEvent, Location, Media
from bot.rendering import RenderedPart
from bot.sandbox.emulator_kit import serve
from bot.sandbox.telegram_api import TelegramEmulator, create_telegram_emulator
from bot.settings import TelegramSettings
from connectors.base import BadPayload, BadSignature, SendError, WebhookRequest
from connectors.telegram import TelegramConnector

PAYLOADS = Path(__file__).resolve().parents[1] / "payloads" / "telegram"
TOKEN = "7000000001:AAE-sandbox_token"
SECRET = "webhook-secret_42"
CUSTOMER = "123456789"
Wire = tuple[TelegramConnector, TelegramEmulator, str]  # the connector, the emulator, its URL


def make_connector(api_base: str = "http://127.0.0.1:9", secret: str | None = SECRET) -> TelegramConnector:
    settings = TelegramSettings(
        webhook_secret=SecretStr(secret) if secret else None,
        api_base=api_base,
        bot_username="omnihub_demo_bot",
    )
    return TelegramConnector(settings, TOKEN)


def webhook(body: bytes, secret: str | None = SECRET) -> WebhookRequest:
    headers = {"x-telegram-bot-api-secret-token": secret} if secret is not None else {}
    return WebhookRequest(url="https://hub.example/webhooks/telegram", headers=headers, body=body)


def parse(name: str) -> list[InboundEvent]:
    return make_connector().parse(webhook((PAYLOADS / f"{name}.json").read_bytes()))


def at(timestamp: int) -> datetime:
    return datetime.fromtimestamp(timestamp, UTC)


# --- parse: recorded payloads ---------------------------------------------------------------------


def test_text_message() -> None:
    [event] = parse("text_message")
    assert event.kind == EventKind.message
    assert (event.channel, event.user_id, event.provider_id) == ("telegram", CUSTOMER, "524876101")
    assert event.text == "Hi! Where is my order?"
    assert (event.user_name, event.language, event.at) == ("Anna Smith", "en", at(1746268800))
    assert event.start_param is None and event.payload is None and event.attachments == ()


def test_start_with_deep_link_payload() -> None:
    [event] = parse("start_deep_link")
    assert (event.text, event.start_param, event.provider_id) == ("/start", "link-7Hq2xZ_9", "524876102")


@pytest.mark.parametrize(
    ("text", "start_param"),
    [("/start", None), ("/start@omnihub_demo_bot abc", "abc"), ("/starting", None)],
)
def test_start_variants(text: str, start_param: str | None) -> None:
    update = json.loads((PAYLOADS / "text_message.json").read_text())
    update["message"]["text"] = text
    [event] = make_connector().parse(webhook(json.dumps(update).encode()))
    assert event.start_param == start_param
    assert event.text == (text if text == "/starting" else "/start")


def test_callback_query_is_a_button_press() -> None:
    [event] = parse("callback_query")
    assert event.kind == EventKind.message
    assert (event.user_id, event.provider_id, event.payload) == (
        CUSTOMER,
        "cb:4382bfdwdsb323b2d9",
        "order:1001",
    )
    assert event.text is None and event.user_name == "Anna Smith"


def test_photo_keeps_largest_size_and_caption() -> None:
    [event] = parse("photo")
    assert event.attachments == (Attachment(type="image", file_id="AgACAgIAAxkBAAIBQ2ZlargeAAA"),)
    assert event.text == "The box arrived damaged"


def test_document() -> None:
    [event] = parse("document")
    expected = Attachment(
        type="document", file_id="BQACAgIAAxkBAAIBRGZdocAAA", mime="application/pdf", name="invoice-1001.pdf"
    )
    assert event.attachments == (expected,) and event.text is None


def test_voice() -> None:
    [event] = parse("voice")
    assert event.attachments == (
        Attachment(type="voice", file_id="AwACAgIAAxkBAAIBSWZvoiceAA", mime="audio/ogg"),
    )


def test_location() -> None:
    [event] = parse("location")
    assert event.location == Location(latitude=55.751244, longitude=37.618423)


def test_contact_phone_passes_through_unnormalised() -> None:
    [event] = parse("contact")
    assert event.contact_phone == "79991234567"


def test_a_forwarded_card_of_someone_else_links_nobody() -> None:
    assert parse("contact_of_someone_else") == []


def test_russian_text_and_language() -> None:
    [event] = parse("text_russian")
    assert event.text == "Здравствуйте! Когда привезут мой заказ?"
    assert (event.user_id, event.user_name, event.language) == ("987654321", "Иван Петров", "ru")


@pytest.mark.parametrize("name", ["edited_message", "channel_post", "my_chat_member"])
def test_updates_without_a_customer_message_give_no_events(name: str) -> None:
    assert parse(name) == []


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"{not json", "not valid JSON"),
        (b"", "not valid JSON"),
        (b"[1, 2]", "not a Telegram Update"),
        (b'{"message": {"text": "hi"}}', "not a Telegram Update: update_id"),
        (b'{"update_id": 5, "message": {"text": "no chat"}}', "not a Telegram Update: message"),
    ],
)
def test_malformed_body_is_bad_payload(body: bytes, reason: str) -> None:
    with pytest.raises(BadPayload, match=reason):
        make_connector().parse(webhook(body))


# --- verify -----------------------------------------------------------------------------------------


def test_verify_accepts_the_configured_secret() -> None:
    make_connector().verify(webhook(b"{}", SECRET))


@pytest.mark.parametrize(
    ("given", "reason"),
    [("wrong", "does not match"), (None, "missing X-Telegram-Bot-Api-Secret-Token"), ("", "does not match")],
)
def test_verify_refuses_wrong_or_missing_secret(given: str | None, reason: str) -> None:
    with pytest.raises(BadSignature, match=reason):
        make_connector().verify(webhook(b"{}", given))


def test_verify_without_configured_secret_accepts_anything() -> None:
    make_connector(secret=None).verify(webhook(b"{}", None))


def test_deep_link() -> None:
    assert make_connector().deep_link("link-7Hq2xZ_9") == "https://t.me/omnihub_demo_bot?start=link-7Hq2xZ_9"
    with pytest.raises(ValueError, match="deep-link code"):
        make_connector().deep_link("has space")


# --- send: on the wire, through the emulator ------------------------------------------------------


@pytest.fixture
async def wire() -> AsyncIterator[Wire]:
    app = create_telegram_emulator(TOKEN)
    async with serve(app) as url:
        connector = make_connector(api_base=url)
        await connector.start(None)
        try:
            yield connector, app.state.emulator, url
        finally:
            await connector.close()


async def test_send_text_with_inline_keyboard(wire: Wire) -> None:
    connector, emulator, _ = wire
    long_payload = "заказ-" * 10  # 110 bytes of UTF-8: over Telegram's 64
    buttons = (
        Button(title="Order #1001", payload="order:1001"),
        Button(title="Другой", payload=long_payload),
    )
    provider_id = await connector.send(CUSTOMER, RenderedPart(text="Which order?", buttons=buttons))

    [sent] = emulator.outbox.after(CUSTOMER, 0)
    assert provider_id == sent.provider_id == "1"
    assert sent.text == "Which order?" and sent.raw["chat_id"] == CUSTOMER
    [first], [second] = sent.raw["reply_markup"]["inline_keyboard"]
    assert first == {"text": "Order #1001", "callback_data": "order:1001"}
    data = second["callback_data"]
    assert second["text"] == "Другой" and long_payload.startswith(data) and 60 <= len(data.encode()) <= 64
    assert sent.buttons[0] == {"title": "Order #1001", "payload": "order:1001"}

    assert await connector.send(CUSTOMER, RenderedPart(text="Thanks")) == "2"  # ids count per chat


async def test_send_photo_with_caption_and_buttons(wire: Wire) -> None:
    connector, emulator, _ = wire
    part = RenderedPart(
        text="Your parcel",
        media=(Media(url="https://cdn.example/p.jpg"),),
        buttons=(Button(title="OK", payload="ok"),),
    )
    provider_id = await connector.send(CUSTOMER, part)
    [sent] = emulator.outbox.after(CUSTOMER, 0)
    assert provider_id == sent.provider_id
    assert (sent.text, sent.media) == ("Your parcel", ["https://cdn.example/p.jpg"])
    assert sent.raw["photo"] == "https://cdn.example/p.jpg" and "reply_markup" in sent.raw
    assert sent.buttons == [{"title": "OK", "payload": "ok"}]


async def test_long_caption_goes_in_a_text_after_the_media(
    wire: Wire,
) -> None:
    connector, emulator, _ = wire
    text = "word " * 300
    part = RenderedPart(text=text, media=(Media(url="https://cdn.example/terms.pdf", type="document"),))
    provider_id = await connector.send(CUSTOMER, part)
    document, message = emulator.outbox.after(CUSTOMER, 0)
    assert document.raw["document"] == "https://cdn.example/terms.pdf" and "caption" not in document.raw
    assert message.text == text and provider_id == message.provider_id


@pytest.mark.parametrize(
    ("fault", "retry_after", "permanent"),
    [
        ({"status": 429, "retry_after": 7}, 7, False),
        ({"status": 500}, None, False),
        ({"status": 502}, None, False),
        ({"status": 403}, None, True),
        ({"status": 400}, None, True),
    ],
)
async def test_send_errors_map_to_send_error(
    wire: Wire, fault: dict[str, Any], retry_after: int | None, permanent: bool
) -> None:
    connector, emulator, url = wire
    async with httpx.AsyncClient() as client:
        answer = await client.post(f"{url}/_/faults", json={"method": "sendMessage", "times": 1, **fault})
        assert answer.status_code == 200
    with pytest.raises(SendError) as caught:
        await connector.send(CUSTOMER, RenderedPart(text="hello"))
    assert (caught.value.retry_after, caught.value.permanent) == (retry_after, permanent)
    assert emulator.outbox.after(CUSTOMER, 0) == []
    assert await connector.send(CUSTOMER, RenderedPart(text="hello")) is not None  # the fault is used up


async def test_network_error_is_retryable() -> None:
    connector = make_connector(api_base="http://127.0.0.1:9")  # nothing listens on the discard port
    await connector.start(None)
    try:
        with pytest.raises(SendError) as caught:
            await connector.send(CUSTOMER, RenderedPart(text="hello"))
    finally:
        await connector.close()
    assert not caught.value.permanent and caught.value.retry_after is None


async def test_start_with_public_url_registers_the_signed_webhook(
    wire: Wire,
) -> None:
    connector, emulator, _ = wire
    await connector.start("https://hub.example/")
    await connector.close()
    assert (emulator.webhook_url, emulator.webhook_secret) == (
        "https://hub.example/webhooks/telegram",
        SECRET,
    )


async def test_acknowledge_logs_refused_answers(wire: Wire, caplog: pytest.LogCaptureFixture) -> None:
    connector, _, _ = wire
    unknown = InboundEvent(
        kind=EventKind.message, channel="telegram", user_id=CUSTOMER, provider_id="cb:nope"
    )
    with caplog.at_level(logging.WARNING, logger="connectors.telegram"):
        await connector.acknowledge([unknown])
    assert "answerCallbackQuery nope failed" in caplog.text
