"""A three-step cascade on real receipts, through the emulators: Viber until read, then WhatsApp until
read, then SMS. The Viber emulator reports `seen` for some recipients and not for others (it reads
nothing by itself here): those who saw it get nothing more, the rest get WhatsApp, then SMS."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from bot.sandbox.client import SandboxClient
from tests.conftest import HubFactory
from tests.pipeline.customer import Customer, small_hub

CASCADE = {"crm__retry_schedule_seconds": [0, 0.2], "sandbox_auto_read": False, "campaigns__per_day": 5,
           "twilio__whatsapp_fallback_template": "HXcampaignfallback"}
CONSENTED = {channel: {"marketing": "in"} for channel in ("viber", "whatsapp", "sms")}


async def viber_customer(client: SandboxClient, n: int, tag: str) -> tuple[Customer, str, str]:
    """A Viber customer who shared their phone, tagged and opted in to marketing on every channel."""
    viber, phone = Customer(client, "viber", f"viber-cascade-{n}"), f"+7999555{n:04d}"
    await viber.say("hi")
    await client.send("viber", viber.user, phone=phone)
    cid = await viber.contact_id()
    deadline = time.monotonic() + 10
    while (await client.http.get(f"/api/v1/contacts/{cid}")).json().get("phone") != phone:
        assert time.monotonic() < deadline, "the shared phone was not saved"
        await asyncio.sleep(0.05)
    patched = await client.http.patch(f"/api/v1/contacts/{cid}", json={"add_tags": [tag], "consent": CONSENTED})
    assert patched.status_code == 200, patched.text
    viber.seen = max([0, *(m["seq"] for m in await client.replies("viber", viber.user))])
    return viber, phone, cid


async def launch(client: SandboxClient, body: dict[str, Any]) -> str:
    made = await client.http.post("/api/v1/campaigns", json=body)
    assert made.status_code == 201, made.text
    started = await client.http.post(f"/api/v1/campaigns/{made.json()['id']}/start")
    assert started.status_code == 202, started.text
    return str(made.json()["id"])


async def test_a_cascade_stops_for_those_who_read_and_goes_on_for_the_rest(hub: HubFactory) -> None:
    async with small_hub(hub, **CASCADE) as client:
        people = [await viber_customer(client, n, "cascade") for n in range(4)]
        campaign = await launch(client, {
            "name": "spring sale", "purpose": "marketing", "audience": {"tags": ["cascade"]},
            "steps": [{"channel": "viber", "text": {"ru": "Весенняя распродажа", "en": "Spring sale"},
                       "until": "read", "within": 2},
                      {"channel": "whatsapp", "text": "Spring sale (WhatsApp)", "until": "read", "within": 2},
                      {"channel": "sms", "text": "Spring sale: -20% (SMS)", "until": "delivered", "within": 2}]})
        got_viber = [(await viber.replies(1))[0] for viber, _, _ in people]
        assert {m["text"] for m in got_viber} == {"Spring sale"}
        for message in got_viber[:2]:  # A and B read it on Viber
            read = await client.http.post("/emulator/viber/_/read", json={"message_token": int(message["provider_id"])})
            assert read.status_code == 200, read.text
        whatsapp = {phone: Customer(client, "whatsapp", phone) for _, phone, _ in people}
        c, d = people[2][1], people[3][1]
        [to_c] = await whatsapp[c].replies(1, wait=8)
        [to_d] = await whatsapp[d].replies(1, wait=8)
        assert to_c["text"] == to_d["text"]  # outside the 24-hour window: the approved template
        read = await client.http.post("/emulator/twilio/_/read", json={"sid": to_c["provider_id"]})
        assert read.status_code == 200, read.text
        [sms] = await Customer(client, "sms", d).replies(1, wait=8)
        assert sms["text"] == "Spring sale: -20% (SMS)"
        await asyncio.sleep(2.5)  # C's and A's, B's checks come and go: nothing more for them
        for viber, phone, _ in people[:2]:
            await viber.nothing_more(0.1)
            await whatsapp[phone].nothing_more(0.1)
        await whatsapp[c].nothing_more(0.1)
        await Customer(client, "sms", c).nothing_more(0.1)
        stats = (await client.http.get(f"/api/v1/campaigns/{campaign}/stats")).json()

    channels = stats["channels"]
    assert stats["recipients"] == 4
    assert (channels["viber"]["sent"], channels["viber"]["read"]) == (4, 2)
    assert (channels["whatsapp"]["sent"], channels["whatsapp"]["read"]) == (2, 1)
    assert (channels["sms"]["sent"], channels["sms"]["delivered"]) == (1, 1)
    assert channels["sms"]["cost"] > 0
