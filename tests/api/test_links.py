"""Link codes through the emulators: "continue in WhatsApp", then the code from the other channel."""

from __future__ import annotations

import re

from redis.asyncio import Redis

from bot.context import keys
from tests.api.chat import Api, Customer, eventually, small_hub
from tests.conftest import HubFactory

LINKED = "Done — this chat is now linked with your other one. Let's carry on where we left off."
USED = "This code has already been used. Ask me for a new one in the other chat if you need it."
EXPIRED = "This code has expired (codes work for 10 minutes). Ask me for a new one in the other chat."
UNKNOWN = "I don't know this code. Please check it, or ask me for a new one in the other chat."
LOCKED = "Too many wrong codes. Please wait 10 minutes and try again."


async def offered_code(customer: Customer, ask: str = "/link") -> tuple[str, str]:
    await customer.say(ask)
    [offer] = await customer.hears()
    found = re.search(r"the code ([A-Z0-9]{6})", offer)
    assert found, offer
    return found.group(1), offer


async def test_a_code_from_telegram_links_whatsapp_and_the_flow_goes_on_there(hub: HubFactory) -> None:
    async with small_hub(hub) as client:
        api = Api(client)
        telegram, whatsapp = Customer(client, "telegram", "530001"), Customer(client, "whatsapp", "+79990003344")
        code, offer = await offered_code(telegram, "can I continue in whatsapp?")
        assert f"WhatsApp: https://wa.me/14155238886?text={code}" in offer
        assert f"SMS: sms:+15005550006?body={code}" in offer
        assert f"Viber: viber://pa?chatURI=omnihub&context={code}" in offer
        assert "Telegram:" not in offer  # not the channel the customer is on
        await telegram.say("where is my order")
        await telegram.hears()

        await whatsapp.say(f" {code.lower()} ")
        assert await whatsapp.hears() == [LINKED]
        await whatsapp.say("10454")
        assert (await whatsapp.hears(2))[0] == "Order 10454 has been delivered. We hope you enjoy it!"

        contact = await api.one(phone="+79990003344")
        assert {i["channel"] for i in contact["identities"]} == {"telegram", "whatsapp"}
        assert (await api.one(channel="telegram", user_id="530001"))["id"] == contact["id"]
        await telegram.say(f"/start {code}")  # the same code again
        assert await telegram.hears() == [USED]


async def test_expired_unknown_and_guessed_codes_are_answered_and_limited(hub: HubFactory, redis: Redis) -> None:
    async with small_hub(hub) as client:
        api = Api(client)
        telegram, sms = Customer(client, "telegram", "530002"), Customer(client, "sms", "+79990003355")
        code, _ = await offered_code(telegram)
        issuer = (await api.one(channel="telegram", user_id="530002"))["id"]
        await redis.set(keys.link_code(code), f"{issuer}:1000.0", keepttl=True)  # issued long ago
        await sms.say(code)
        assert await sms.hears() == [EXPIRED]
        await sms.say("HELLO2")  # looks like a code but is none: an ordinary message, the dialog answers
        assert (await sms.hears())[0].startswith("Hi! Welcome to Omnishop.")

        guesser = Customer(client, "telegram", "530003")
        fresh, _ = await offered_code(telegram)
        for guess in ("ZZZZZ2", "ZZZZZ3", "ZZZZZ4", "ZZZZZ5", "ZZZZZ6"):
            await guesser.say(f"/start {guess}")
            assert await guesser.hears() == [UNKNOWN]
        await guesser.say(f"/start {fresh}")  # the sixth try, even with a live code
        assert await guesser.hears() == [LOCKED]
        assert len({(await api.one(channel="telegram", user_id=u))["id"] for u in ("530002", "530003")}) == 2


async def test_viber_links_by_deep_link_context_and_by_a_shared_contact(hub: HubFactory) -> None:
    async with small_hub(hub) as client:
        api = Api(client)
        telegram, viber = Customer(client, "telegram", "530004"), Customer(client, "viber", "viber-530005")
        code, _ = await offered_code(telegram)
        opened = await client.http.post("/emulator/viber/_/inbound", json={
            "user_id": viber.user, "event": "conversation_started", "context": code})
        assert opened.json()["status"] == 200
        [welcome] = await viber.hears()  # the welcome answer to conversation_started; the link is silent
        assert welcome.startswith("Hello!")
        linked = await eventually(lambda: api.find(channel="viber", user_id=viber.user),
                                  lambda found: len(found) == 1 and len(found[0]["identities"]) == 2)
        assert {i["channel"] for i in linked[0]["identities"]} == {"telegram", "viber"}

        await viber.say(phone="+7 999 000-33-66")  # a Viber contact message
        [thanks] = await viber.hears()
        assert thanks.startswith("Thanks, Sandbox! I've saved your number")
        assert (await api.one(phone="89990003366"))["id"] == linked[0]["id"]
