"""The Viber connector against recorded callbacks and, on the wire, the loopback Viber emulator."""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from bot.models import Attachment, Button, DeliveryStatus, EventKind, InboundEvent, Location, Media, Reply
from bot.rendering import RenderedPart, render
from bot.sandbox.emulator_kit import Fault, serve
from bot.sandbox.viber_api import ViberEmulator, create_viber_emulator
from bot.settings import ViberSettings
from connectors.base import BadPayload, BadSignature, SendError, WebhookRequest
from connectors.viber import EVENT_TYPES, ViberConnector

PAYLOADS = Path(__file__).resolve().parents[1] / "payloads" / "viber"
TOKEN = "4453b6ac12345678-e02c5f12174805f9-daec9cbb5448c51f"
CUSTOMER = "01234567890A="
HOOK = "https://hub.example.com/webhooks/viber"


def make_connector(api_base: str = "http://127.0.0.1:9", token: str = TOKEN) -> ViberConnector:
    settings = ViberSettings(bot_name="Omnihub Shop", welcome_text="Welcome!", api_base=api_base)
    return ViberConnector(settings, token)


def signed(body: bytes, token: str = TOKEN) -> WebhookRequest:
    signature = hmac.new(token.encode(), body, hashlib.sha256).hexdigest()
    return WebhookRequest(url=HOOK, headers={"x-viber-content-signature": signature}, body=body)


def parse(name: str) -> list[InboundEvent]:
    return make_connector().parse(signed((PAYLOADS / f"{name}.json").read_bytes()))


def payload(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((PAYLOADS / f"{name}.json").read_text(encoding="utf-8"))
    return data


def at(milliseconds: int) -> datetime:
    return datetime.fromtimestamp(milliseconds / 1000, UTC)


# --- parse: recorded callbacks --------------------------------------------------------------------


def test_webhook_check_is_no_event() -> None:
    assert parse("webhook") == []


def test_conversation_started_carries_the_deep_link_and_asks_for_a_welcome() -> None:
    connector = make_connector()
    [event] = connector.parse(signed((PAYLOADS / "conversation_started.json").read_bytes()))
    assert (event.kind, event.user_id, event.provider_id) == (
        EventKind.opened,
        CUSTOMER,
        "5741311803571721087",
    )
    assert (event.start_param, event.text, event.user_name, event.language) == (
        "link-7Hq2xZ_9",
        None,
        "Anna Smith",
        "ru",
    )
    answer = connector.answer([event])
    assert json.loads(answer.body) == {"sender": {"name": "Omnihub Shop"}, "type": "text", "text": "Welcome!"}
    assert answer.media_type == "application/json"


def test_conversation_started_without_context() -> None:
    body = payload("conversation_started") | {"context": ""}
    [event] = make_connector().parse(signed(json.dumps(body).encode()))
    assert event.start_param is None


def test_subscribed_and_unsubscribed() -> None:
    [subscribed] = parse("subscribed")
    assert (subscribed.kind, subscribed.user_id, subscribed.provider_id) == (
        EventKind.subscribed,
        CUSTOMER,
        "5741311803571721088",
    )
    assert (subscribed.user_name, subscribed.language, subscribed.at) == (
        "Anna Smith",
        "ru",
        at(1763834220000),
    )
    [unsubscribed] = parse("unsubscribed")
    assert (unsubscribed.kind, unsubscribed.user_id) == (EventKind.unsubscribed, CUSTOMER)
    assert make_connector().answer([subscribed, unsubscribed]).body == b""


def test_text_message() -> None:
    [event] = parse("message_text")
    assert (event.kind, event.channel, event.user_id) == (EventKind.message, "viber", CUSTOMER)
    assert (event.provider_id, event.text, event.payload) == (
        "5741311803571721090",
        "Где мой заказ 1042?",
        None,
    )
    assert event.at == at(1763834340000)


def test_keyboard_button_press() -> None:
    [event] = parse("message_button")
    assert (event.payload, event.text) == ("delivery:confirm", None)


def test_picture() -> None:
    [event] = parse("message_picture")
    media = payload("message_picture")["message"]["media"]
    assert event.attachments == (Attachment(type="image", url=media, name="photo.jpg"),)
    assert event.text == "The parcel arrived damaged"


def test_file() -> None:
    [event] = parse("message_file")
    [document] = event.attachments
    assert (document.type, document.name) == ("document", "invoice-1042.pdf")
    assert event.text is None


def test_location_contact_sticker() -> None:
    assert parse("message_location")[0].location == Location(latitude=55.7558, longitude=37.6173)
    assert parse("message_contact")[0].contact_phone == "+79991234567"
    [sticker] = parse("message_sticker")[0].attachments
    assert (sticker.type, sticker.file_id) == ("sticker", "46105")


@pytest.mark.parametrize(
    ("name", "status", "error"),
    [
        ("delivered", DeliveryStatus.delivered, None),
        ("seen", DeliveryStatus.read, None),
        ("failed", DeliveryStatus.failed, "failure description"),
    ],
)
def test_statuses(name: str, status: DeliveryStatus, error: str | None) -> None:
    [event] = parse(name)
    token = str(payload(name)["message_token"])
    assert (event.kind, event.user_id, event.status, event.error) == (
        EventKind.status,
        CUSTOMER,
        status,
        error,
    )
    assert (event.status_of, event.provider_id) == (token, f"{token}:{name}")


def test_delivered_and_seen_of_one_message_are_distinct_events() -> None:
    assert parse("delivered")[0].dedupe_key != parse("seen")[0].dedupe_key


@pytest.mark.parametrize(
    ("body", "named"),
    [
        (b"{not json", "body"),
        (b'{"timestamp": 1}', "event"),
        (b'{"event": "message", "message_token": 1, "message": {"type": "text", "text": "x"}}', "sender"),
        (b'{"event": "seen", "message_token": 1}', "user_id"),
        (b'{"event": "subscribed", "user": {"id": "u"}}', "message_token"),
        (
            b'{"event": "message", "message_token": 1, "sender": {"name": "no id"}, "message": {}}',
            "sender.id",
        ),
    ],
)
def test_malformed(body: bytes, named: str) -> None:
    with pytest.raises(BadPayload, match=named):
        make_connector().parse(signed(body))


def test_unknown_event_is_ignored() -> None:
    assert make_connector().parse(signed(b'{"event": "client_status", "timestamp": 1}')) == []


# --- verify: X-Viber-Content-Signature ------------------------------------------------------------


def test_valid_signature() -> None:
    make_connector().verify(signed((PAYLOADS / "message_text.json").read_bytes()))


def test_tampered_body() -> None:
    request = signed((PAYLOADS / "message_text.json").read_bytes())
    with pytest.raises(BadSignature, match="does not match"):
        make_connector().verify(
            WebhookRequest(request.url, request.headers, request.body.replace(b"1042", b"9999"))
        )


def test_wrong_token() -> None:
    with pytest.raises(BadSignature):
        make_connector().verify(signed(b'{"event": "webhook"}', token="another-token"))


def test_missing_header() -> None:
    with pytest.raises(BadSignature, match="missing X-Viber-Content-Signature"):
        make_connector().verify(WebhookRequest(HOOK, {}, b'{"event": "webhook"}'))


def test_deep_link() -> None:
    assert make_connector().deep_link("link 7") == "viber://pa?chatURI=omnihubshop&context=link%207"


# --- send and set_webhook: on the wire, through the emulator --------------------------------------

Wire = tuple[ViberEmulator, ViberConnector]


@pytest.fixture
async def wire() -> AsyncIterator[Wire]:
    app = create_viber_emulator(TOKEN, webhook_url=HOOK, status_delay=60)  # statuses never come
    emulator: ViberEmulator = app.state.emulator
    emulator.users[CUSTOMER] = {"id": CUSTOMER, "name": "Anna Smith"}  # she has written to the bot
    async with serve(app) as base:
        connector = make_connector(base)
        await connector.start(None)
        yield emulator, connector
        await connector.close()


async def test_keyboard(wire: Wire) -> None:
    emulator, connector = wire
    reply = Reply(
        text="Deliver tomorrow?", buttons=(Button(title="Yes", payload="y"), Button(title="No", payload="n"))
    )
    [part] = render(reply, connector.capabilities)
    token = await connector.send(CUSTOMER, part)
    [sent] = emulator.outbox.after(CUSTOMER, 0)
    assert sent.provider_id == token and token.isdigit()
    assert sent.buttons == [{"title": "Yes", "payload": "y"}, {"title": "No", "payload": "n"}]
    raw = sent.raw
    assert (raw["type"], raw["text"], raw["min_api_version"], raw["sender"]) == (
        "text",
        "Deliver tomorrow?",
        7,
        {"name": "Omnihub Shop"},
    )
    assert raw["keyboard"]["Buttons"][0] == {
        "ActionType": "reply",
        "ActionBody": "btn:y",
        "Text": "Yes",
        "Columns": 6,
        "Rows": 1,
    }


async def test_plain_text_has_no_keyboard(wire: Wire) -> None:
    emulator, connector = wire
    await connector.send(CUSTOMER, RenderedPart(text="Hello"))
    [sent] = emulator.outbox.after(CUSTOMER, 0)
    assert "keyboard" not in sent.raw and "min_api_version" not in sent.raw


async def test_picture_with_caption_and_a_document_link(wire: Wire) -> None:
    emulator, connector = wire
    await connector.send(
        CUSTOMER, RenderedPart(text="Your parcel", media=(Media(url="https://x.example/p.jpg"),))
    )
    media = (Media(url="https://x.example/p.jpg"), Media(url="https://x.example/i.pdf", type="document"))
    await connector.send(CUSTOMER, RenderedPart(text="Invoice", media=media))
    sent = emulator.outbox.after(CUSTOMER, 0)
    assert [(s.raw["type"], s.text, s.media) for s in sent] == [
        ("picture", "Your parcel", ["https://x.example/p.jpg"]),
        ("picture", None, ["https://x.example/p.jpg"]),
        ("url", None, ["https://x.example/i.pdf"]),
        ("text", "Invoice", []),
    ]


async def test_not_subscribed_is_permanent(wire: Wire) -> None:
    with pytest.raises(SendError, match="status 6") as caught:
        await wire[1].send("a-stranger", RenderedPart(text="hi"))
    assert caught.value.permanent


@pytest.mark.parametrize(
    ("fault", "permanent", "retry_after"),
    [
        ({"status": 200, "code": 12}, False, 1.0),
        ({"status": 500}, False, None),
        ({"status": 200, "code": 5}, True, None),
    ],
)
async def test_error_mapping(
    wire: Wire, fault: dict[str, int], permanent: bool, retry_after: float | None
) -> None:
    emulator, connector = wire
    emulator.faults.add(Fault.model_validate(fault))
    with pytest.raises(SendError) as caught:
        await connector.send(CUSTOMER, RenderedPart(text="hi"))
    assert (caught.value.permanent, caught.value.retry_after) == (permanent, retry_after)


async def test_network_error_is_retryable() -> None:
    connector = make_connector("http://127.0.0.1:9")
    await connector.start(None)
    try:
        with pytest.raises(SendError, match="unreachable") as caught:
            await connector.send(CUSTOMER, RenderedPart(text="hi"))
        assert not caught.value.permanent
    finally:
        await connector.close()


async def test_wrong_token_is_refused() -> None:
    app = create_viber_emulator(TOKEN, webhook_url=HOOK)
    async with serve(app) as base:
        connector = make_connector(base, token="wrong")
        await connector.start(None)
        with pytest.raises(SendError, match="invalidAuthToken"):
            await connector.send(CUSTOMER, RenderedPart(text="hi"))
        await connector.close()


async def test_start_sets_the_webhook_which_viber_checks_at_once() -> None:
    checker = make_connector()
    received: list[bytes] = []

    async def hub(scope: Any, receive: Any, send: Any) -> None:  # a bare ASGI hub: verify, parse, 200
        body = b""
        while (message := await receive())["type"] == "http.request":
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        headers = {k.decode(): v.decode() for k, v in scope["headers"]}
        checker.verify(WebhookRequest(HOOK, headers, body))
        assert checker.parse(WebhookRequest(HOOK, headers, body)) == []
        received.append(body)
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    app = create_viber_emulator(TOKEN, webhook_url=None, transport=httpx.ASGITransport(hub))
    async with serve(app) as base:
        connector = make_connector(base)
        await connector.start("https://hub.example.com")
        emulator: ViberEmulator = app.state.emulator
        assert emulator.webhook_url == HOOK and emulator.event_types == EVENT_TYPES
        assert json.loads(received[0])["event"] == "webhook"
        await connector.close()
