"""The sandbox's demo campaign reaches the four phone panes: a cascade Telegram → Viber → WhatsApp →
SMS, where each pane's customer gets the step of its own channel and nobody replies."""

from __future__ import annotations

from tests.conftest import HubFactory
from tests.pipeline.customer import Customer, small_hub


async def test_the_demo_campaign_reaches_every_pane(hub: HubFactory) -> None:
    async with small_hub(hub) as client:
        refused = await client.http.post("/sandbox/demo-campaign")
        assert refused.status_code == 409 and "write to the bot" in refused.json()["detail"]
        panes = {channel: Customer(client, channel, user) for channel, user in
                 [("telegram", "100001"), ("viber", "viber-user-1"), ("whatsapp", "+79991234567"),
                  ("sms", "+79991234567")]}
        for pane in panes.values():
            await pane.say("hi")
            await pane.replies(1)
        started = await client.http.post("/sandbox/demo-campaign")
        assert started.status_code == 202 and started.json()["recipients"] == 3  # the phone is one customer
        for channel, pane in panes.items():
            [demo] = await pane.replies(1, wait=15)
            assert "demo campaign" in demo["text"], (channel, demo)
