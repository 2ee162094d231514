"""Triggered journeys, end to end from a CRM-posted event: the loyalty demo's shape — the preferred
channel, then the next messenger when unread, then an SMS when no order came — once per contact; an
order stops the journey at once."""

from __future__ import annotations

import asyncio
from typing import Any

from redis.asyncio import Redis

from bot.campaigns.store import Campaigns
from bot.sandbox.client import SandboxClient
from tests.campaigns.test_campaigns import tagged
from tests.campaigns.test_cascade import CASCADE, viber_customer
from tests.conftest import HubFactory
from tests.pipeline.customer import PARTITIONS, Customer, small_hub

JOURNEY: dict[str, Any] = {
    "name": "loyalty", "purpose": "marketing", "trigger": {"event": "loyalty.joined"},
    "stop_on": ["converted", "opted_out"],
    "steps": [{"channel": "preferred", "text": "welcome, {{ contact.name }}", "until": "read", "within": 1.5},
              {"channel": "next", "text": "your points are waiting", "until": "replied", "within": 1.5},
              {"channel": "sms", "text": "your points expire soon", "until": "delivered", "within": 1}]}


async def started(client: SandboxClient, definition: dict[str, Any] = JOURNEY) -> str:
    made = await client.http.post("/api/v1/campaigns", json=definition)
    assert made.status_code == 201, made.text
    journey = str(made.json()["id"])
    assert (await client.http.post(f"/api/v1/campaigns/{journey}/start")).status_code == 202
    return journey


async def test_joined_then_unread_then_no_order_goes_messenger_messenger_sms(hub: HubFactory) -> None:
    async with small_hub(hub, **CASCADE) as client:
        viber, phone, cid = await viber_customer(client, 30, "member")
        journey = await started(client)
        await viber.nothing_more(0.5)  # a journey plans nobody: it waits for its trigger
        posted = await client.http.post(f"/api/v1/contacts/{cid}/events", json={"name": "loyalty.joined"})
        assert posted.json() == {"journeys": [journey]}
        again = await client.http.post(f"/api/v1/contacts/{cid}/events", json={"name": "loyalty.joined"})
        assert again.json() == {"journeys": []}  # once per contact
        [welcome] = await viber.replies(1)  # Viber is where they write: their preferred channel
        assert welcome["text"] == "welcome, Sandbox"
        [nudge] = await Customer(client, "whatsapp", phone).replies(1, wait=8)  # unread: the next messenger
        assert nudge["text"]  # the WhatsApp template (outside the window)
        [expiry] = await Customer(client, "sms", phone).replies(1, wait=8)
        assert expiry["text"] == "your points expire soon"
        await viber.nothing_more(0.3)
        stats = (await client.http.get(f"/api/v1/campaigns/{journey}/stats")).json()
    assert stats["recipients"] == 1
    assert {ch: f["sent"] for ch, f in stats["channels"].items()} == {"viber": 1, "whatsapp": 1, "sms": 1}


async def test_an_order_stops_the_journey(hub: HubFactory) -> None:
    async with small_hub(hub, **CASCADE) as client:
        viber, phone, cid = await viber_customer(client, 31, "member")
        journey = await started(client)
        await client.http.post(f"/api/v1/contacts/{cid}/events", json={"name": "loyalty.joined"})
        await viber.replies(1)
        bought = await client.http.post(f"/api/v1/contacts/{cid}/conversions",
                                        json={"name": "order 7", "amount": 30, "currency": "EUR"})
        assert bought.status_code == 201
        await asyncio.sleep(2.5)  # the first check came and found the journey stopped
        await Customer(client, "whatsapp", phone).nothing_more(0.3)
        await Customer(client, "sms", phone).nothing_more(0.3)
        stats = (await client.http.get(f"/api/v1/campaigns/{journey}/stats")).json()
    assert stats["channels"]["viber"]["converted"] == 1 and stats["channels"]["viber"]["revenue"] == 30


async def test_an_inactivity_journey_starts_for_those_quiet_for_too_long(hub: HubFactory, redis: Redis) -> None:
    quiet_for = 1.5  # seconds: the trigger's days, shrunk
    async with small_hub(hub) as client:
        journey = await started(client, {
            **JOURNEY, "purpose": "service", "trigger": {"inactive_days": quiet_for / 86400},
            "steps": [{"channel": "preferred", "text": "we miss you", "until": "sent", "within": 1}]})
        quiet, _ = await tagged(client, "telegram", "761001", "anyone")
        await asyncio.sleep(quiet_for + 0.5)
        chatty, _ = await tagged(client, "telegram", "761002", "anyone")
        campaigns = Campaigns(redis, PARTITIONS)
        assert await campaigns.sweep_inactive() == 1  # what the scheduler does every half minute
        assert await campaigns.sweep_inactive() == 0  # once per contact
        [missed] = await quiet.replies(1)
        assert missed["text"] == "we miss you"
        await chatty.nothing_more(0.5)
        assert (await client.http.get(f"/api/v1/campaigns/{journey}/stats")).json()["recipients"] == 1
