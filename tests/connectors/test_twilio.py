"""The Twilio connector (SMS and WhatsApp) against recorded webhook payloads and, on the wire, the
loopback Twilio emulator served by uvicorn."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Literal
from urllib.parse import parse_qsl

import httpx
import pytest
from pydantic import SecretStr
from twilio.request_validator import RequestValidator

from bot.models import (
    Attachment,
    Button,
    DeliveryStatus,
    EventKind,
    InboundEvent,
    Location,
    Media,
    Reply,
    Template,
)
from bot.rendering import RenderedPart, render
from bot.sandbox.emulator_kit import serve
from bot.sandbox.twilio_api import TwilioEmulator, create_twilio_emulator
from bot.settings import ConfigError, TwilioSettings
from connectors.base import BadPayload, BadSignature, SendError, WebhookRequest
from connectors.twilio import EMPTY_TWIML, TwilioConnector

PAYLOADS = Path(__file__).resolve().parents[1] / "payloads" / "twilio"
ACCOUNT = "AC3f9c2d7e8b1a4c6d9e0f1a2b3c4d5e6f"
TOKEN = "12345678901234567890123456789012"
HOOK = "https://hub.example.com/webhooks/twilio"
STATUS_URL = "https://hub.example.com/webhooks/twilio/status"
CUSTOMER = "+79991234567"


def make_connector(
    channel: Literal["sms", "whatsapp"] = "sms", api_base: str = "http://127.0.0.1:9", token: str = TOKEN
) -> TwilioConnector:
    settings = TwilioSettings(
        account_sid=ACCOUNT,
        auth_token=SecretStr(token),
        sms_from="+15005550006",
        whatsapp_from="+14155238886",
        api_base=api_base,
    )
    return TwilioConnector(settings, channel, STATUS_URL)


def form_of(name: str) -> dict[str, str]:
    return dict(parse_qsl((PAYLOADS / f"{name}.txt").read_text(encoding="utf-8"), keep_blank_values=True))


def signed(form: dict[str, str], url: str = HOOK, token: str = TOKEN) -> WebhookRequest:
    signature = RequestValidator(token).compute_signature(url, form)
    return WebhookRequest(url=url, headers={"x-twilio-signature": signature}, body=b"", form=form)


def parse(name: str) -> list[InboundEvent]:
    return make_connector().parse(signed(form_of(name)))


# --- parse: recorded payloads ---------------------------------------------------------------------


def test_sms_inbound() -> None:
    [event] = parse("sms_inbound")
    assert (event.kind, event.channel, event.user_id) == (EventKind.message, "sms", CUSTOMER)
    assert event.provider_id == "SM5d1c0b2e9f8a7b6c5d4e3f2a1b0c9d8e"
    assert event.text == "Где мой заказ 1042?"
    assert event.user_name is None and event.attachments == () and event.payload is None


def test_whatsapp_text_is_whatsapp_whichever_instance_parses_it() -> None:
    [event] = make_connector("sms").parse(signed(form_of("whatsapp_text")))
    assert (event.channel, event.user_id, event.user_name) == ("whatsapp", CUSTOMER, "Anna")
    assert event.text == "Hi! Where is my order?"


def test_whatsapp_media_inbound() -> None:
    [event] = parse("whatsapp_media")
    assert event.provider_id == "MM7e6d5c4b3a29180f7e6d5c4b3a291807"
    assert event.text == "The parcel arrived damaged"
    image, document = event.attachments
    assert image == Attachment(type="image", url=form_of("whatsapp_media")["MediaUrl0"], mime="image/jpeg")
    assert (document.type, document.mime) == ("document", "application/pdf")


def test_whatsapp_location() -> None:
    [event] = parse("whatsapp_location")
    assert event.location == Location(latitude=55.7558, longitude=37.6173)
    assert event.text is None


def test_whatsapp_button_reply() -> None:
    [event] = parse("whatsapp_button")
    assert (event.payload, event.text) == ("delivery:confirm", "Yes, deliver tomorrow")


@pytest.mark.parametrize(
    ("name", "channel", "status", "error"),
    [
        ("status_delivered", "sms", DeliveryStatus.delivered, None),
        ("status_read", "whatsapp", DeliveryStatus.read, None),
        ("status_failed", "whatsapp", DeliveryStatus.failed, "63016"),
        ("status_undelivered", "sms", DeliveryStatus.undelivered, "30003: Unreachable destination handset"),
    ],
)
def test_status_callbacks(name: str, channel: str, status: DeliveryStatus, error: str | None) -> None:
    form = form_of(name)
    [event] = parse(name)
    assert (event.kind, event.channel, event.user_id) == (EventKind.status, channel, CUSTOMER)
    assert (event.status, event.status_of, event.error) == (status, form["MessageSid"], error)
    assert event.provider_id == f"{form['MessageSid']}:{form['MessageStatus']}"


def test_each_status_of_one_message_is_a_distinct_event() -> None:
    form = form_of("status_delivered")
    [delivered] = make_connector().parse(signed(form))
    [read] = make_connector().parse(signed(form | {"MessageStatus": "read"}))
    assert delivered.dedupe_key != read.dedupe_key


# The hub records a message "sent" once the API accepted it: queued and sent callbacks tell it nothing.
@pytest.mark.parametrize("state", ["accepted", "scheduled", "queued", "sending", "sent", "receiving"])
def test_pre_send_states_are_not_news(state: str) -> None:
    assert make_connector().parse(signed(form_of("status_sent") | {"MessageStatus": state})) == []


def test_canceled_counts_as_failed() -> None:
    [event] = make_connector().parse(signed(form_of("status_sent") | {"MessageStatus": "canceled"}))
    assert event.status == DeliveryStatus.failed


@pytest.mark.parametrize(
    ("name", "drop", "named"),
    [("sms_inbound", "From", "From"), ("whatsapp_text", "To", "To"), ("status_delivered", "To", "To")],
)
def test_missing_field_is_named(name: str, drop: str, named: str) -> None:
    form = form_of(name)
    del form[drop]
    with pytest.raises(BadPayload, match=named):
        make_connector().parse(signed(form))


def test_missing_sid_is_named() -> None:
    form = {k: v for k, v in form_of("sms_inbound").items() if not k.endswith("Sid") or k == "AccountSid"}
    with pytest.raises(BadPayload, match="MessageSid"):
        make_connector().parse(signed(form))


@pytest.mark.parametrize(("field", "value"), [("NumMedia", "two"), ("Latitude", "north")])
def test_not_a_number(field: str, value: str) -> None:
    with pytest.raises(BadPayload, match=field):
        make_connector().parse(signed(form_of("whatsapp_location") | {field: value}))


def test_media_count_without_url() -> None:
    with pytest.raises(BadPayload, match="MediaUrl0"):
        make_connector().parse(signed(form_of("whatsapp_text") | {"NumMedia": "1"}))


# --- verify: X-Twilio-Signature -------------------------------------------------------------------


def test_valid_signature() -> None:
    make_connector().verify(signed(form_of("whatsapp_text")))


def test_tampered_body() -> None:
    request = signed(form_of("whatsapp_text"))
    tampered = WebhookRequest(request.url, request.headers, b"", {**request.form, "Body": "Refund me"})
    with pytest.raises(BadSignature, match="does not match"):
        make_connector().verify(tampered)


def test_wrong_token() -> None:
    with pytest.raises(BadSignature):
        make_connector().verify(signed(form_of("sms_inbound"), token="another-token"))


def test_missing_header() -> None:
    with pytest.raises(BadSignature, match="missing X-Twilio-Signature"):
        make_connector().verify(WebhookRequest(HOOK, {}, b"", form_of("sms_inbound")))


def test_url_with_query_string() -> None:
    url = f"{HOOK}?tenant=shop-1&v=2"
    request = signed(form_of("sms_inbound"), url=url)
    make_connector().verify(request)
    with pytest.raises(BadSignature):
        make_connector().verify(
            WebhookRequest(f"{HOOK}?tenant=shop-2&v=2", request.headers, b"", request.form)
        )


def test_signature_for_another_url_fails() -> None:
    request = signed(form_of("sms_inbound"), url="https://evil.example/webhooks/twilio")
    with pytest.raises(BadSignature):
        make_connector().verify(WebhookRequest(HOOK, request.headers, b"", request.form))


@pytest.mark.parametrize(
    ("signed_for", "received_at"),
    [
        ("https://hub.example.com:443/webhooks/twilio", "https://hub.example.com/webhooks/twilio"),
        ("https://hub.example.com/webhooks/twilio", "https://hub.example.com:443/webhooks/twilio"),
        ("http://127.0.0.1/webhooks/twilio", "http://127.0.0.1:80/webhooks/twilio"),
    ],
)
def test_signed_with_or_without_the_default_port(signed_for: str, received_at: str) -> None:
    request = signed(form_of("sms_inbound"), url=signed_for)
    make_connector().verify(WebhookRequest(received_at, request.headers, b"", request.form))


def test_another_port_is_another_url() -> None:
    request = signed(form_of("sms_inbound"), url="https://hub.example.com:8443/webhooks/twilio")
    with pytest.raises(BadSignature):
        make_connector().verify(WebhookRequest("https://hub.example.com/webhooks/twilio", request.headers, b"",
                                               request.form))


def test_a_signature_with_non_ascii_characters_is_refused() -> None:
    request = WebhookRequest(HOOK, {"x-twilio-signature": "é" * 28}, b"", form_of("sms_inbound"))
    with pytest.raises(BadSignature, match="does not match"):
        make_connector().verify(request)


# --- answer, deep links, capabilities -------------------------------------------------------------


def test_answer_is_empty_twiml() -> None:
    answer = make_connector().answer(parse("sms_inbound"))
    assert (answer.body, answer.media_type) == (EMPTY_TWIML, "text/xml")


def test_deep_links() -> None:
    assert make_connector("whatsapp").deep_link("LINK 42") == "https://wa.me/14155238886?text=LINK%2042"
    assert make_connector("sms").deep_link("LINK42") == "sms:+15005550006?body=LINK42"


def test_capabilities() -> None:
    sms, whatsapp = make_connector("sms").capabilities, make_connector("whatsapp").capabilities
    assert (sms.max_text, sms.media, sms.sms_segments, sms.native_buttons) == (1600, False, True, False)
    assert (whatsapp.media, whatsapp.read_receipts, whatsapp.template_outside_window) == (True, True, True)


async def test_start_needs_the_channel_number() -> None:
    settings = TwilioSettings(account_sid=ACCOUNT, auth_token=SecretStr(TOKEN), sms_from="+15005550006")
    with pytest.raises(ConfigError, match="TWILIO_WHATSAPP_FROM"):
        await TwilioConnector(settings, "whatsapp", None).start(None)


# --- send: on the wire, through the emulator ------------------------------------------------------

Wire = tuple[TwilioEmulator, str]


@pytest.fixture
async def wire() -> AsyncIterator[Wire]:
    # Callbacks are far off: these tests look at what was sent, not at what comes back.
    app = create_twilio_emulator(ACCOUNT, TOKEN, webhook_url=None, status_delay=60)
    async with serve(app) as base:
        yield app.state.emulator, base


@pytest.fixture
async def sms(wire: Wire) -> AsyncIterator[TwilioConnector]:
    connector = make_connector("sms", wire[1])
    await connector.start(None)
    yield connector
    await connector.close()


@pytest.fixture
async def whatsapp(wire: Wire) -> AsyncIterator[TwilioConnector]:
    connector = make_connector("whatsapp", wire[1])
    await connector.start(None)
    yield connector
    await connector.close()


async def test_sms_with_numbered_options(wire: Wire, sms: TwilioConnector) -> None:
    reply = Reply(
        text="Deliver tomorrow?", buttons=(Button(title="Yes", payload="y"), Button(title="No", payload="n"))
    )
    [part] = render(reply, sms.capabilities)
    sid = await sms.send(CUSTOMER, part)
    [sent] = wire[0].outbox.after(CUSTOMER, 0)
    assert sent.provider_id == sid and sid.startswith("SM") and len(sid) == 34
    assert sent.text == "Deliver tomorrow?\n1. Yes\n2. No"
    assert (sent.raw["To"], sent.raw["From"], sent.raw["channel"]) == (CUSTOMER, "+15005550006", "sms")
    assert sent.raw["StatusCallback"] == STATUS_URL


async def test_sms_never_sends_media(wire: Wire, sms: TwilioConnector) -> None:
    await sms.send(
        CUSTOMER, RenderedPart(text="See the map", media=(Media(url="https://x.example/map.png"),))
    )
    [sent] = wire[0].outbox.after(CUSTOMER, 0)
    assert sent.media == [] and "MediaUrl" not in {k for k, v in sent.raw.items() if v}


async def test_whatsapp_sends_media(wire: Wire, whatsapp: TwilioConnector) -> None:
    media = (Media(url="https://x.example/a.jpg"), Media(url="https://x.example/b.pdf", type="document"))
    await whatsapp.send(CUSTOMER, RenderedPart(text="Your invoice", media=media))
    [sent] = wire[0].outbox.after(CUSTOMER, 0)
    assert sent.media == ["https://x.example/a.jpg", "https://x.example/b.pdf"]
    assert (sent.raw["To"], sent.raw["From"]) == (f"whatsapp:{CUSTOMER}", "whatsapp:+14155238886")


async def test_whatsapp_template(wire: Wire, whatsapp: TwilioConnector) -> None:
    template = Template(name="HXb5b62575e6e4ff6129ad7c8efe1f983e", variables={"1": "Anna", "2": "1042"})
    await whatsapp.send(CUSTOMER, RenderedPart(text="ignored: the template has the text", template=template))
    [sent] = wire[0].outbox.after(CUSTOMER, 0)
    assert sent.raw["ContentSid"] == template.name
    assert json.loads(sent.raw["ContentVariables"]) == {"1": "Anna", "2": "1042"}
    assert "Body" not in sent.raw


@pytest.mark.parametrize(
    ("fault", "permanent", "retry_after", "code"),
    [
        ({"status": 429, "code": 20429, "retry_after": 3}, False, 3.0, "20429"),
        ({"status": 429, "code": 20429}, False, None, "20429"),
        ({"status": 503}, False, None, "HTTP 503"),
        ({"status": 400, "code": 21610}, True, None, "21610"),
    ],
)
async def test_error_mapping(
    wire: Wire,
    sms: TwilioConnector,
    fault: dict[str, int],
    permanent: bool,
    retry_after: float | None,
    code: str,
) -> None:
    async with httpx.AsyncClient(base_url=wire[1]) as control:
        (await control.post("/_/faults", json=fault)).raise_for_status()
    with pytest.raises(SendError, match=code) as caught:
        await sms.send(CUSTOMER, RenderedPart(text="hi"))
    assert (caught.value.permanent, caught.value.retry_after) == (permanent, retry_after)
    assert await sms.send(CUSTOMER, RenderedPart(text="hi"))  # the fault was for one send only


async def test_invalid_number_is_permanent(sms: TwilioConnector) -> None:
    with pytest.raises(SendError, match="21211") as caught:
        await sms.send("12345", RenderedPart(text="hi"))
    assert caught.value.permanent


async def test_network_error_is_retryable() -> None:
    connector = make_connector("sms", "http://127.0.0.1:9")  # discard port: nothing listens
    await connector.start(None)
    try:
        with pytest.raises(SendError, match="unreachable") as caught:
            await connector.send(CUSTOMER, RenderedPart(text="hi"))
        assert not caught.value.permanent
    finally:
        await connector.close()
