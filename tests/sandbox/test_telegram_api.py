"""The Telegram Bot API emulator on real loopback ports: the Bot API wire format, signed webhooks,
long polling, injected faults and the outbox."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import SecretStr
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from bot.sandbox.emulator_kit import serve
from bot.sandbox.telegram_api import TelegramEmulator, create_telegram_emulator
from bot.settings import TelegramSettings
from connectors.base import WebhookRequest
from connectors.telegram import TelegramConnector

TOKEN = "7000000001:AAE-sandbox_token"
SECRET = "webhook-secret_42"
CUSTOMER = 123456789
PAYLOADS = Path(__file__).resolve().parents[1] / "payloads" / "telegram"


@dataclass
class Receiver:
    """A tiny hub: keeps what it was posted, refuses a wrong secret token as the real hub does."""

    posted: list[WebhookRequest] = field(default_factory=list)

    async def webhook(self, request: Request) -> Response:
        headers = {k.lower(): v for k, v in request.headers.items()}
        if headers.get("x-telegram-bot-api-secret-token") != SECRET:
            return Response(b'{"detail": "bad secret"}', 403, media_type="application/json")
        self.posted.append(WebhookRequest(url=str(request.url), headers=headers, body=await request.body()))
        return Response(b"", 200)


@dataclass
class Setup:
    api: httpx.AsyncClient  # based at the emulator
    emulator: TelegramEmulator
    receiver: Receiver

    async def call(self, method: str, **params: Any) -> httpx.Response:
        """A Bot API call as aiogram makes it: a form whose nested objects are JSON strings."""
        form = {k: json.dumps(v) if isinstance(v, dict | list) else str(v) for k, v in params.items()}
        return await self.api.post(f"/bot{TOKEN}/{method}", data=form)


@contextlib.asynccontextmanager
async def started(webhook_secret: str | None) -> AsyncIterator[Setup]:
    receiver = Receiver()
    hub = Starlette(routes=[Route("/webhooks/telegram", receiver.webhook, methods=["POST"])])
    async with serve(hub) as hub_url:
        app = create_telegram_emulator(
            TOKEN, webhook_url=f"{hub_url}/webhooks/telegram", webhook_secret=webhook_secret
        )
        async with serve(app) as url, httpx.AsyncClient(base_url=url, timeout=10) as api:
            yield Setup(api, app.state.emulator, receiver)


@pytest.fixture
async def setup() -> AsyncIterator[Setup]:
    async with started(SECRET) as ready:
        yield ready


async def test_inbound_message_is_posted_signed_to_the_webhook(setup: Setup) -> None:
    answer = await setup.api.post(
        "/_/inbound", json={"user_id": str(CUSTOMER), "text": "/start promo", "first_name": "Anna"}
    )
    assert answer.json()["status"] == 200 and answer.json()["body"] is None
    [posted] = setup.receiver.posted
    update = json.loads(posted.body)
    assert update["update_id"] == answer.json()["update_id"]
    message = update["message"]
    assert message["chat"] == {"id": CUSTOMER, "first_name": "Anna", "type": "private"}
    assert message["entities"] == [{"offset": 0, "length": 6, "type": "bot_command"}]

    connector = TelegramConnector(TelegramSettings(webhook_secret=SecretStr(SECRET)), TOKEN)
    connector.verify(posted)
    [event] = connector.parse(posted)
    assert (event.text, event.start_param, event.user_id, event.user_name) == (
        "/start",
        "promo",
        str(CUSTOMER),
        "Anna",
    )


async def test_button_press_refers_to_the_bot_message_with_the_keyboard(setup: Setup) -> None:
    keyboard = {"inline_keyboard": [[{"text": "Yes", "callback_data": "yes"}]]}
    sent = (await setup.call("sendMessage", chat_id=CUSTOMER, text="Sure?", reply_markup=keyboard)).json()
    await setup.api.post("/_/inbound", json={"user_id": CUSTOMER, "callback_data": "yes"})
    query = json.loads(setup.receiver.posted[0].body)["callback_query"]
    assert query["data"] == "yes" and query["message"] == sent["result"]

    answered = await setup.call("answerCallbackQuery", callback_query_id=query["id"])
    assert answered.json() == {"ok": True, "result": True}
    again = await setup.call("answerCallbackQuery", callback_query_id=query["id"])
    assert again.status_code == 400 and "query is too old" in again.json()["description"]


async def test_a_wrong_secret_is_refused_by_the_hub_and_reported() -> None:
    async with started("not-the-secret") as setup:
        answer = await setup.api.post("/_/inbound", json={"user_id": CUSTOMER, "text": "hi"})
        assert answer.json()["status"] == 403 and setup.receiver.posted == []


async def test_recorded_update_is_replayed_as_is(setup: Setup) -> None:
    recorded = json.loads((PAYLOADS / "callback_query.json").read_text())
    answer = await setup.api.post("/_/inbound", json={"update": recorded})
    assert answer.json()["update_id"] == recorded["update_id"]
    assert json.loads(setup.receiver.posted[0].body) == recorded


async def test_unauthorized_token_and_unknown_method(setup: Setup) -> None:
    wrong = await setup.api.post("/bot1:wrong/sendMessage", data={"chat_id": "1", "text": "x"})
    assert (wrong.status_code, wrong.json()) == (
        401,
        {"ok": False, "error_code": 401, "description": "Unauthorized"},
    )
    unknown = await setup.api.get(f"/bot{TOKEN}/sendTelepathy")
    assert unknown.status_code == 404
    assert unknown.json() == {"ok": False, "error_code": 404, "description": "Not Found: method not found"}


async def test_methods_take_form_json_multipart_and_query(setup: Setup) -> None:
    by_form = await setup.call("sendMessage", chat_id=CUSTOMER, text="form")
    by_json = await setup.api.post(f"/bot{TOKEN}/sendMessage", json={"chat_id": CUSTOMER, "text": "json"})
    by_upload = await setup.api.post(
        f"/bot{TOKEN}/sendPhoto",
        data={"chat_id": str(CUSTOMER)},
        files={"photo": ("p.jpg", b"\xff\xd8", "image/jpeg")},
    )
    by_query = await setup.api.get(f"/bot{TOKEN}/getMe")
    ids = [answer.json()["result"]["message_id"] for answer in (by_form, by_json, by_upload)]
    assert ids == [1, 2, 3]  # message ids count per chat
    message = by_form.json()["result"]
    assert (
        message["from"]
        == by_query.json()["result"]
        == {
            "id": 7000000001,
            "is_bot": True,
            "first_name": "Omnihub",
            "username": "omnihub_demo_bot",
        }
    )
    assert [(sent.text, sent.media) for sent in setup.emulator.outbox.after(str(CUSTOMER), 0)] == [
        ("form", []),
        ("json", []),
        (None, ["p.jpg"]),
    ]


async def test_telegram_limits_are_enforced(setup: Setup) -> None:
    too_long = {"inline_keyboard": [[{"text": "x", "callback_data": "я" * 33}]]}  # 66 bytes
    refused = await setup.call("sendMessage", chat_id=CUSTOMER, text="hi", reply_markup=too_long)
    assert refused.json()["description"] == "Bad Request: BUTTON_DATA_INVALID"
    empty = await setup.call("sendMessage", chat_id=CUSTOMER, text="")
    assert (empty.status_code, empty.json()["description"]) == (400, "Bad Request: message text is empty")
    assert setup.emulator.outbox.after(None, 0) == []


async def test_faults_answer_as_telegram_does(setup: Setup) -> None:
    fault = {"method": "sendMessage", "status": 429, "retry_after": 1, "times": 2}
    assert (await setup.api.post("/_/faults", json=fault)).status_code == 200
    for _ in range(2):
        limited = await setup.call("sendMessage", chat_id=CUSTOMER, text="hi")
        assert (limited.status_code, limited.json()) == (
            429,
            {
                "ok": False,
                "error_code": 429,
                "description": "Too Many Requests: retry after 1",
                "parameters": {"retry_after": 1},
            },
        )
    assert (await setup.call("getMe")).status_code == 200  # other methods are not affected
    assert (await setup.call("sendMessage", chat_id=CUSTOMER, text="hi")).status_code == 200
    assert (await setup.api.post("/_/faults", json={"method": "sendMessage"})).status_code == 400


async def test_get_updates_long_polls_and_forgets_confirmed_updates(setup: Setup) -> None:
    conflict = await setup.call("getUpdates")
    assert conflict.status_code == 409  # not while a webhook is set
    assert (await setup.call("deleteWebhook")).json()["result"] is True
    assert (await setup.api.get("/_/webhook")).json() == {"url": None, "secret_token": None}

    waiting = asyncio.create_task(setup.call("getUpdates", timeout=5))
    await asyncio.sleep(0.1)
    queued = await setup.api.post(
        "/_/inbound", json={"user_id": CUSTOMER, "location": {"latitude": 1, "longitude": 2}}
    )
    assert queued.json()["status"] is None
    [update] = (await waiting).json()["result"]
    assert update["update_id"] == queued.json()["update_id"]
    assert update["message"]["location"] == {"latitude": 1.0, "longitude": 2.0}
    assert (await setup.call("getUpdates")).json()["result"] == [update]  # not confirmed yet
    assert (await setup.call("getUpdates", offset=update["update_id"] + 1)).json()["result"] == []
    info = (await setup.call("getWebhookInfo")).json()["result"]
    assert info == {"url": "", "has_custom_certificate": False, "pending_update_count": 0}


async def test_set_webhook_through_the_api(setup: Setup) -> None:
    answer = await setup.call(
        "setWebhook", url="https://hub.example/webhooks/telegram", secret_token="abc_DEF-1"
    )
    assert answer.json() == {"ok": True, "result": True}
    assert (await setup.api.get("/_/webhook")).json() == {
        "url": "https://hub.example/webhooks/telegram",
        "secret_token": "abc_DEF-1",
    }
    refused = await setup.call("setWebhook", url="https://hub.example/x", secret_token="no spaces")
    assert refused.status_code == 400


async def test_outbox_long_poll(setup: Setup) -> None:
    waiting = asyncio.create_task(setup.api.get(f"/_/outbox/{CUSTOMER}", params={"after": 0, "wait": 5}))
    await asyncio.sleep(0.1)
    await setup.call("sendMessage", chat_id=CUSTOMER, text="hello")
    [item] = (await waiting).json()["items"]
    assert (item["user_id"], item["text"], item["provider_id"], item["seq"]) == (
        str(CUSTOMER),
        "hello",
        "1",
        1,
    )
    everyone = (await setup.api.get("/_/outbox", params={"after": 0})).json()["items"]
    assert everyone == [item]
    assert (await setup.api.get(f"/_/outbox/{CUSTOMER}", params={"after": 1})).json() == {"items": []}


@pytest.mark.parametrize(
    "body",
    [{"text": "no user"}, {"user_id": "not-a-number", "text": "x"}, {"user_id": CUSTOMER}],
)
async def test_bad_inbound_requests_say_why(setup: Setup, body: dict[str, Any]) -> None:
    answer = await setup.api.post("/_/inbound", json=body)
    assert answer.status_code == 400 and answer.json()["error"].startswith("bad /_/inbound request")


async def test_a_fault_without_a_method_fails_the_next_send(setup: Setup) -> None:
    assert (await setup.api.post("/_/faults", json={"status": 502})).status_code == 200
    assert (await setup.call("getMe")).status_code == 200
    failed = await setup.call("sendPhoto", chat_id=CUSTOMER, photo="https://cdn.example/p.jpg")
    assert (failed.status_code, failed.json()["description"]) == (502, "Bad Gateway")
    assert (
        await setup.call("sendPhoto", chat_id=CUSTOMER, photo="https://cdn.example/p.jpg")
    ).status_code == 200


async def test_an_unreachable_hub_is_reported_as_502() -> None:
    app = create_telegram_emulator(TOKEN, webhook_url="http://127.0.0.1:9/webhooks/telegram")
    async with serve(app) as url, httpx.AsyncClient(base_url=url) as api:
        answer = await api.post("/_/inbound", json={"user_id": CUSTOMER, "text": "anyone?"})
    assert answer.status_code == 502
    assert answer.json()["status"] is None and answer.json()["error"]
