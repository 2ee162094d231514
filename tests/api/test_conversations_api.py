"""`GET /api/v1/conversations?mode=`: the queue an agent works from."""

from __future__ import annotations

from tests.conftest import HubFactory
from tests.pipeline.customer import Customer, small_hub


async def test_a_customer_who_asks_for_a_human_is_queued(hub: HubFactory) -> None:
    async with small_hub(hub) as client:
        anna, boris = Customer(client, "telegram", "410001"), Customer(client, "whatsapp", "+79990007788")
        await anna.say("hello")
        await anna.replies()
        await anna.say(button="human")  # "Talk to a human" under the greeting
        await anna.replies()
        await boris.say("hello")
        await boris.replies()

        queued = (await client.http.get("/api/v1/conversations", params={"mode": "queued"})).json()["items"]
        assert [(c["contact_id"], c["mode"], c["channel"]) for c in queued] == [
            (await anna.contact_id(), "queued", "telegram")]
        in_bot = (await client.http.get("/api/v1/conversations", params={"mode": "bot"})).json()["items"]
        assert [(c["contact_id"], c["channel"]) for c in in_bot] == [(await boris.contact_id(), "whatsapp")]
        bad = await client.http.get("/api/v1/conversations", params={"mode": "lost"})
        assert bad.status_code == 422 and "mode" in bad.json()["detail"]
