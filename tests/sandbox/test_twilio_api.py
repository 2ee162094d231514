"""The Twilio emulator: Twilio's wire format on its API side, and on the hub side webhooks and status
callbacks signed so that the real connector's `verify` accepts them (checked by a tiny real hub)."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from email.utils import parsedate_to_datetime

import httpx
import pytest
from pydantic import SecretStr
from starlette.applications import Starlette
from starlette.routing import Route

from bot.models import DeliveryStatus, EventKind, Location
from bot.rendering import RenderedPart
from bot.sandbox.emulator_kit import serve
from bot.sandbox.twilio_api import TwilioEmulator, create_twilio_emulator
from bot.settings import TwilioSettings
from connectors.twilio import TwilioConnector
from tests.sandbox.webhook_receiver import Hub

ACCOUNT = "AC" + "7" * 32
TOKEN = "emulator-auth-token"
CUSTOMER = "+79991234567"
MESSAGES = f"/2010-04-01/Accounts/{ACCOUNT}/Messages.json"


def settings(api_base: str, token: str = TOKEN) -> TwilioSettings:
    return TwilioSettings(
        account_sid=ACCOUNT,
        auth_token=SecretStr(token),
        sms_from="+15005550006",
        whatsapp_from="+14155238886",
        api_base=api_base,
    )


@dataclass
class Setup:
    hub: Hub
    emulator: TwilioEmulator
    api: httpx.AsyncClient  # at the emulator
    sms: TwilioConnector
    whatsapp: TwilioConnector


async def running(auto_read: bool = True, hub_token: str = TOKEN) -> AsyncIterator[Setup]:
    hub = Hub(TwilioConnector(settings("http://127.0.0.1:9", hub_token), "sms", None))
    routes = [
        Route(path, hub.webhook, methods=["POST"]) for path in ("/webhooks/twilio", "/webhooks/twilio/status")
    ]
    async with serve(Starlette(routes=routes)) as hub_url:
        app = create_twilio_emulator(
            ACCOUNT, TOKEN, webhook_url=f"{hub_url}/webhooks/twilio", status_delay=0.01, auto_read=auto_read
        )
        async with serve(app) as base, httpx.AsyncClient(base_url=base) as api:
            status_url = f"{hub_url}/webhooks/twilio/status"
            sms = TwilioConnector(settings(base), "sms", status_url)
            whatsapp = TwilioConnector(settings(base), "whatsapp", status_url)
            await sms.start(None)
            await whatsapp.start(None)
            yield Setup(hub, app.state.emulator, api, sms, whatsapp)
            await sms.close()
            await whatsapp.close()


@pytest.fixture
async def setup() -> AsyncIterator[Setup]:
    async for value in running():
        yield value


# --- the Messages API ----------------------------------------------------------------------------


async def test_message_resource(setup: Setup) -> None:
    text = "Ваш заказ 1042 передан в доставку. Курьер позвонит за час до приезда, спасибо!"
    answer = await setup.api.post(
        MESSAGES, data={"To": CUSTOMER, "From": "+15005550006", "Body": text}, auth=(ACCOUNT, TOKEN)
    )
    assert answer.status_code == 201
    message = answer.json()
    assert re.fullmatch(r"SM[0-9a-f]{32}", message["sid"])
    assert (message["status"], message["to"], message["from"], message["body"]) == (
        "queued",
        CUSTOMER,
        "+15005550006",
        text,
    )
    assert message["num_segments"] == "2"  # 80 Cyrillic characters: UCS-2, 67 per segment
    assert message["uri"] == f"/2010-04-01/Accounts/{ACCOUNT}/Messages/{message['sid']}.json"
    assert parsedate_to_datetime(message["date_created"]).tzinfo is not None


@pytest.mark.parametrize(
    ("auth", "path", "status", "code"),
    [
        ((ACCOUNT, "wrong"), MESSAGES, 401, 20003),
        (None, MESSAGES, 401, 20003),
        ((ACCOUNT, TOKEN), MESSAGES.replace(ACCOUNT, "AC" + "8" * 32), 404, 20404),
    ],
)
async def test_authentication(
    setup: Setup, auth: tuple[str, str] | None, path: str, status: int, code: int
) -> None:
    form = {"To": CUSTOMER, "From": "+15005550006", "Body": "x"}
    answer = await setup.api.post(path, data=form, auth=auth or httpx.USE_CLIENT_DEFAULT)
    assert (answer.status_code, answer.json()["code"], answer.json()["status"]) == (status, code, status)


@pytest.mark.parametrize(
    ("form", "code"),
    [
        ({"To": "12345", "From": "+15005550006", "Body": "x"}, 21211),
        ({"To": "whatsapp:+0123", "From": "whatsapp:+14155238886", "Body": "x"}, 21211),
        ({"From": "+15005550006", "Body": "x"}, 21604),
        ({"To": CUSTOMER, "Body": "x"}, 21603),
        ({"To": CUSTOMER, "From": "+15005550006"}, 21602),
    ],
)
async def test_validation_errors_in_twilio_shape(setup: Setup, form: dict[str, str], code: int) -> None:
    answer = await setup.api.post(MESSAGES, data=form, auth=(ACCOUNT, TOKEN))
    error = answer.json()
    assert (answer.status_code, error["code"], error["status"]) == (400, code, 400)
    assert error["more_info"] == f"https://www.twilio.com/docs/errors/{code}" and error["message"]
    assert setup.emulator.outbox.total == 0


# --- status callbacks, verified by the connector ---------------------------------------------------


async def test_whatsapp_send_is_sent_delivered_read(setup: Setup) -> None:
    sid = await setup.whatsapp.send(CUSTOMER, RenderedPart(text="Your order is on its way"))
    events = await setup.hub.until(2)
    assert [(e.kind, e.channel, e.user_id, e.status_of) for e in events] == [
        (EventKind.status, "whatsapp", CUSTOMER, sid)
    ] * 2
    assert [e.status for e in events] == [DeliveryStatus.delivered, DeliveryStatus.read]
    assert setup.hub.answered == 3  # the `sent` callback too: verified and answered, no news for the hub
    assert setup.emulator.outbox.find(sid).status == "read"  # type: ignore[union-attr]


async def test_sms_send_is_sent_then_delivered(setup: Setup) -> None:
    await setup.sms.send(CUSTOMER, RenderedPart(text="Your code is 1234"))
    await setup.hub.until(1)
    await asyncio.sleep(0.05)
    assert [e.status for e in setup.hub.events] == [DeliveryStatus.delivered]
    assert setup.hub.answered == 2


async def test_read_on_demand() -> None:
    async for setup in running(auto_read=False):
        sid = await setup.whatsapp.send(CUSTOMER, RenderedPart(text="Still interested?"))
        await setup.hub.until(1)
        await asyncio.sleep(0.05)
        assert DeliveryStatus.read not in {e.status for e in setup.hub.events}
        answer = (await setup.api.post("/_/read", json={"sid": sid})).json()
        assert (answer["sid"], answer["status"]) == (sid, 200)
        assert setup.hub.events[-1].status == DeliveryStatus.read
        assert (await setup.api.post("/_/read", json={"sid": "SMnope"})).status_code == 404


async def test_accepted_then_failed_outside_the_window(setup: Setup) -> None:
    (await setup.api.post("/_/faults", json={"status": 201, "code": 63016})).raise_for_status()
    sid = await setup.whatsapp.send(CUSTOMER, RenderedPart(text="A week later"))
    [event] = await setup.hub.until(1)
    await asyncio.sleep(0.05)
    assert len(setup.hub.events) == 1
    assert (event.status, event.status_of, event.error) == (DeliveryStatus.failed, sid, "63016")


# --- inbound webhooks, verified by the connector ---------------------------------------------------


async def test_inbound_sms(setup: Setup) -> None:
    answer = (
        await setup.api.post("/_/inbound", json={"channel": "sms", "from": CUSTOMER, "text": "Hi"})
    ).json()
    assert answer["status"] == 200 and answer["body"].endswith("<Response></Response>")
    [event] = setup.hub.events
    assert (event.kind, event.channel, event.user_id, event.text) == (
        EventKind.message,
        "sms",
        CUSTOMER,
        "Hi",
    )
    assert event.provider_id == answer["message_sid"]


async def test_inbound_whatsapp_with_everything(setup: Setup) -> None:
    spec = {
        "channel": "whatsapp",
        "from": CUSTOMER,
        "text": "Here",
        "profile_name": "Anna",
        "media": [{"url": "https://x.example/a.jpg", "content_type": "image/jpeg"}],
        "location": {"latitude": 55.75, "longitude": 37.61},
    }
    assert (await setup.api.post("/_/inbound", json=spec)).json()["status"] == 200
    button = {"channel": "whatsapp", "from": CUSTOMER, "text": "Yes", "button_payload": "delivery:confirm"}
    assert (await setup.api.post("/_/inbound", json=button)).json()["status"] == 200
    first, second = setup.hub.events
    assert (first.channel, first.user_name, first.text) == ("whatsapp", "Anna", "Here")
    assert [a.url for a in first.attachments] == ["https://x.example/a.jpg"]
    assert first.location == Location(latitude=55.75, longitude=37.61)
    assert (second.payload, second.text) == ("delivery:confirm", "Yes")


async def test_hub_with_another_token_refuses_the_signature() -> None:
    async for setup in running(hub_token="not-the-emulator-token"):
        answer = (await setup.api.post("/_/inbound", json={"from": CUSTOMER, "text": "Hi"})).json()
        assert answer["status"] == 403 and "X-Twilio-Signature" in answer["body"]
        assert setup.hub.events == []


async def test_bad_control_requests(setup: Setup) -> None:
    answer = await setup.api.post("/_/inbound", json={"text": "no sender"})
    assert answer.status_code == 400 and "from" in answer.json()["error"]
    assert (await setup.api.post("/_/faults", json={"times": 1})).status_code == 400


async def test_no_webhook_url() -> None:
    app = create_twilio_emulator(ACCOUNT, TOKEN, webhook_url=None)
    async with serve(app) as base, httpx.AsyncClient(base_url=base) as api:
        assert (await api.post("/_/inbound", json={"from": CUSTOMER, "text": "Hi"})).status_code == 409


# --- outbox --------------------------------------------------------------------------------------


async def test_outbox_long_poll(setup: Setup) -> None:
    poll = asyncio.create_task(setup.api.get(f"/_/outbox/{CUSTOMER}", params={"after": 0, "wait": 5}))
    await asyncio.sleep(0.05)
    await setup.sms.send(CUSTOMER, RenderedPart(text="Hello"))
    [item] = (await poll).json()["items"]
    assert (item["user_id"], item["text"], item["raw"]["channel"]) == (CUSTOMER, "Hello", "sms")
    everything = (await setup.api.get("/_/outbox", params={"after": item["seq"]})).json()
    assert everything == {"items": []}
