"""One customer across channels, end to end: real webhooks through the emulators, real Redis, the API."""

from __future__ import annotations

import asyncio
import itertools
from datetime import datetime
from typing import Any

from redis.asyncio import Redis

from bot.crm.outbox import recorded
from tests.api.chat import Api, Customer, eventually, small_hub
from tests.conftest import HubFactory

PHONE = "+79991234567"


def in_time_order(history: list[dict[str, Any]]) -> bool:
    """Oldest first, to the millisecond: a Lua rewrite of an entry keeps 14 significant digits of `at`."""
    stamps = [datetime.fromisoformat(h["at"]).timestamp() for h in history]
    return all(later > earlier - 0.001 for earlier, later in itertools.pairwise(stamps))
ASK_ORDER = "What's your order number? You'll find it in the confirmation email, e.g. 104582."


async def test_a_flow_started_on_telegram_finishes_on_whatsapp_after_sharing_the_phone(hub: HubFactory) -> None:
    async with small_hub(hub) as client:
        api, telegram, whatsapp = Api(client), Customer(client, "telegram", "510001"), Customer(
            client, "whatsapp", PHONE)
        await telegram.say("where is my order")
        assert await telegram.hears() == [ASK_ORDER]
        await telegram.say(phone="79991234567")  # request_contact: Telegram writes it without "+"
        [thanks] = await telegram.hears()
        assert thanks.startswith("Thanks, Sandbox! I've saved your number")

        await whatsapp.say("10453")
        status, more = await whatsapp.hears(2)
        assert status == "Order 10453 is on its way 🚚 It should reach you within 2–3 days."
        assert more.startswith("Anything else I can help with?\n1. Order status")  # numbered on WhatsApp

        contact = await api.one(phone="8 999 123-45-67")
        assert contact["phone"] == PHONE
        assert sorted((i["channel"], i["id"]) for i in contact["identities"]) == [
            ("telegram", "510001"), ("whatsapp", PHONE)]
        assert contact["attributes"] == {"last_order": "10453"}
        assert contact["preferred_channel"] == "whatsapp"
        history = await eventually(lambda: api.history(contact["id"]), lambda h: len(h) == 7)
        assert [(h["channel"], h["direction"]) for h in history] == [
            ("telegram", "in"), ("telegram", "out"), ("telegram", "in"), ("telegram", "out"),
            ("whatsapp", "in"), ("whatsapp", "out"), ("whatsapp", "out")]
        assert in_time_order(history)


async def test_sharing_a_phone_that_whatsapp_already_knows_merges_the_two(hub: HubFactory, redis: Redis) -> None:
    async with small_hub(hub) as client:
        api = Api(client)
        whatsapp, telegram = Customer(client, "whatsapp", PHONE), Customer(client, "telegram", "510002")
        await whatsapp.say("opening hours")
        await whatsapp.hears()
        before = await api.one(phone=PHONE)
        await telegram.say("where is my order")
        await telegram.hears()
        absorbed = await api.one(channel="telegram", user_id="510002")

        await telegram.say(phone="+79991234567")
        await telegram.hears()
        await telegram.say("10457")  # the Telegram flow goes on in the merged contact
        assert (await telegram.hears(2))[0].startswith("We're packing order 10457")

        merged = await api.one(phone=PHONE)
        assert merged["id"] == absorbed["id"]  # the contact the customer was writing from survives
        assert merged["merged"] == [before["id"]]
        assert {i["channel"] for i in merged["identities"]} == {"telegram", "whatsapp"}
        history = await api.history(merged["id"])
        assert {h["channel"] for h in history} == {"telegram", "whatsapp"}
        assert in_time_order(history)
        gone = await api.call("GET", f"/contacts/{before['id']}", expect=404)
        assert f"was merged into '{merged['id']}'" in gone["detail"]
        [merge] = await recorded(redis, 2, "omnihub.contact.merged")
        assert merge.data["survivor"] == merged["id"]


async def test_whatsapp_and_sms_of_a_new_number_at_the_same_instant_are_one_contact(hub: HubFactory) -> None:
    async with small_hub(hub) as client:
        api, number = Api(client), "+79990001122"
        sends = [Customer(client, channel, number).say(f"{channel} {n}")
                 for n in range(15) for channel in ("whatsapp", "sms")]
        await asyncio.gather(*sends)

        contact = await api.one(phone=number)
        history = await eventually(lambda: api.history(contact["id"]),
                                   lambda h: sum(e["direction"] == "in" for e in h) == 30)
        contact = await api.one(phone=number)
        assert sorted(i["channel"] for i in contact["identities"]) == ["sms", "whatsapp"]
        assert sorted(e["text"] for e in history if e["direction"] == "in") == sorted(
            f"{channel} {n}" for n in range(15) for channel in ("whatsapp", "sms"))
