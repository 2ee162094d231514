"""Validly signed webhooks carrying hostile numbers or texts, through the real app: a 400 naming the field and
nothing stored (they were 500s, or 200s whose event the worker could never read back)."""

from __future__ import annotations

import json
import math
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import httpx
import pytest
from pydantic import ValidationError
from redis.asyncio import Redis

from bot.models import InboundEvent, Location
from tests.conftest import HubFactory
from tests.edges.wire import stored, telegram_webhook, twilio_webhook, viber_webhook

PAYLOADS = Path(__file__).resolve().parents[1] / "payloads"


def recorded(channel: str, name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((PAYLOADS / channel / f"{name}.json").read_text(encoding="utf-8"))
    return data


def twilio_form(name: str, **changes: str) -> dict[str, str]:
    text = (PAYLOADS / "twilio" / f"{name}.txt").read_text(encoding="utf-8")
    return {**dict(parse_qsl(text, keep_blank_values=True)), **changes}


def telegram_location(latitude: Any) -> dict[str, Any]:
    update = recorded("telegram", "location")
    update["message"]["location"]["latitude"] = latitude
    return update


def telegram_chat(chat_id: int) -> dict[str, Any]:
    update = recorded("telegram", "text_message")
    update["message"]["chat"]["id"] = chat_id
    return update


def viber_at(timestamp: float) -> dict[str, Any]:
    return {**recorded("viber", "message_text"), "timestamp": timestamp}


SENDERS: dict[str, Callable[[httpx.AsyncClient, Any], Awaitable[httpx.Response]]] = {
    "telegram": telegram_webhook, "twilio": twilio_webhook, "viber": viber_webhook,
}
# (channel, payload, the field the 400 must name)
CASES: list[tuple[str, Any, str]] = [
    *(("twilio", twilio_form("whatsapp_media", NumMedia=v), "NumMedia") for v in ("nan", "inf", "1e400", "-1")),
    ("twilio", twilio_form("whatsapp_location", Latitude="inf"), "Latitude"),
    ("twilio", twilio_form("whatsapp_location", Longitude="nan"), "Longitude"),
    *(("viber", viber_at(v), "timestamp") for v in (1e20, 2**63, -(2**63))),
    *(("telegram", telegram_location(v), "latitude") for v in ("NaN", math.nan, 91)),
    *(("telegram", telegram_chat(v), "chat.id") for v in (2**64, -(2**63) - 1)),
    # texts longer than the provider allows: each one cost the worker's event loop ~0.3 s of NLU per 900 KB
    ("telegram", {**telegram_chat(1), "message": {**telegram_chat(1)["message"], "text": "a" * 4097}},
     "message.text"),
    ("twilio", twilio_form("sms_inbound", Body="a" * 1601), "Body"),
    ("viber", {**viber_at(1763834340000), "message": {"type": "text", "text": "a" * 7001}}, "message.text"),
]


async def test_hostile_numbers_and_oversized_texts_get_a_400_naming_the_field(
    hub: HubFactory, redis: Redis
) -> None:
    async with hub(run_workers=False) as client:
        before = await stored(redis)
        wrong = []
        for channel, payload, field in CASES:
            answer = await SENDERS[channel](client.http, payload)
            if answer.status_code != 400 or field not in answer.json()["detail"]:
                wrong.append((channel, field, answer.status_code, answer.text))
        assert wrong == []
        assert await stored(redis) == before
        # and the same channels still take a sane message
        assert (await telegram_webhook(client.http, telegram_chat(2**63 - 1))).status_code == 200
        assert (await twilio_webhook(client.http, twilio_form("whatsapp_location"))).status_code == 200
        assert (await viber_webhook(client.http, viber_at(1763834340000))).status_code == 200


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf, "NaN", 90.5, -180.5])
def test_the_model_refuses_what_json_cannot_carry_back(value: Any) -> None:
    with pytest.raises(ValidationError):
        Location(latitude=value, longitude=0) if value != -180.5 else Location(latitude=0, longitude=value)


def test_an_event_that_validates_round_trips_as_the_worker_reads_it() -> None:
    event = InboundEvent(kind="message", channel="telegram", user_id=str(2**63 - 1), provider_id="1",
                         location=Location(latitude=-90, longitude=180))
    assert InboundEvent.model_validate_json(event.model_dump_json(exclude_defaults=True)) == event


async def test_the_telegram_emulator_refuses_ids_beyond_64_bits_instead_of_failing(hub: HubFactory) -> None:
    async with hub(run_workers=False) as client:
        control = "/emulator/telegram/_/inbound"
        refused = await client.http.post(control, json={"user_id": 2**64, "text": "hi"})
        assert refused.status_code == 400 and "user_id" in refused.json()["error"], refused.text
        # a hostile recorded update is still delivered, for the hub to refuse
        relayed = await client.http.post(control, json={"update": telegram_chat(2**64)})
        assert relayed.status_code == 200 and relayed.json()["status"] == 400, relayed.text
        assert (await client.http.post(control, json={"update": {**telegram_chat(1), "update_id": 2**70}})
                ).status_code == 400
        # the bot asking to write to such a chat is told "chat not found", as Telegram says it
        answer = await client.http.post("/emulator/telegram/bot123456789:sandbox-token/sendMessage",
                                        json={"chat_id": str(2**64), "text": "hi"})
        assert (answer.status_code, answer.json()["description"]) == (400, "Bad Request: chat not found")
