"""The language a customer is answered in, through a running hub: each message judged on its own, and
a language the CRM set wins. Real hub on loopback, real Redis, the Telegram emulator on the wire."""

from __future__ import annotations

from tests.conftest import HubFactory
from tests.pipeline.customer import Customer, small_hub

HOURS_EN = "Our store is open Mon–Fri 9:00–21:00 and Sat–Sun 10:00–18:00. I'm here in the chat around the clock."


async def test_the_language_follows_each_message_until_the_crm_sets_one(hub: HubFactory) -> None:
    async with small_hub(hub) as client:
        olga = Customer(client, "telegram", "730001")
        await olga.say("привет", name="Ольга")
        [greeting] = await olga.replies()
        assert greeting["text"].startswith("Здравствуйте, Ольга!")

        await olga.say("what are your opening hours")
        [hours] = await olga.replies()
        assert hours["text"] == HOURS_EN

        await olga.say("ok")  # says nothing about language: stays English
        [unsure] = await olga.replies()
        assert unsure["text"].startswith("Sorry, I didn't quite get that.")

        cid = await olga.contact_id()
        patched = await client.http.patch(f"/api/v1/contacts/{cid}", json={"language": "ru"})
        assert (patched.json()["language"], patched.json()["language_set"]) == ("ru", True)
        await olga.say("hello")
        [set_by_crm] = await olga.replies()
        assert set_by_crm["text"].startswith("Здравствуйте, Ольга!")

        cleared = await client.http.patch(f"/api/v1/contacts/{cid}", json={"language": None})
        assert cleared.json()["language_set"] is False
        await olga.say("hello")
        [detected_again] = await olga.replies()
        assert detected_again["text"].startswith("Hi, Ольга!")
