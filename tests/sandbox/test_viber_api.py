"""The Viber emulator: Viber's REST envelope on its API side, and on the hub side callbacks signed so
that the real connector's `verify` accepts them (checked by a tiny real hub)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.routing import Route

from bot.models import Button, DeliveryStatus, EventKind, Location
from bot.rendering import RenderedPart
from bot.sandbox.emulator_kit import serve
from bot.sandbox.viber_api import ViberEmulator, create_viber_emulator
from bot.settings import ViberSettings
from connectors.viber import ViberConnector
from tests.sandbox.webhook_receiver import Hub

TOKEN = "4453b6ac12345678-e02c5f12174805f9-daec9cbb5448c51f"
CUSTOMER = "01234567890A="


def connector(api_base: str = "http://127.0.0.1:9", token: str = TOKEN) -> ViberConnector:
    return ViberConnector(ViberSettings(welcome_text="Welcome!", api_base=api_base), token)


@dataclass
class Setup:
    hub: Hub
    emulator: ViberEmulator
    api: httpx.AsyncClient  # at the emulator
    viber: ViberConnector  # the hub's sending side


async def running(auto_read: bool = True, hub_token: str = TOKEN) -> AsyncIterator[Setup]:
    hub = Hub(connector(token=hub_token))
    async with serve(Starlette(routes=[Route("/webhooks/viber", hub.webhook, methods=["POST"])])) as hub_url:
        app = create_viber_emulator(
            TOKEN, webhook_url=f"{hub_url}/webhooks/viber", status_delay=0.01, auto_read=auto_read
        )
        async with serve(app) as base, httpx.AsyncClient(base_url=base) as api:
            viber = connector(base)
            await viber.start(None)
            yield Setup(hub, app.state.emulator, api, viber)
            await viber.close()


@pytest.fixture
async def setup() -> AsyncIterator[Setup]:
    async for value in running():
        yield value


async def inbound(setup: Setup, **spec: Any) -> dict[str, Any]:
    answer = await setup.api.post("/_/inbound", json={"user_id": CUSTOMER, **spec})
    result: dict[str, Any] = answer.json()
    return result


# --- the REST API ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("headers", "body", "status", "message"),
    [
        (
            {"X-Viber-Auth-Token": "wrong"},
            {"receiver": CUSTOMER, "type": "text", "text": "x"},
            2,
            "invalidAuthToken",
        ),
        (
            {"X-Viber-Auth-Token": TOKEN},
            {"receiver": CUSTOMER, "type": "text", "text": "x"},
            6,
            "receiverNotSubscribed",
        ),
        ({"X-Viber-Auth-Token": TOKEN}, {"type": "text", "text": "x"}, 3, "receiver is required"),
        ({"X-Viber-Auth-Token": TOKEN}, {"receiver": CUSTOMER, "type": "text"}, 3, "needs text"),
    ],
)
async def test_refusals_are_http_200_with_a_status(
    setup: Setup, headers: dict[str, str], body: dict[str, Any], status: int, message: str
) -> None:
    answer = await setup.api.post("/send_message", json=body, headers=headers)
    assert answer.status_code == 200
    assert answer.json()["status"] == status and message in answer.json()["status_message"]


async def test_send_message_envelope(setup: Setup) -> None:
    await inbound(setup, event="subscribed")
    body = {"receiver": CUSTOMER, "type": "text", "text": "Hi", "sender": {"name": "Omnihub"}}
    answer = (await setup.api.post("/send_message", json=body, headers={"X-Viber-Auth-Token": TOKEN})).json()
    assert (answer["status"], answer["status_message"], answer["chat_hostname"]) == (0, "ok", "SN-CHAT-01_")
    assert isinstance(answer["message_token"], int) and len(str(answer["message_token"])) == 19


async def test_account_info(setup: Setup) -> None:
    await inbound(setup, event="subscribed")
    info = (await setup.api.post("/get_account_info", json={}, headers={"X-Viber-Auth-Token": TOKEN})).json()
    assert (info["status"], info["name"], info["subscribers_count"]) == (0, "Omnihub", 1)
    assert info["webhook"].endswith("/webhooks/viber")


async def test_set_webhook_to_a_dead_url_is_refused(setup: Setup) -> None:
    body = {"url": "http://127.0.0.1:9/webhooks/viber"}
    answer = (await setup.api.post("/set_webhook", json=body, headers={"X-Viber-Auth-Token": TOKEN})).json()
    assert (answer["status"], answer["status_message"].split(":")[0]) == (1, "invalidUrl")
    assert setup.emulator.webhook_url != body["url"]


# --- callbacks, verified by the connector ------------------------------------------------------------


async def test_only_known_users_get_messages_and_statuses_follow(setup: Setup) -> None:
    await inbound(setup, text="Hello", name="Anna", language="ru")
    [message] = setup.hub.events
    assert (message.kind, message.text, message.user_name, message.language) == (
        EventKind.message,
        "Hello",
        "Anna",
        "ru",
    )
    token = await setup.viber.send(
        CUSTOMER, RenderedPart(text="Hi Anna", buttons=(Button(title="Yes", payload="y"),))
    )
    _, delivered, seen = await setup.hub.until(3)
    assert [(e.kind, e.status, e.status_of) for e in (delivered, seen)] == [
        (EventKind.status, DeliveryStatus.delivered, token),
        (EventKind.status, DeliveryStatus.read, token),
    ]
    assert setup.emulator.outbox.find(token).status == "read"  # type: ignore[union-attr]


async def test_button_press_comes_back_as_its_payload(setup: Setup) -> None:
    await inbound(setup, button_payload="delivery:confirm")
    [event] = setup.hub.events
    assert (event.payload, event.text) == ("delivery:confirm", None)


async def test_contact_location_picture(setup: Setup) -> None:
    await inbound(setup, contact_phone="+79991234567")
    await inbound(setup, location={"latitude": 55.75, "longitude": 37.61})
    await inbound(setup, picture_url="https://x.example/p.jpg", text="Damaged")
    contact, place, picture = setup.hub.events
    assert contact.contact_phone == "+79991234567"
    assert place.location == Location(latitude=55.75, longitude=37.61)
    assert ([a.url for a in picture.attachments], picture.text) == (["https://x.example/p.jpg"], "Damaged")


async def test_conversation_started_is_answered_with_the_welcome(setup: Setup) -> None:
    answer = await inbound(setup, event="conversation_started", context="link-42")
    assert answer["status"] == 200 and answer["body"]["text"] == "Welcome!"
    [event] = setup.hub.events
    assert (event.kind, event.start_param, event.provider_id) == ("opened", "link-42", str(answer["message_token"]))
    [welcome] = setup.emulator.outbox.after(CUSTOMER, 0)  # what the customer sees
    assert welcome.text == "Welcome!"
    with pytest.raises(Exception, match="status 6"):  # opening the chat is not subscribing
        await setup.viber.send(CUSTOMER, RenderedPart(text="Hi"))


async def test_subscribe_then_unsubscribe(setup: Setup) -> None:
    await inbound(setup, event="subscribed", name="Anna")
    await setup.viber.send(CUSTOMER, RenderedPart(text="Thanks for subscribing"))
    await inbound(setup, event="unsubscribed")
    kinds = [e.kind for e in setup.hub.events if e.kind != EventKind.status]
    assert kinds == [EventKind.subscribed, EventKind.unsubscribed]
    with pytest.raises(Exception, match="status 6"):
        await setup.viber.send(CUSTOMER, RenderedPart(text="Come back"))


async def test_seen_on_demand() -> None:
    async for setup in running(auto_read=False):
        await inbound(setup, text="Hello")
        token = await setup.viber.send(CUSTOMER, RenderedPart(text="Still interested?"))
        await setup.hub.until(2)
        await asyncio.sleep(0.05)
        assert DeliveryStatus.read not in {e.status for e in setup.hub.events}
        answer = (await setup.api.post("/_/read", json={"message_token": int(token)})).json()
        assert answer["status"] == 200 and setup.hub.events[-1].status == DeliveryStatus.read


async def test_hub_with_another_token_refuses_the_signature() -> None:
    async for setup in running(hub_token="not-the-emulator-token"):
        answer = await inbound(setup, text="Hello")
        assert answer["status"] == 403 and "X-Viber-Content-Signature" in answer["body"]


async def test_bad_control_requests(setup: Setup) -> None:
    answer = await setup.api.post("/_/inbound", json={"user_id": CUSTOMER})
    assert answer.status_code == 400 and "text" in answer.json()["error"]
    answer = await setup.api.post("/_/inbound", json={"user_id": CUSTOMER, "event": "poke"})
    assert answer.status_code == 400 and "event" in answer.json()["error"]
