"""The dialogs' fixed words stored once: entries name them by digest and read back with the words."""

from __future__ import annotations

import orjson
from redis.asyncio import Redis

from bot.context import keys
from bot.context.history import HistoryEntry
from bot.context.phrases import buttons_words, digest
from bot.context.store import Changes, ContextStore
from bot.dialogue.loader import load_dialogs
from bot.models import Button, OutboundMessage, Reply
from tests.conftest import ROOT, HubFactory
from tests.context.conftest import Parts
from tests.pipeline.customer import Customer, small_hub

HOURS = "We are open 9 to 5."
MENU = (Button(title="Hours", payload="hours"), Button(title="Human", payload="human"))


def reply(n: int, text: str, buttons: tuple[Button, ...] = ()) -> HistoryEntry:
    message = OutboundMessage(id=f"m{n}", contact_id="c1", channel="telegram", user_id="7",
                              reply=Reply(text=text, buttons=buttons))
    return HistoryEntry.outbound(message, float(n), "1-0")


async def stored(redis: Redis, cid: str) -> list[dict[str, object]]:
    return [orjson.loads(raw) for raw in await redis.lrange(keys.history(cid), 0, -1)]


def test_a_text_that_reads_no_variable_is_fixed_in_every_language() -> None:
    texts = load_dialogs(ROOT / "dialogs").texts
    assert set(texts["opening_hours"].fixed) == {"en", "ru"}
    assert texts["opening_hours"].fixed["en"].startswith("Our store is open")
    assert texts["greeting"].fixed == {}  # "Hi, {{ contact.name }}!"


def test_a_row_of_buttons_titled_by_fixed_texts_is_fixed_in_every_language() -> None:
    rows = load_dialogs(ROOT / "dialogs").fixed_buttons()
    titles = {tuple(b.title for b in row) for row in rows}
    assert ("Order status", "Delivery & hours", "Talk to a human") in titles
    assert ("Статус заказа", "Доставка и часы работы", "Связаться с сотрудником") in titles


async def test_fixed_words_are_stored_by_digest_once_published_and_read_back(parts: Parts) -> None:
    store = parts.store
    store.phrases.learn([HOURS])
    await store.commit("c1", Changes(history=[reply(1, HOURS)]))  # not published yet: kept inline
    await store.phrases.publish()
    await store.commit("c1", Changes(history=[reply(2, HOURS), reply(3, "Hi, Ann!")]))
    rows = await stored(parts.redis, "c1")
    assert [(r.get("tx"), r.get("tk")) for r in rows] == [(HOURS, None), (None, digest(HOURS)), ("Hi, Ann!", None)]
    assert await parts.redis.hget(keys.PHRASES, digest(HOURS)) == HOURS
    _, page = await store.history("c1")
    assert [e.text for e in page] == [HOURS, HOURS, "Hi, Ann!"]
    assert [e.text for e in await store.recent_history("c1", 2)] == [HOURS, "Hi, Ann!"]
    updated = await store.update_history("c1", ("id", "m2"), {"st": "sent", "pid": "9"})
    assert updated is not None and (updated.text, updated.status) == (HOURS, "sent")
    assert "tx" not in (await stored(parts.redis, "c1"))[1]  # the update script keeps the digest


async def test_a_fixed_row_of_buttons_is_stored_by_digest_even_under_a_personal_text(parts: Parts) -> None:
    parts.store.phrases.learn([buttons_words(MENU)])
    await parts.store.phrases.publish()
    other = (Button(title="Hours", payload="hours"),)
    await parts.store.commit("c4", Changes(history=[reply(1, "Hi, Ann!", MENU), reply(2, "Hi, Bob!", other)]))
    rows = await stored(parts.redis, "c4")
    assert [(r.get("tx"), r.get("bk"), "btn" in r) for r in rows] == [
        ("Hi, Ann!", digest(buttons_words(MENU)), False), ("Hi, Bob!", None, True)]
    _, page = await ContextStore(parts.redis).history("c4")
    assert [(e.text, e.buttons) for e in page] == [("Hi, Ann!", MENU), ("Hi, Bob!", other)]


async def test_another_process_reads_the_words_from_the_table(parts: Parts, redis: Redis) -> None:
    parts.store.phrases.learn([HOURS])
    await parts.store.phrases.publish()
    await parts.store.commit("c2", Changes(history=[reply(1, HOURS)]))
    api_only = ContextStore(redis)  # knows no dialogs
    _, [entry] = await api_only.history("c2")
    assert entry.text == HOURS
    await redis.rpush(keys.history("c2"), b'{"id":"m9","ch":"telegram","d":"out","at":2,"by":"bot","tk":"unknown"}')
    assert [e.text for e in await api_only.recent_history("c2", 2)] == [HOURS, None]


async def test_an_export_spells_the_words_out(parts: Parts) -> None:
    parts.store.phrases.learn([HOURS])
    await parts.store.phrases.publish()
    await parts.contact("c3", {"i:telegram:3": "1"})
    await parts.store.commit("c3", Changes(history=[reply(1, HOURS)]))
    held = await parts.privacy.export("c3")
    assert held is not None
    assert [(e["tx"], e["tk"]) for e in held["history"]] == [(HOURS, digest(HOURS))]
    parts.store.phrases.learn([HOURS, buttons_words(MENU)])
    await parts.store.phrases.publish()
    await parts.store.commit("c3", Changes(history=[reply(2, "Menu:", MENU)]))
    held = await parts.privacy.export("c3")
    assert held is not None
    assert held["history"][1]["btn"] == [b.model_dump() for b in MENU]


async def test_a_hub_stores_the_demo_bots_fixed_words_by_digest(hub: HubFactory, redis: Redis) -> None:
    async with small_hub(hub) as client:
        customer = Customer(client, "telegram", "4242")
        await customer.say("hello")
        [greeting] = await customer.replies()
        await customer.say("opening hours")
        [hours] = await customer.replies()
        items = await customer.history_until(lambda items: len(items) == 4)
        assert [items[1]["text"], items[3]["text"]] == [greeting["text"], hours["text"]]
        assert [b["title"] for b in items[1]["buttons"]] == ["Order status", "Delivery & hours", "Talk to a human"]
        rows = await stored(redis, await customer.contact_id())
        assert rows[1]["tx"].startswith("Hi, Sandbox!") and "bk" in rows[1] and "btn" not in rows[1]
        assert rows[3]["tk"] == digest(hours["text"]) and "tx" not in rows[3]
