"""Erase and export on a real Redis: after an erase, no key and no value mentions the contact."""

from __future__ import annotations

import orjson

from bot.context import keys
from bot.context.links import LinkCodes
from bot.crm.outbox import recorded
from bot.models import EventKind, InboundEvent
from tests.context.conftest import PARTITIONS, Parts
from tests.context.leftovers import references

PHONE, CHAT, VIBER = "+79997770011", "777000111", "viber-erase-me"


def message(channel: str, user: str, provider_id: str) -> InboundEvent:
    return InboundEvent(kind=EventKind.message, channel=channel, user_id=user, provider_id=provider_id, text="hi")


async def test_erase_leaves_nothing_of_the_contact_and_what_it_absorbed(parts: Parts) -> None:
    await parts.ingest([message("whatsapp", PHONE, "SMerase1"), message("telegram", CHAT, "9001"),
                        message("viber", VIBER, "555001"), message("telegram", "424242", "9002")])
    wa = await parts.identities.lookup("whatsapp", PHONE)
    tg = await parts.identities.lookup("telegram", CHAT)
    vb = await parts.identities.lookup("viber", VIBER)
    other = await parts.identities.lookup("telegram", "424242")
    assert wa and tg and vb and other
    await parts.contact(wa, {f"i:whatsapp:{PHONE}": "1", "phone": PHONE, "t:vip": "1", "seen:whatsapp": "1"},
                        {"mode": "queued", "at": "1.0"}, (("whatsapp", 1.0, "mine"),))
    await parts.contact(tg, {f"i:telegram:{CHAT}": "2", "name": "Ann", "t:gold": "1", "seen:telegram": "2"},
                        {"mode": "bot", "at": "2.0"}, (("telegram", 2.0, "also mine"),))
    await parts.contact(vb, {f"i:viber:{VIBER}": "3", "phone": "+79997770022", "seen:viber": "3"})
    await parts.contact(other, {"i:telegram:424242": "1", "t:vip": "1", "name": "Someone else"})
    await parts.redis.zadd(keys.by_mode("queued"), {wa: 1})
    await LinkCodes(parts.redis).issue(tg)
    await parts.redis.set(keys.link_tries("telegram", CHAT), 2)
    await parts.redis.rpush(keys.consent(wa), orjson.dumps({"channel": "sms", "state": "out", "at": 1}))
    await parts.merger.merge(wa, tg, "test")
    await parts.merger.merge(wa, vb, "test")

    needles = [wa, tg, vb, PHONE, PHONE[1:], CHAT, VIBER, "+79997770022"]
    assert len(await references(parts.redis, needles)) > 10  # the scan sees them while they are there

    event_id = await parts.privacy.erase(wa)

    assert event_id is not None
    assert await references(parts.redis, needles) == []
    assert await parts.redis.smembers(keys.tag("vip")) == {other}
    assert await parts.redis.hget(keys.contact(other), "name") == "Someone else"
    assert await parts.identities.lookup("telegram", "424242") == other
    [erased] = await recorded(parts.redis, PARTITIONS, "omnihub.contact.erased")
    assert (erased.subject, erased.data["contact_id"], erased.id) == (wa, wa, event_id)
    assert sorted(erased.data["absorbed"]) == sorted([tg, vb])
    assert await parts.privacy.erase(wa) is None  # nothing left to erase

    # the same number later is somebody new
    await parts.ingest([message("whatsapp", PHONE, "SMerase2")])
    fresh = await parts.identities.lookup("whatsapp", PHONE)
    assert fresh not in (None, wa)


async def test_export_holds_profile_conversation_history_consent_and_absorbed_profiles(parts: Parts) -> None:
    await parts.contact("wa", {"i:whatsapp:+79990000001": "1", "phone": "+79990000001", "seen:whatsapp": "5"},
                        {"mode": "bot", "at": "5.0"}, (("whatsapp", 5.0, "hello"),))
    await parts.contact("tg", {"i:telegram:1": "1", "name": "Ann"}, {}, (("telegram", 1.0, "hi"),))
    await parts.redis.rpush(keys.consent("wa"), orjson.dumps({"channel": "sms", "state": "in", "at": 2}))
    await parts.merger.merge("wa", "tg", "test")

    held = await parts.privacy.export("wa")

    assert held is not None
    assert held["profile"]["name"] == "Ann" and held["conversation"]["mode"] == "bot"
    assert [e["tx"] for e in held["history"]] == ["hi", "hello"]
    assert held["consent"] == [{"channel": "sms", "state": "in", "at": 2}]
    [absorbed] = held["merged"]
    assert (absorbed["id"], absorbed["merged_into"], absorbed["profile"]) == ("tg", "wa", {
        "i:telegram:1": "1", "name": "Ann"})
    assert await parts.privacy.export("tg") is None  # a tombstone is exported with its survivor
