"""Campaigns through the contract (`/api/v1/campaigns`) and the emulators: a service campaign reaches
every tagged customer on the channel they write from, once; STOP in the middle stops a contact at
once; quiet hours defer; the contact pressure budget skips a contact another campaign just messaged;
pause holds and resume sends; bad definitions get a clear 422."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from redis.asyncio import Redis

from bot.context import keys
from bot.sandbox.client import SandboxClient
from tests.campaigns.test_cascade import CASCADE, launch, viber_customer
from tests.conftest import HubFactory
from tests.pipeline.customer import Customer, small_hub


async def tagged(client: SandboxClient, channel: str, user: str, tag: str, consent: dict[str, Any] | None = None
                 ) -> tuple[Customer, str]:
    customer = Customer(client, channel, user)  # type: ignore[arg-type]
    await customer.say("hi")
    await customer.replies(1)
    cid = await customer.contact_id()
    body: dict[str, Any] = {"add_tags": [tag]}
    if consent:
        body["consent"] = consent
    assert (await client.http.patch(f"/api/v1/contacts/{cid}", json=body)).status_code == 200
    return customer, cid


async def stats_until(client: SandboxClient, campaign: str, done: Any, wait: float = 10) -> dict[str, Any]:
    deadline = time.monotonic() + wait
    while not done(found := (await client.http.get(f"/api/v1/campaigns/{campaign}/stats")).json()):
        assert time.monotonic() < deadline, f"the figures never got there: {found}"
        await asyncio.sleep(0.1)
    return found


async def test_a_service_campaign_reaches_each_customer_once_on_their_channel(hub: HubFactory) -> None:
    async with small_hub(hub) as client:
        people = [await tagged(client, channel, user, "notify") for channel, user in
                  [("telegram", "740001"), ("telegram", "740002"), ("viber", "viber-740003")]]
        await tagged(client, "telegram", "740009", "someone-else")
        step = {"channel": "preferred", "text": "Your order is ready, {{ contact.name }}", "until": "sent", "within": 1}
        campaign = await launch(client, {"name": "order ready", "purpose": "service",
                                         "audience": {"tags": ["notify"]}, "steps": [step]})
        for customer, _ in people:
            [message] = await customer.replies(1)
            assert message["text"] == "Your order is ready, Sandbox"
        got = (await client.http.get(f"/api/v1/campaigns/{campaign}")).json()
        assert (got["status"], got["recipients"]) == ("running", 3)
        stats = await stats_until(client, campaign, lambda s: s["totals"]["sent"] == 3)
        assert stats["channels"]["telegram"]["sent"] == 2 and stats["channels"]["viber"]["sent"] == 1
        await asyncio.sleep(1.5)  # the checks: nothing is sent twice
        for customer, _ in people:
            await customer.nothing_more(0.2)
        settled = (await client.http.get(f"/api/v1/campaigns/{campaign}")).json()
        assert (settled["pending"], settled["status"]) == (0, "done")
        [compared] = (await client.http.get("/api/v1/campaigns-by-channel")).json()
        assert compared["audience"] == {"tags": ["notify"]}
        assert {ch: (row["campaigns"], row["sent"]) for ch, row in compared["channels"].items()} == {
            "telegram": (1, 2), "viber": (1, 1)}


async def test_stop_in_the_middle_stops_that_contact_at_once(hub: HubFactory) -> None:
    async with small_hub(hub, **CASCADE) as client:
        keep, _, _ = await viber_customer(client, 10, "stop-test")
        quit_, phone, _ = await viber_customer(client, 11, "stop-test")
        campaign = await launch(client, {
            "name": "two steps", "purpose": "marketing", "audience": {"tags": ["stop-test"]},
            "steps": [{"channel": "viber", "text": "first", "until": "replied", "within": 1.5},
                      {"channel": "sms", "text": "second", "until": "delivered", "within": 1}]})
        await keep.replies(1)
        await quit_.replies(1)
        await client.send("sms", phone, "STOP")  # both had opted in to SMS marketing (viber_customer)
        stopper = Customer(client, "sms", phone)
        [confirmation] = await stopper.replies(1)
        assert "no more" in confirmation["text"].lower() or "stop" in confirmation["text"].lower()
        sms_keep = Customer(client, "sms", f"+7999555{10:04d}")
        [second] = await sms_keep.replies(1, wait=8)
        assert second["text"] == "second"
        await asyncio.sleep(1.0)
        await stopper.nothing_more(0.3)  # only the STOP confirmation, no "second"
        stats = await stats_until(client, campaign, lambda s: s["totals"]["opted_out"] >= 1)
        assert stats["channels"]["sms"]["sent"] == 1


async def test_quiet_hours_defer_to_their_end(hub: HubFactory, redis: Redis) -> None:
    now = time.gmtime()
    start, end = f"{now.tm_hour:02d}:00", f"{(now.tm_hour + 2) % 24:02d}:00"  # the contact's night is now
    async with small_hub(hub) as client:
        customer, cid = await tagged(client, "telegram", "740020", "night", {"telegram": {"marketing": "in"}})
        campaign = await launch(client, {
            "name": "night owl", "purpose": "marketing", "audience": {"tags": ["night"]},
            "quiet_hours": {"start": start, "end": end, "timezone": "UTC"},
            "steps": [{"channel": "telegram", "text": "good morning", "until": "sent", "within": 60}]})
        await customer.nothing_more(1.5)
        p = keys.partition_of(cid, 2)
        due = await redis.zscore(keys.campaign_due(p), f"{campaign}|{cid}|1|send")
        expected = time.mktime(time.strptime(time.strftime("%Y-%m-%d ", now) + end, "%Y-%m-%d %H:%M")) - time.timezone
        if end < start:
            expected += 86_400
        assert due is not None and abs(due - expected) < 2, (due, expected)


async def test_the_pressure_budget_skips_a_contact_another_campaign_just_messaged(hub: HubFactory) -> None:
    async with small_hub(hub, campaigns__per_day=1) as client:
        customer, _ = await tagged(client, "telegram", "740030", "busy", {"telegram": {"marketing": "in"}})
        first = await launch(client, {"name": "first", "purpose": "marketing", "audience": {"tags": ["busy"]},
                                      "steps": [{"channel": "telegram", "text": "one", "until": "sent", "within": 60}]})
        await customer.replies(1)
        second = await launch(client, {"name": "second", "purpose": "marketing", "audience": {"tags": ["busy"]},
                                       "steps": [{"channel": "telegram", "text": "two", "until": "sent",
                                                  "within": 60}]})
        stats = await stats_until(client, second, lambda s: s["totals"]["skipped"] == 1)
        assert stats["skipped_because"] == {"pressure budget spent": 1}
        await customer.nothing_more(0.5)
        assert (await stats_until(client, first, lambda s: s["totals"]["sent"] == 1))["totals"]["skipped"] == 0


async def test_pause_holds_and_resume_sends(hub: HubFactory) -> None:
    async with small_hub(hub) as client:
        customer, _ = await tagged(client, "telegram", "740040", "later")
        made = await client.http.post("/api/v1/campaigns", json={
            "name": "held", "purpose": "service", "audience": {"tags": ["later"]},
            "steps": [{"channel": "telegram", "text": "at last", "until": "sent", "within": 60}]})
        campaign = made.json()["id"]
        assert (await client.http.post(f"/api/v1/campaigns/{campaign}/pause")).status_code == 409  # a draft
        assert (await client.http.post(f"/api/v1/campaigns/{campaign}/start")).status_code == 202
        assert (await client.http.post(f"/api/v1/campaigns/{campaign}/pause")).json()["status"] == "paused"
        await customer.nothing_more(0.3)  # (it may have gone out before the pause: then resume sends nothing)
        assert (await client.http.post(f"/api/v1/campaigns/{campaign}/resume")).json()["status"] == "running"
        [message] = await customer.replies(1, wait=10)
        assert message["text"] == "at last"
        assert (await client.http.post(f"/api/v1/campaigns/{campaign}/start")).status_code == 409


async def test_bad_campaigns_are_refused_with_the_reason(hub: HubFactory) -> None:
    async with small_hub(hub) as client:
        base = {"name": "x", "purpose": "marketing", "audience": {"tags": ["a"]},
                "steps": [{"channel": "sms", "text": "hi", "until": "sent", "within": 10}]}
        for change, words in [({"steps": []}, "at least 1"), ({"purpose": "spam"}, "marketing"),
                              ({"steps": [{"channel": "fax", "text": "hi"}]}, "steps.0.channel"),
                              ({"audience": {"tags": "vip"}}, "list"),
                              ({"steps": [{"channel": "sms", "text": "  "}]}, "needs a text")]:
            answer = await client.http.post("/api/v1/campaigns", json={**base, **change})
            assert answer.status_code == 422 and words in answer.text, (change, answer.text)
        assert (await client.http.get("/api/v1/campaigns/cmpnothing")).status_code == 404


async def test_a_reply_to_a_campaigns_options_enters_the_dialog_flow_it_names(hub: HubFactory) -> None:
    """On SMS the buttons are numbered options: "1" is the first one, and its payload starts the flow."""
    async with small_hub(hub) as client:
        customer, _ = await tagged(client, "sms", "+79997770001", "parcel")
        campaign = await launch(client, {
            "name": "parcel", "purpose": "service", "audience": {"tags": ["parcel"]},
            "steps": [{"channel": "sms", "text": "Your parcel is late, sorry.", "until": "replied", "within": 60,
                       "buttons": [{"title": "Where is it?", "payload": "order_status"},
                                   {"title": "Talk to us", "payload": "human"}]}]})
        [offer] = await customer.replies(1)
        assert "1" in offer["text"] and "Where is it?" in offer["text"]
        await customer.say("1")
        [asked] = await customer.replies(1)
        assert "order number" in asked["text"]  # the order_status flow, entered from the campaign's option
        stats = await stats_until(client, campaign, lambda s: s["totals"]["replied"] == 1)
        assert stats["channels"]["sms"]["replied"] == 1
