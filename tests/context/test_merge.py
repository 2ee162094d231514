"""Merging two contacts and taking it back, on a real Redis, through the context services."""

from __future__ import annotations

import pytest
from redis.asyncio import Redis

from bot.context import keys
from bot.context.consent import consent_trail
from bot.context.history import HistoryEntry
from bot.context.merge import MergeError, SameContact, UnknownContact
from bot.context.store import Changes
from bot.crm.outbox import recorded
from tests.context.conftest import PARTITIONS, Parts

TG = {"i:telegram:100": "10", "name": "Ann (Telegram)", "lang": "ru", "a:city": "Moscow", "t:vip": "1",
      "seen:telegram": "30", "created": "10", "cs:telegram:marketing": "in", "cs:sms:marketing": "out"}
WA = {"i:whatsapp:+79991234567": "5", "phone": "+79991234567", "name": "Anna", "a:city": "Kazan",
      "a:size": "M", "t:lead": "1", "seen:whatsapp": "20", "created": "5", "cs:sms:marketing": "in"}


async def two_contacts(parts: Parts) -> None:
    await parts.contact("tg", TG, {"mode": "bot", "at": "30.0", "last": "900-0", "st": '{"flow":"order_status"}',
                                   "ch": "telegram", "uid": "100"},
                        (("telegram", 11.0, "t1"), ("telegram", 25.0, "t2")))
    await parts.contact("wa", WA, {"mode": "resolved", "at": "20.0", "last": "800-0", "st": "{}", "opt": "[]",
                                   "ch": "whatsapp", "uid": "+79991234567"},
                        (("whatsapp", 6.0, "w1"), ("whatsapp", 21.0, "w2")))
    await parts.redis.zadd(keys.by_mode("resolved"), {"wa": 20})
    await parts.redis.zadd(keys.by_mode("bot"), {"tg": 30})


async def events(redis: Redis) -> list[dict[str, object]]:
    return [e.model_dump() for e in await recorded(redis, PARTITIONS)]


async def test_a_conversation_a_person_has_goes_on_over_a_newer_one_with_the_bot(parts: Parts) -> None:
    await parts.contact("tg", TG, {"mode": "bot", "at": "30.0", "last": "900-0", "ch": "telegram", "uid": "100"},
                        (("telegram", 25.0, "t1"),))
    await parts.contact("wa", WA, {"mode": "assigned", "assignee": "a1", "at": "20.0", "last": "800-0",
                                   "ch": "whatsapp", "uid": "+79991234567"}, (("whatsapp", 21.0, "w1"),))
    await parts.redis.zadd(keys.by_mode("assigned"), {"wa": 20})
    await parts.redis.zadd(keys.by_mode("bot"), {"tg": 30})
    await parts.merger.merge("wa", "tg", "test")
    conversation = await parts.redis.hgetall(keys.conversation("wa"))
    assert (conversation["mode"], conversation["assignee"]) == ("assigned", "a1")  # the agent keeps the customer
    assert await parts.redis.zscore(keys.by_mode("assigned"), "wa") is not None


async def test_one_history_the_newest_dialog_and_attributes_of_the_more_recent_contact(parts: Parts) -> None:
    await two_contacts(parts)
    merged = await parts.merger.merge("wa", "tg", "test")

    profile = await parts.redis.hgetall(keys.contact("wa"))
    assert {k for k in profile if k.startswith(("i:", "t:"))} == {
        "i:telegram:100", "i:whatsapp:+79991234567", "t:vip", "t:lead"}
    assert (profile["name"], profile["lang"], profile["a:city"], profile["a:size"]) == (
        "Ann (Telegram)", "ru", "Moscow", "M")  # Telegram was active last; Kazan lost, size kept
    assert (profile["created"], profile["phone"], profile["m:tg"] > "0") == ("5", "+79991234567", True)
    assert profile["cs:sms:marketing"] == "out"  # a refusal survives whichever side is newer
    assert profile["cs:telegram:marketing"] == "in"

    conversation = await parts.redis.hgetall(keys.conversation("wa"))
    assert float(conversation.pop("ms")) == await parts.redis.zscore(keys.by_mode("bot"), "wa")  # its mode entry
    assert conversation == {"mode": "bot", "at": "30.0", "last": "800-0", "st": '{"flow":"order_status"}',
                            "ch": "telegram", "uid": "100"}  # Telegram's flow, the survivor's replay marker
    assert await parts.redis.zscore(keys.by_mode("bot"), "wa") is not None
    assert await parts.redis.zscore(keys.by_mode("resolved"), "wa") is None
    assert await parts.redis.zscore(keys.by_mode("bot"), "tg") is None

    _, history = await parts.store.history("wa", 0, 100)
    assert [e.text for e in history] == ["w1", "t1", "w2", "t2"]

    for key in ("omni:id:telegram:100", "omni:id:phone:+79991234567"):
        assert await parts.redis.get(key) == "wa"
    assert await parts.redis.smembers(keys.tag("vip")) == {"wa"}
    tombstone = await parts.redis.hgetall(keys.contact("tg"))
    assert set(tombstone) == {"merged_into", "merged_at", "undo"} and tombstone["merged_into"] == "wa"
    assert not await parts.redis.exists(keys.conversation("tg"), keys.history("tg"))
    assert await parts.identities.live("tg") == "wa"

    [event] = await events(parts.redis)
    assert (event["type"], event["subject"], event["id"]) == ("omnihub.contact.merged", "wa", merged.event_id)
    assert event["data"] == {"survivor": "wa", "absorbed": "tg", "reason": "test"}


async def test_refusals(parts: Parts) -> None:
    await two_contacts(parts)
    with pytest.raises(SameContact):
        await parts.merger.merge("wa", "wa", "test")
    with pytest.raises(UnknownContact):
        await parts.merger.merge("wa", "nobody", "test")
    await parts.merger.merge("wa", "tg", "test")
    with pytest.raises(MergeError, match="merged into 'wa' already"):
        await parts.merger.merge("wa", "tg", "test")
    with pytest.raises(MergeError, match="'tg' was merged into 'wa'"):
        await parts.merger.merge("tg", "wa", "test")
    assert len(await events(parts.redis)) == 1


async def test_a_turn_that_lands_on_the_tombstone_is_folded_into_the_survivor(parts: Parts) -> None:
    await two_contacts(parts)
    await parts.merger.merge("wa", "tg", "test")
    late = Changes(profile={"seen:telegram": "40", "a:color": "red"}, conversation={"at": "40.0", "last": "901-0"},
                   history=[HistoryEntry(id="late", channel="telegram", direction="in", at=40.0, author="customer",
                                        text="late")])
    existed, merged_into = await parts.store.commit("tg", late)
    assert (existed, merged_into) == (True, "wa")

    await parts.merger.fold("tg")
    profile = await parts.redis.hgetall(keys.contact("wa"))
    assert (profile["a:color"], profile["seen:telegram"]) == ("red", "40")
    assert (await parts.redis.hget(keys.conversation("wa"), "at"), await parts.redis.hget(
        keys.conversation("wa"), "last")) == ("40.0", "800-0")
    _, history = await parts.store.history("wa", 0, 100)
    assert history[-1].text == "late"
    assert set(await parts.redis.hgetall(keys.contact("tg"))) == {"merged_into", "merged_at", "undo"}
    assert not await parts.redis.exists(keys.history("tg"), keys.conversation("tg"))


async def test_unmerge_gives_back_identities_phone_and_tags_and_keeps_the_history(parts: Parts) -> None:
    await two_contacts(parts)
    await parts.contact("tg2", {"i:telegram:200": "1", "phone": "+79990000002", "seen:telegram": "50"})
    await parts.merger.merge("wa", "tg", "test")
    await parts.merger.merge("wa", "tg2", "test")  # newer: its phone becomes the main one
    assert await parts.redis.hget(keys.contact("wa"), "phone") == "+79990000002"

    await parts.merger.unmerge("wa", "tg2")
    await parts.merger.unmerge("wa", "tg")
    survivor = await parts.redis.hgetall(keys.contact("wa"))
    restored = await parts.redis.hgetall(keys.contact("tg"))
    assert {k for k in survivor if k.startswith(("i:", "t:", "p:", "m:"))} == {"i:whatsapp:+79991234567", "t:lead"}
    assert survivor["phone"] == "+79991234567"
    assert {k: restored[k] for k in TG} == TG
    assert await parts.redis.get("omni:id:telegram:100") == "tg"
    assert await parts.redis.get("omni:id:telegram:200") == "tg2"
    assert await parts.redis.get("omni:id:phone:+79990000002") == "tg2"
    assert await parts.redis.smembers(keys.tag("vip")) == {"tg"}
    total, _ = await parts.store.history("wa", 0, 1)
    assert total == 4  # history stays merged
    merges = ["omnihub.contact.merged"] * 2 + ["omnihub.contact.unmerged"] * 2
    assert [e["type"] for e in await events(parts.redis)] == merges
    with pytest.raises(MergeError, match="is not merged into"):
        await parts.merger.unmerge("wa", "tg")


async def test_both_consent_trails_are_kept_in_time_order(parts: Parts) -> None:
    """Consent rows are not history entries; a merge interleaves the two trails by their time."""
    await two_contacts(parts)
    rows = {"wa": [("sms", 5.0, "out"), ("whatsapp", 22.0, "in")], "tg": [("telegram", 12.0, "in")]}
    for cid, trail in rows.items():
        consent = [{"channel": ch, "purpose": "marketing", "state": state, "source": "api", "at": at}
                   for ch, at, state in trail]
        await parts.store.commit(cid, Changes(consent=consent))
    await parts.merger.merge("wa", "tg", "test")
    merged = await consent_trail(parts.redis, "wa")
    assert [(r["channel"], r["at"]) for r in merged] == [("sms", 5.0), ("telegram", 12.0), ("whatsapp", 22.0)]
