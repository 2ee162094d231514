"""Merging contacts that keep writing, and erasing a contact: nothing lost, nothing left."""

from __future__ import annotations

import asyncio
import time

from redis.asyncio import Redis

from bot.context import keys
from bot.models import EventKind, InboundEvent
from bot.pipeline.streams import stream_id
from tests.api.chat import PARTITIONS, Api, Customer, eventually, small_hub
from tests.conftest import HubFactory
from tests.context.leftovers import references

ROUNDS = 25


def inbound(history: list[dict[str, object]]) -> list[str]:
    return sorted(str(h["text"]) for h in history if h["direction"] == "in")


async def both_write(api: Api, ann: Customer, bob: Customer, texts: tuple[str, str]) -> tuple[str, str]:
    """Each writes once; the contact ids of `ann` (the survivor to be) and `bob` (to be absorbed)."""
    await asyncio.gather(ann.say(texts[0]), bob.say(texts[1]))
    survivor = (await api.one(channel=ann.channel, user_id=ann.user))["id"]
    absorbed = (await api.one(channel=bob.channel, user_id=bob.user))["id"]
    return survivor, absorbed


async def test_two_contacts_merged_while_both_write_lose_nothing(hub: HubFactory) -> None:
    async with small_hub(hub) as client:
        api = Api(client)
        ann, bob = Customer(client, "telegram", "550001"), Customer(client, "viber", "viber-550002")
        survivor, absorbed = await both_write(api, ann, bob, ("a-first", "b-first"))
        halfway = asyncio.Event()

        async def write(customer: Customer, prefix: str) -> None:
            for n in range(ROUNDS):
                await customer.say(f"{prefix}{n}")
                if n == ROUNDS // 3:
                    halfway.set()

        async def merge() -> None:
            await halfway.wait()
            await api.call("POST", f"/contacts/{survivor}/merge", json={"other_id": absorbed})

        await asyncio.gather(write(ann, "a"), write(bob, "b"), merge())

        expected = sorted(["a-first", "b-first", *(f"{p}{n}" for p in "ab" for n in range(ROUNDS))])
        history = await eventually(lambda: api.history(survivor), lambda h: len(inbound(h)) >= len(expected))
        assert inbound(history) == expected  # every message once, whichever side it landed on
        contact = await api.call("GET", f"/contacts/{survivor}")
        assert {i["channel"] for i in contact["identities"]} == {"telegram", "viber"}
        await api.call("GET", f"/contacts/{absorbed}/history", 404)


async def test_a_message_and_a_receipt_sharing_an_entry_id_both_reach_the_survivor(
    hub: HubFactory, redis: Redis
) -> None:
    """An entry id is unique only within its stream: a receipt and a message appended to a partition's
    two streams in the same millisecond share it, and each must still be forwarded after a merge."""
    async with small_hub(hub) as client:
        api = Api(client)
        ann, bob = Customer(client, "telegram", "570001"), Customer(client, "viber", "viber-570002")
        survivor, absorbed = await both_write(api, ann, bob, ("hello", "hello"))
        await api.call("POST", f"/contacts/{survivor}/merge", json={"other_id": absorbed})

        p, same = keys.partition_of(absorbed, PARTITIONS), f"{int(time.time() * 1000) + 60_000}-0"
        receipt = InboundEvent(kind=EventKind.status, channel="viber", user_id=bob.user, provider_id="r-1",
                               status="delivered", status_of="m-1")
        message = InboundEvent(kind=EventKind.message, channel="viber", user_id=bob.user, provider_id="m-2",
                               text="written as the merge ran")
        await redis.xadd(keys.inbound_bulk(p), {"c": absorbed, "e": receipt.model_dump_json()}, id=same)

        async def handled() -> bool:
            [group] = await redis.xinfo_groups(keys.inbound_bulk(p))
            return bool(stream_id(group["last-delivered-id"]) >= stream_id(same) and group["pending"] == 0)

        await eventually(handled, bool)
        await redis.xadd(keys.inbound(p), {"c": absorbed, "e": message.model_dump_json()}, id=same)
        await eventually(lambda: api.history(survivor), lambda h: "written as the merge ran" in inbound(h))


async def test_erase_leaves_nothing_and_the_number_comes_back_as_a_stranger(hub: HubFactory, redis: Redis) -> None:
    phone, chat = "+79997771234", "560001"
    async with small_hub(hub) as client:
        api = Api(client)
        whatsapp, telegram = Customer(client, "whatsapp", phone), Customer(client, "telegram", chat)
        await whatsapp.say("where is my order")
        await whatsapp.hears()
        await telegram.say("/link")
        await telegram.hears()
        await telegram.say(phone="79997771234")  # merges the WhatsApp contact into the Telegram one
        await telegram.hears()
        contact = await api.one(phone=phone)
        await api.call("PATCH", f"/contacts/{contact['id']}", json={"add_tags": ["vip"], "attributes": {"x": "1"}})
        held = await api.call("GET", f"/contacts/{contact['id']}/export")
        absorbed = [m["id"] for m in held["merged"]]
        assert len(absorbed) == 1 and len(held["history"]) == 6
        needles = [contact["id"], *absorbed, phone, phone[1:], chat]
        assert await references(redis, needles)

        await api.call("DELETE", f"/contacts/{contact['id']}", 204)

        assert await references(redis, needles) == []
        await api.call("GET", f"/contacts/{contact['id']}", 404)
        assert await api.find(phone=phone) == []
        await whatsapp.say("hello again")
        await whatsapp.hears()
        stranger = await api.one(phone=phone)
        assert stranger["id"] != contact["id"] and stranger["attributes"] == {} and stranger["tags"] == []
        assert [h["text"] for h in await api.history(stranger["id"])][:1] == ["hello again"]
