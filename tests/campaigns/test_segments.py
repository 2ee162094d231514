"""Segments evaluated from the indexes that the real write path keeps: customers writing through the
emulators, a CRM writing through the API (PATCH, batch upsert by phone, conversions), merge and erase."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import pytest
from pydantic import ValidationError
from redis.asyncio import Redis

from bot.campaigns.segments import SavedSegments, Segment, SegmentError, evaluate, preview
from bot.context import indexes, keys
from bot.context.store import Changes, ContextStore
from tests.api.chat import Api, Customer, small_hub
from tests.conftest import HubFactory


async def members(redis: Redis, spec: dict[str, Any]) -> set[str]:
    result = await evaluate(redis, Segment.model_validate(spec))
    found = [cid async for cid in result.ids(redis, page=2)]  # small pages: the paging is exercised
    assert len(found) == result.count
    return set(found)


@dataclass
class Town:
    """Five contacts: three who wrote (Telegram, Viber, WhatsApp), two a CRM imported by phone."""

    api: Api
    ann: str
    bob: str
    cat: str
    dan: str
    eve: str


async def populate(client: Any, token: str | None = None) -> Town:
    api = Api(client, token)
    ann, bob = Customer(client, "telegram", "770001"), Customer(client, "viber", "viber-770002")
    cat = Customer(client, "whatsapp", "+79990000003")
    await asyncio.gather(ann.say("hello"), bob.say("hello"), cat.say("hello"))
    await asyncio.gather(ann.hears(), bob.hears(), cat.hears())
    ids = [(await api.one(**q))["id"] for q in ({"channel": "telegram", "user_id": "770001"},
                                                 {"channel": "viber", "user_id": "viber-770002"},
                                                 {"phone": "+79990000003"})]
    batch = await api.call("POST", "/contacts/batch", json={"items": [
        {"phone": "+79990000004", "add_tags": ["vip"], "attributes": {"city": "Paris"},
         "consent": {"sms": {"marketing": "in"}}},
        {"phone": "+79990000005"},
    ]})
    town = Town(api, *ids, *(item["id"] for item in batch["items"]))
    await api.call("PATCH", f"/contacts/{town.ann}", json={
        "add_tags": ["vip"], "attributes": {"city": "Paris"}, "language": "de",
        "consent": {"telegram": {"marketing": "in"}}})
    await api.call("PATCH", f"/contacts/{town.bob}", json={
        "add_tags": ["vip", "new"], "attributes": {"city": "Rome"}, "consent": {"viber": {"marketing": "in"}}})
    await api.call("PATCH", f"/contacts/{town.cat}", json={
        "add_tags": ["new"], "consent": {"whatsapp": {"marketing": "out"}}})
    for n in range(2):
        await api.call("POST", f"/contacts/{town.bob}/conversions", 201,
                       json={"name": f"order-{n}", "amount": 50, "currency": "EUR"})
    return town


async def test_each_filter_selects_exactly_the_contacts_it_names(hub: HubFactory, redis: Redis) -> None:
    async with small_hub(hub) as client:
        t = await populate(client)
        everyone = {t.ann, t.bob, t.cat, t.dan, t.eve}
        assert await members(redis, {}) == everyone
        assert await members(redis, {"tags": ["vip"]}) == {t.ann, t.bob, t.dan}  # the contract's audience
        assert await members(redis, {"tags": ["vip", "new"]}) == {t.bob}
        assert await members(redis, {"tags": ["vip"], "not_tags": ["new"]}) == {t.ann, t.dan}
        assert await members(redis, {"any_tags": ["vip", "new"]}) == {t.ann, t.bob, t.cat, t.dan}
        assert await members(redis, {"not_tags": ["vip"]}) == {t.cat, t.eve}
        assert await members(redis, {"channels": ["viber"]}) == {t.bob}
        assert await members(redis, {"channels": ["whatsapp"]}) == {t.cat}
        assert await members(redis, {"channels": ["sms"]}) == {t.cat, t.dan, t.eve}  # a phone takes SMS
        assert await members(redis, {"channels": ["telegram", "sms"]}) == set()
        assert await members(redis, {"consent": [{"channel": "viber", "purpose": "marketing"}]}) == {t.bob}
        assert await members(redis, {"consent": [{"channel": "whatsapp"}]}) == set()  # "out" is not "in"
        assert await members(redis, {"attributes": {"city": "Paris"}}) == {t.ann, t.dan}
        assert await members(redis, {"language": "de"}) == {t.ann}
        assert await members(redis, {"last_seen": {"within_days": 1}}) == {t.ann, t.bob, t.cat}
        assert await members(redis, {"last_seen": {"older_than_days": 1}}) == set()
        assert await members(redis, {"created": {"within_days": 1}}) == everyone
        assert await members(redis, {"conversions": {"min_count": 2}}) == {t.bob}
        assert await members(redis, {"conversions": {"max_count": 1}}) == everyone - {t.bob}
        assert await members(redis, {"conversions": {"min_total": 100.5}}) == set()
        assert await members(redis, {"rfm": {"max_recency_days": 7, "min_frequency": 2, "min_monetary": 100}}) == {
            t.bob}
        assert await members(redis, {"tags": ["vip"], "consent": [{"channel": "sms"}],
                                     "attributes": {"city": "Paris"}}) == {t.dan}

        shown = await preview(redis, Segment(tags=["vip"]), sample=2)
        assert shown.count == 3 and len(shown.sample) == 2 and set(shown.sample) <= {t.ann, t.bob, t.dan}


async def test_a_changed_value_leaves_its_old_entry(hub: HubFactory, redis: Redis) -> None:
    async with small_hub(hub) as client:
        t = await populate(client)
        await t.api.call("PATCH", f"/contacts/{t.ann}", json={
            "attributes": {"city": "Rome"}, "language": "fr", "remove_tags": ["vip"],
            "consent": {"telegram": {"marketing": "out"}}})
        assert await members(redis, {"attributes": {"city": "Paris"}}) == {t.dan}
        assert await members(redis, {"attributes": {"city": "Rome"}}) == {t.ann, t.bob}
        assert await members(redis, {"language": ["de", "fr"]}) == {t.ann}
        assert await members(redis, {"language": "de"}) == set()
        assert await members(redis, {"tags": ["vip"]}) == {t.bob, t.dan}
        assert await members(redis, {"consent": [{"channel": "telegram"}]}) == set()
        await t.api.call("PATCH", f"/contacts/{t.ann}", json={"attributes": {"city": None}, "language": None})
        assert await members(redis, {"attributes": {"city": "Rome"}}) == {t.bob}
        assert t.ann not in await members(redis, {"language": "fr"})


async def test_saved_segments_combine_and_refuse_what_is_missing(hub: HubFactory, redis: Redis) -> None:
    async with small_hub(hub) as client:
        t = await populate(client)
        saved = SavedSegments(redis)
        await saved.save("vip", Segment(tags=["vip"]))
        await saved.save("vip-in-paris", Segment(segment="vip", attributes={"city": "Paris"}))
        assert await saved.list() == {"vip": Segment(tags=["vip"]),
                                      "vip-in-paris": Segment(segment="vip", attributes={"city": "Paris"})}
        assert await members(redis, {"segment": "vip-in-paris", "channels": ["telegram"]}) == {t.ann}
        assert await members(redis, {"segment": "vip", "not_tags": ["new"]}) == {t.ann, t.dan}
        assert await saved.delete("vip") and await saved.get("vip") is None
        with pytest.raises(SegmentError, match="no saved segment 'vip'"):
            await evaluate(redis, Segment(segment="vip-in-paris"))
        with pytest.raises(SegmentError, match="itself"):
            await saved.save("loop", Segment(segment="loop"))
        async for key in redis.scan_iter(match=keys.segment_scratch("*")):  # results expire; nothing else is left
            assert 0 < await redis.ttl(key) <= 300, key


async def index_members(redis: Redis, cid: str) -> list[str]:
    """Every segment index key that still names `cid`."""
    found = []
    async for key in redis.scan_iter(match=f"{keys.INDEX}:*"):
        if key.startswith(keys.segment_scratch("")):
            continue  # evaluation results, which expire (docs/segments.md)
        kind = await redis.type(key)
        if await redis.sismember(key, cid) if kind == "set" else await redis.zscore(key, cid) is not None:
            found.append(key)
    return found


async def test_merge_moves_and_erase_drops_every_entry(hub: HubFactory, redis: Redis) -> None:
    async with small_hub(hub) as client:
        t = await populate(client)
        await t.api.call("PATCH", f"/contacts/{t.eve}", json={"add_tags": ["new"], "attributes": {"city": "Oslo"}})
        assert len(await index_members(redis, t.eve)) == 5  # all, sms, created, the tag, the city
        await t.api.call("POST", f"/contacts/{t.bob}/merge", json={"other_id": t.eve})
        assert await index_members(redis, t.eve) == []
        assert await members(redis, {"channels": ["viber", "sms"], "tags": ["new"]}) == {t.bob}
        assert await members(redis, {"attributes": {"city": "Oslo"}}) == set()  # Bob wrote last: his city stays
        assert await members(redis, {"attributes": {"city": "Rome"}}) == {t.bob}
        assert await members(redis, {}) == {t.ann, t.bob, t.cat, t.dan}

        await t.api.call("DELETE", f"/contacts/{t.bob}", 204)
        assert await index_members(redis, t.bob) == []
        assert await index_members(redis, t.eve) == []
        assert await members(redis, {}) == {t.ann, t.cat, t.dan}


async def test_unmerge_gives_the_channels_back(hub: HubFactory, redis: Redis) -> None:
    async with small_hub(hub, admin_token="admin-secret") as client:
        t = await populate(client, "admin-secret")
        await t.api.call("PATCH", f"/contacts/{t.eve}", json={"add_tags": ["old"]})
        await t.api.call("POST", f"/contacts/{t.bob}/merge", json={"other_id": t.eve})
        assert await members(redis, {"channels": ["sms"]}) == {t.bob, t.cat, t.dan}
        await t.api.call("POST", f"/contacts/{t.bob}/unmerge", json={"absorbed_id": t.eve})
        assert await members(redis, {"channels": ["sms"]}) == {t.cat, t.dan, t.eve}
        assert await members(redis, {"channels": ["viber"]}) == {t.bob}
        assert await members(redis, {"tags": ["old"]}) == {t.eve}
        assert await members(redis, {}) == {t.ann, t.bob, t.cat, t.dan, t.eve}


async def test_a_detected_language_does_not_override_a_chosen_one(redis: Redis) -> None:
    store = ContextStore(redis)
    await store.commit("c1", Changes(profile={"created": "1", "lang_set": "de", "lang": "ru"}))
    await store.commit("c1", Changes(profile={"lang": "en"}))
    assert await members(redis, {"language": "de"}) == {"c1"}
    assert await members(redis, {"language": ["en", "ru"]}) == set()
    await store.commit("c1", Changes(drop_profile_fields=["lang_set"]))
    assert await members(redis, {"language": "en"}) == {"c1"}
    assert await members(redis, {"language": "de"}) == set()
    long = "x" * 300
    await store.commit("c1", Changes(profile={"a:note": long}))
    assert await members(redis, {"attributes": {"note": long}}) == {"c1"}  # the first 100 characters


def test_the_index_entries_a_profile_names() -> None:
    found = indexes.entries({"i:telegram:1": "5", "phone": "+1", "seen:telegram": "10", "seen:sms": "20",
                             "cs:viber:marketing": "in", "cv:n": "3"})
    assert found.sets == {keys.EVERYONE, keys.with_channel("telegram"), keys.with_channel("sms"),
                          keys.with_consent("viber", "marketing", "in")}
    assert found.scores == {"seen": 20.0, "cv:n": 3.0}
    assert indexes.left({}, {"cs:viber:marketing": "out"}, ()) == ({keys.with_consent("viber", "marketing", "in")},
                                                                   set())


@pytest.mark.parametrize("bad", [
    {"tags": "vip"}, {"colour": ["red"]}, {"last_seen": {}}, {"last_seen": {"within_days": 1, "older_than_days": 2}},
    {"consent": [{"channel": "fax"}]}, {"conversions": {"min_count": 3, "max_count": 1}}, {"tags": ["a b"]},
    {"language": "english"},
])
def test_a_bad_filter_is_a_validation_error(bad: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        Segment.model_validate(bad)


def test_the_contract_audience_is_a_segment_as_it_stands() -> None:
    assert Segment.model_validate({"tags": ["vip", "new"]}).tags == ["vip", "new"]
