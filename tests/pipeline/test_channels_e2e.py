"""Every channel end to end: a customer writes through the emulator (a real signed webhook), the demo
bot answers as that channel shows it, and the history follows the provider's status callbacks. Then
the webhooks' defences: bad signatures, malformed and oversized bodies, updates we do not handle.

Real hub on loopback, real Redis, the provider emulators on the wire; nothing is mocked.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlencode

import httpx
import orjson
import pytest
from redis.asyncio import Redis
from twilio.request_validator import RequestValidator

from bot.context import keys
from bot.models import OutboundMessage, Reply
from bot.rendering import sms_info
from bot.sandbox import emulators as sandbox
from bot.sandbox.client import SandboxClient
from tests.conftest import PAYLOADS, HubFactory
from tests.pipeline.customer import PARTITIONS, Customer, enqueue, small_hub, statuses

MENU = ["Order status", "Delivery & hours", "Talk to a human"]
NUMBERED_MENU = "1. Order status\n2. Delivery & hours\n3. Talk to a human"
FORM = "application/x-www-form-urlencoded"


async def test_telegram_inline_keyboard_and_a_pressed_button(hub: HubFactory) -> None:
    async with small_hub(hub) as client:
        anna = Customer(client, "telegram", "710001")
        await anna.say("hi", name="Anna")
        [greeting] = await anna.replies()
        assert greeting["text"] == "Hi, Anna! Welcome to Omnishop. What can I help you with?"
        assert [b["title"] for b in greeting["buttons"]] == MENU
        keyboard = greeting["raw"]["reply_markup"]["inline_keyboard"]
        assert [row[0]["callback_data"] for row in keyboard] == ["order_status", "flow:delivery_and_hours", "human"]

        await anna.say(button="flow:delivery_and_hours")
        delivery, hours = await anna.replies(2)
        assert delivery["text"].startswith("We deliver nationwide") and hours["text"].startswith("Our store")

        # Telegram has no delivery receipts: "sent" is as far as a message gets
        items = await anna.history_until(lambda items: statuses(items) == ["sent"] * 3)
        assert [(i["direction"], i["author"]) for i in items] == [
            ("in", "customer"), ("out", "bot"), ("in", "customer"), ("out", "bot"), ("out", "bot")]
        assert items[1]["buttons"][0] == {"title": "Order status", "payload": "order_status"}
        assert items[2]["payload"] == "flow:delivery_and_hours"
        assert items[3]["provider_id"] == delivery["provider_id"]


async def test_viber_keyboard_and_read_receipts(hub: HubFactory) -> None:
    async with small_hub(hub) as client:
        boris = Customer(client, "viber", "viber-boris")
        await boris.say("привет", name="Борис", language="ru")
        [greeting] = await boris.replies()
        assert greeting["text"].startswith("Здравствуйте, Борис!")
        assert [b["title"] for b in greeting["buttons"]] == [
            "Статус заказа", "Доставка и часы работы", "Связаться с сотрудником"]
        assert greeting["raw"]["keyboard"]["Buttons"][0]["ActionBody"] == "btn:order_status"

        await boris.say(button="order_status")
        [ask] = await boris.replies()
        assert ask["text"].startswith("Подскажите номер заказа")

        # delivered, then seen
        items = await boris.history_until(lambda items: statuses(items) == ["read", "read"])
        assert [i["direction"] for i in items] == ["in", "out", "in", "out"]
        assert items[3]["provider_id"] == ask["provider_id"]


async def test_whatsapp_numbered_options_answered_by_number(hub: HubFactory) -> None:
    async with small_hub(hub) as client:
        carla = Customer(client, "whatsapp", "+79990001122")
        await carla.say("hello", name="Carla")
        [greeting] = await carla.replies()
        assert greeting["text"] == f"Hi, Carla! Welcome to Omnishop. What can I help you with?\n{NUMBERED_MENU}"
        assert greeting["buttons"] == [] and greeting["raw"]["To"] == "whatsapp:+79990001122"

        await carla.say("2")
        delivery, hours = await carla.replies(2)
        assert delivery["text"].startswith("We deliver nationwide") and hours["text"].startswith("Our store")

        # sent, delivered, read
        items = await carla.history_until(lambda items: statuses(items) == ["read"] * 3)
        assert (items[2]["direction"], items[2]["text"]) == ("in", "2")


async def test_sms_options_answered_by_title_with_segments_and_cost(hub: HubFactory, redis: Redis) -> None:
    async with small_hub(hub) as client:
        dima = Customer(client, "sms", "+79990003344")
        await dima.say("привет")
        [greeting] = await dima.replies()
        assert greeting["text"].endswith("\n1. Статус заказа\n2. Доставка и часы работы\n3. Связаться с сотрудником")

        await dima.say("Доставка и часы работы")
        delivery, hours = await dima.replies(2)
        assert delivery["text"].startswith("Доставляем по всей стране") and hours["text"].startswith("Магазин")

        # SMS has delivery receipts, no read receipts
        shown = await dima.history_until(lambda items: statuses(items) == ["delivered"] * 3)
        assert [(e["sms_encoding"], e["sms_segments"], e["cost"]) for e in shown if e["direction"] == "out"] == [
            ("UCS-2", 2, 0.1), ("UCS-2", 3, 0.15), ("UCS-2", 2, 0.1)]  # what the API shows a marketer
        raw = await redis.lrange(keys.history(await dima.contact_id()), 0, -1)
        out = [entry for entry in map(orjson.loads, raw) if entry["d"] == "out"]
        segments = [sms_info(m["text"]).segments for m in (greeting, delivery, hours)]
        assert segments == [2, 3, 2]  # Cyrillic is UCS-2: 70 characters, 67 a segment when split
        assert [(e["enc"], e["seg"], e["cost"]) for e in out] == [  # sms_cost.sms = 0.05 a segment
            ("UCS-2", 2, 0.1), ("UCS-2", 3, 0.15), ("UCS-2", 2, 0.1)]


async def test_a_late_status_never_downgrades_and_a_failure_is_final(hub: HubFactory, redis: Redis) -> None:
    """Statuses ride the contact's inbound stream in order: once a later event of the same contact has
    been handled, the callbacks posted before it have been too. Each status of a message passes the
    dedupe once, so the late ones here are ones the emulator never sent."""
    async with small_hub(hub) as client:
        eva = Customer(client, "whatsapp", "+79990005566")
        await eva.say("hi")
        [greeting] = await eva.replies()
        await eva.history_until(lambda items: statuses(items) == ["read"])
        assert (await post_twilio_status(client, greeting, "queued")).status_code == 200  # late

        # the provider takes the next message, then reports it failed (as WhatsApp outside the window)
        fault = await client.http.post("/emulator/twilio/_/faults", json={"status": 201, "code": 63016})
        fault.raise_for_status()
        parcel = Reply(text="Your parcel is at the pickup point.")
        await enqueue(redis, OutboundMessage(id="agent-1", contact_id=await eva.contact_id(), channel="whatsapp",
                                             user_id=eva.user, reply=parcel, author="agent"))
        [sent] = await eva.replies()
        await eva.history_until(lambda items: statuses(items) == ["read", "failed"])
        for late in ("delivered", "read"):
            assert (await post_twilio_status(client, sent, late)).status_code == 200

        await eva.say("thanks")
        await eva.replies()
        items = await eva.history_until(lambda items: len(statuses(items)) == 3)
        assert statuses(items)[:2] == ["read", "failed"]
        assert (items[2]["author"], items[2]["text"], items[2]["error"]) == ("agent", parcel.text, "63016")


# --- the webhooks' defences ----------------------------------------------------------------------


def twilio_signature(url: str, form: Mapping[str, str], token: str = sandbox.TWILIO_TOKEN) -> str:
    return str(RequestValidator(token).compute_signature(url, dict(form)))


def viber_signature(body: bytes, token: str = sandbox.VIBER_TOKEN) -> str:
    return hmac.new(token.encode(), body, hashlib.sha256).hexdigest()


def twilio_inbound(phone: str, text: str) -> dict[str, str]:
    sid = f"SM{hashlib.md5(f'{phone}{text}'.encode()).hexdigest()}"
    return {"AccountSid": sandbox.TWILIO_SID, "MessageSid": sid, "SmsSid": sid, "From": phone,
            "To": sandbox.TWILIO_SMS_FROM, "Body": text, "NumMedia": "0", "SmsStatus": "received"}


def twilio_status(sid: str, phone: str, status: str) -> dict[str, str]:
    return {"AccountSid": sandbox.TWILIO_SID, "MessageSid": sid, "SmsSid": sid, "MessageStatus": status,
            "To": phone, "From": sandbox.TWILIO_SMS_FROM}


async def post_twilio(client: SandboxClient, path: str, form: Mapping[str, str], **headers: str) -> httpx.Response:
    """Post a form to the hub signed as Twilio signs it, unless `headers` says otherwise."""
    headers = {"X-Twilio-Signature": twilio_signature(f"{client.http.base_url}{path}", form), **headers}
    return await client.http.post(path, content=urlencode(form), headers={"Content-Type": FORM, **headers})


async def post_twilio_status(client: SandboxClient, sent: dict[str, Any], status: str, **extra: str) -> httpx.Response:
    form = {**twilio_status(sent["provider_id"], sent["raw"]["To"], status), **extra}
    return await post_twilio(client, "/webhooks/twilio/status", form)


async def post_viber(client: SandboxClient, body: bytes, **headers: str) -> httpx.Response:
    headers = {"X-Viber-Content-Signature": viber_signature(body), **headers}
    return await client.http.post("/webhooks/viber", content=body, headers=headers)


async def post_telegram(client: SandboxClient, body: bytes, **headers: str) -> httpx.Response:
    headers = {"X-Telegram-Bot-Api-Secret-Token": sandbox.TELEGRAM_SECRET, **headers}
    return await client.http.post("/webhooks/telegram", content=body, headers=headers)


async def nothing_stored(redis: Redis) -> bool:
    """No contact resolved and no event on any inbound stream."""
    streams = [keys.inbound(p) for p in range(PARTITIONS)]
    lengths = [await redis.xlen(stream) for stream in streams]
    contacts = [key async for key in redis.scan_iter("omni:id:*")]
    return sum(lengths) == 0 and contacts == []


TELEGRAM_UPDATE = (PAYLOADS / "telegram" / "text_message.json").read_bytes()
VIBER_MESSAGE = (PAYLOADS / "viber" / "message_text.json").read_bytes()
PHONE = "+79990007788"


async def test_bad_signatures_are_refused_and_nothing_is_stored(hub: HubFactory, redis: Redis) -> None:
    async with small_hub(hub) as client:
        refused = [
            await post_telegram(client, TELEGRAM_UPDATE, **{"X-Telegram-Bot-Api-Secret-Token": "guess"}),
            await client.http.post("/webhooks/telegram", content=TELEGRAM_UPDATE),
        ]
        for path, form in [("/webhooks/twilio", twilio_inbound(PHONE, "hi")),
                           ("/webhooks/twilio/status", twilio_status("SM" + "0" * 32, PHONE, "delivered"))]:
            url = f"{client.http.base_url}{path}"
            tampered = {**form, "To": "+79990000000"}
            refused += [
                await post_twilio(client, path, tampered, **{"X-Twilio-Signature": twilio_signature(url, form)}),
                await post_twilio(client, path, form, **{"X-Twilio-Signature": twilio_signature(url, form, "x")}),
                await client.http.post(path, content=urlencode(form), headers={"Content-Type": FORM}),
            ]
        tampered_body = VIBER_MESSAGE.replace(b"1042", b"1043")
        signed, wrong_token = viber_signature(VIBER_MESSAGE), viber_signature(VIBER_MESSAGE, "x")
        refused += [
            await post_viber(client, tampered_body, **{"X-Viber-Content-Signature": signed}),
            await post_viber(client, VIBER_MESSAGE, **{"X-Viber-Content-Signature": wrong_token}),
            await client.http.post("/webhooks/viber", content=VIBER_MESSAGE),
        ]
        assert [r.status_code for r in refused] == [403] * 11, [r.text for r in refused]
        assert all("signature" in r.json()["detail"].lower() or "secret" in r.json()["detail"].lower()
                   for r in refused)
        assert await nothing_stored(redis)


async def test_twilio_signs_the_url_with_its_query_string(hub: HubFactory) -> None:
    async with small_hub(hub) as client:
        form = twilio_inbound(PHONE, "hi")
        response = await post_twilio(client, "/webhooks/twilio?tenant=shop&x=1", form)
        assert response.status_code == 200 and response.headers["content-type"].startswith("text/xml")
        [greeting] = await Customer(client, "sms", PHONE).replies()
        assert greeting["text"].startswith("Hi! Welcome to Omnishop.")


@pytest.mark.parametrize(
    ("path", "body", "reason"),
    [
        ("/webhooks/telegram", b"{not json", "Invalid JSON"),
        ("/webhooks/telegram", b'{"update_id": "first"}', "update_id"),
        ("/webhooks/viber", b"[]", "Viber callback"),
        ("/webhooks/viber", b'{"event": "message", "message_token": 1}', "without 'sender'"),
        ("/webhooks/twilio", {"MessageSid": "SM1", "To": "+15005550006", "Body": "hi"}, "without From"),
        ("/webhooks/twilio/status", {"MessageStatus": "delivered", "To": PHONE}, "without MessageSid"),
    ],
)
async def test_a_malformed_body_is_a_400_that_says_why(
    hub: HubFactory, redis: Redis, path: str, body: bytes | dict[str, str], reason: str
) -> None:
    async with small_hub(hub) as client:
        if isinstance(body, dict):
            response = await post_twilio(client, path, body)
        else:
            response = await (post_telegram if path.endswith("telegram") else post_viber)(client, body)
        assert response.status_code in (400, 422), response.text
        assert reason in response.json()["detail"]
        assert await nothing_stored(redis)


async def test_an_oversized_body_is_a_413_whatever_its_signature(hub: HubFactory, redis: Redis) -> None:
    async with small_hub(hub, max_body_bytes=4096) as client:
        big = b'{"update_id": 1, "message": {"text": "' + b"x" * 5000 + b'"}}'
        big_form = twilio_inbound(PHONE, "x" * 5000)
        answers = [
            await post_telegram(client, big),
            await post_viber(client, big),
            await post_twilio(client, "/webhooks/twilio", big_form),
            await post_twilio(client, "/webhooks/twilio/status", {**twilio_status("SM1", PHONE, "sent"),
                                                                  "ErrorMessage": "x" * 5000}),
        ]
        assert [a.status_code for a in answers] == [413] * 4
        assert await nothing_stored(redis)


@pytest.mark.parametrize("payload", ["my_chat_member.json", "channel_post.json", "edited_message.json"])
async def test_an_unhandled_telegram_update_is_acknowledged_and_dropped(
    hub: HubFactory, redis: Redis, payload: str
) -> None:
    async with small_hub(hub) as client:
        response = await post_telegram(client, (PAYLOADS / "telegram" / payload).read_bytes())
        assert response.status_code == 200  # anything else and Telegram retries it for a day
        assert await nothing_stored(redis)
