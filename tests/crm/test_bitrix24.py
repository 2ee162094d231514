"""The Bitrix24 sink against the Bitrix24 emulator on a real loopback port, with the test Redis.

Events are built as the hub builds them (`CloudEvent.of`); what reached the "portal" is read back from
the emulator's state, request by request.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from redis.asyncio import Redis

from bot.context.history import HistoryEntry
from bot.context.store import Changes, ContextStore
from bot.crm.bitrix24 import Bitrix24Settings, Bitrix24Sink, mapping_key, php_query, transcript
from bot.crm.events import (
    CloudEvent,
    ConsentChanged,
    ContactCreated,
    ContactData,
    ContactErased,
    ContactUpdated,
    ConversationResolved,
    EventData,
    HandoffRequested,
    Identity,
)
from bot.crm.sinks import Reject, Retry
from bot.redis_server import free_port
from bot.sandbox.bitrix24_api import Bitrix24Emulator, create_bitrix24_emulator, php_parse
from bot.sandbox.emulator_kit import Fault, serve
from tests.conftest import PAYLOADS

CODE = "x7k2sandbox"
PHONE = "+79161234567"
RECORDED = PAYLOADS / "bitrix24"


@dataclass
class Portal:
    url: str  # the emulator's base URL
    emulator: Bitrix24Emulator
    redis: Redis
    store: ContextStore

    def sink(self, code: str = CODE, **settings: Any) -> Bitrix24Sink:
        config = Bitrix24Settings(enabled=True, webhook_url=f"{self.url}/rest/1/{code}/", **settings)
        return Bitrix24Sink(self.redis, self.store, config)

    def methods(self) -> list[str]:
        return [r["method"] for r in self.emulator.requests]


@contextlib.asynccontextmanager
async def running(redis: Redis, **emulator: Any) -> AsyncIterator[Portal]:
    app = create_bitrix24_emulator("1", CODE, **emulator)
    async with serve(app) as url:
        yield Portal(url, app.state.emulator, redis, ContextStore(redis))


@pytest.fixture
async def portal(redis: Redis) -> AsyncIterator[Portal]:
    async with running(redis) as started:
        yield started


@pytest.fixture
async def sink(portal: Portal) -> AsyncIterator[Bitrix24Sink]:
    made = portal.sink()
    yield made
    await made.aclose()


def event(data: EventData, cid: str = "c1", cause: str = "1") -> CloudEvent:
    return CloudEvent.of(data, subject=cid, cause=cause)


def contact(cid: str = "c1", **fields: Any) -> ContactData:
    defaults: dict[str, Any] = {
        "name": "Anna", "phone": PHONE, "language": "ru",
        "identities": [Identity(channel="telegram", id="5551234"), Identity(channel="whatsapp", id=PHONE)],
        "consent": {"telegram": {"service": "in"}, "sms": {"marketing": "out"}},
    }
    return ContactData(id=cid, **(defaults | fields))


def created(cid: str = "c1", **fields: Any) -> CloudEvent:
    return event(ContactCreated(contact=contact(cid, **fields)), cid, cause=f"in-{cid}")


# --- contacts ---------------------------------------------------------------------------------------

async def test_a_contact_is_created_once_with_its_fields_even_when_delivered_twice(
        portal: Portal, sink: Bitrix24Sink) -> None:
    first = created()
    await sink.deliver(first)
    await sink.deliver(first)  # a retry after a crash

    [record] = portal.emulator.contacts.values()
    assert record["NAME"] == "Anna"
    assert [(p["VALUE"], p["VALUE_TYPE"]) for p in record["PHONE"]] == [(PHONE, "MOBILE")]  # WhatsApp is this phone
    assert [(i["VALUE"], i["VALUE_TYPE"]) for i in record["IM"]] == [("5551234", "TELEGRAM")]
    assert record["UF_CRM_OMNIHUB_CONSENT"] == "sms marketing: out; telegram service: in"
    assert record["UF_CRM_OMNIHUB_LANG"] == "ru"
    assert record["ORIGINATOR_ID"] == "omnihub" and record["ORIGIN_ID"] == "c1"
    assert await portal.redis.hget(mapping_key("c1"), "id") == record["ID"]
    assert portal.methods() == ["crm.duplicate.findbycomm", "crm.contact.add", "crm.contact.update"]


async def test_a_contact_already_in_the_portal_is_found_by_phone_and_not_duplicated(
        portal: Portal, sink: Bitrix24Sink) -> None:
    await sink.deliver(created())
    await portal.redis.delete(mapping_key("c1"))  # a second hub, or its Redis lost: our mapping is gone
    await sink.deliver(event(ContactUpdated(contact=contact(name="Anna K."), changed=["name"]), cause="2"))
    await sink.deliver(created("c2", name="Anna (WhatsApp)", identities=[]))  # another of ours, same phone

    [record] = portal.emulator.contacts.values()
    assert record["NAME"] == "Anna (WhatsApp)"
    assert len(record["PHONE"]) == 1 and len(record["IM"]) == 1  # what it held was read, not added again
    assert await portal.redis.hget(mapping_key("c2"), "id") == record["ID"]
    assert portal.methods().count("crm.contact.add") == 1


async def test_of_duplicates_already_in_the_portal_the_oldest_is_used(portal: Portal, sink: Bitrix24Sink) -> None:
    async with httpx.AsyncClient(base_url=f"{portal.url}/rest/1/{CODE}/") as api:  # a manager's two records
        for name in ("Anna", "Anna again"):
            phone = [{"VALUE": "+7 916 123-45-67", "VALUE_TYPE": "WORK"}]  # as typed by hand
            await api.post("crm.contact.add.json", json={"fields": {"NAME": name, "PHONE": phone}})
    await sink.deliver(created())

    assert await portal.redis.hget(mapping_key("c1"), "id") == "1"
    assert len(portal.emulator.contacts) == 2 and portal.emulator.contacts[2]["NAME"] == "Anna again"
    assert len(portal.emulator.contacts[1]["PHONE"]) == 1  # the same number, however it is written


async def test_an_update_changes_the_contact_and_adds_only_new_phones_and_messengers(
        portal: Portal, sink: Bitrix24Sink) -> None:
    await sink.deliver(created())
    identities = [Identity(channel="telegram", id="5551234"), Identity(channel="viber", id="vb01=="),
                  Identity(channel="sms", id="+79160000001")]
    changed = contact(name="Anna Petrova", language="en", identities=identities)
    await sink.deliver(event(ContactUpdated(contact=changed, changed=["name", "identities"]), cause="2"))

    [record] = portal.emulator.contacts.values()
    assert record["NAME"] == "Anna Petrova" and record["UF_CRM_OMNIHUB_LANG"] == "en"
    assert [p["VALUE"] for p in record["PHONE"]] == [PHONE, "+79160000001"]
    assert [(i["VALUE_TYPE"], i["VALUE"]) for i in record["IM"]] == [("TELEGRAM", "5551234"), ("VIBER", "vb01==")]


async def test_a_contact_deleted_in_the_portal_is_added_again(portal: Portal, sink: Bitrix24Sink) -> None:
    await sink.deliver(created())
    portal.emulator.contacts.clear()  # a manager deleted it
    await sink.deliver(event(ContactUpdated(contact=contact(name="Anna"), changed=["name"]), cause="2"))

    [record] = portal.emulator.contacts.values()
    assert await portal.redis.hget(mapping_key("c1"), "id") == record["ID"]


async def test_erasure_forgets_the_mapping_and_leaves_the_portal_alone(portal: Portal, sink: Bitrix24Sink) -> None:
    await sink.deliver(created())
    await sink.deliver(created("c0", phone="+79160000009", identities=[]))  # merged into c1 later
    await sink.deliver(event(ContactErased(contact_id="c1", absorbed=["c0"]), cause="erase"))

    assert not await portal.redis.exists(mapping_key("c1"), mapping_key("c0"))
    assert len(portal.emulator.contacts) == 2
    assert portal.methods()[-1] != "crm.contact.delete"


# --- conversations ----------------------------------------------------------------------------------

async def test_a_handoff_makes_one_lead_per_event_for_a_contact_known_only_to_our_store(
        portal: Portal, sink: Bitrix24Sink) -> None:
    await portal.store.commit("c9", Changes(profile={"name": "Boris", "phone": "+79990001122", "lang": "en"}))
    handoff = event(HandoffRequested(conversation_id="c9-1700000000000-0", contact_id="c9", channel="viber",
                                     team="sales", reason="asked for a person"), "c9", cause="h1")
    await sink.deliver(handoff)
    await sink.deliver(handoff)

    [lead] = portal.emulator.leads.values()
    [person] = portal.emulator.contacts.values()
    assert person["NAME"] == "Boris" and person["PHONE"][0]["VALUE"] == "+79990001122"
    assert lead["CONTACT_ID"] == int(person["ID"])
    assert "viber" in lead["TITLE"] and "asked for a person" in lead["TITLE"]
    assert lead["SOURCE_ID"] == "OMNIHUB"
    assert "Team: sales" in lead["COMMENTS"] and "c9-1700000000000-0" in lead["COMMENTS"]

    again = event(HandoffRequested(conversation_id="c9-1700000000000-0", contact_id="c9", channel="viber"),
                  "c9", cause="h2")  # the same conversation handed off a second time: a new event
    await sink.deliver(again)
    assert len(portal.emulator.leads) == 2


def entry(entry_id: str, at: float, direction: str, author: str, text: str, **more: Any) -> HistoryEntry:
    return HistoryEntry.model_validate({"id": entry_id, "ch": "telegram", "d": direction, "at": at, "by": author,
                                        "tx": text, **more})


async def test_a_resolved_conversation_becomes_a_timeline_comment_with_its_messages(
        portal: Portal, sink: Bitrix24Sink) -> None:
    start = 1_700_000_000_000  # ms: the stream entry id of the conversation's first message
    history = [
        entry("1699999000000-0", 1_699_999_000.1, "in", "customer", "an older conversation"),
        entry(f"{start}-0", 1_700_000_000.2, "in", "customer", "Where is my order?"),
        entry("m1", 1_700_000_001.0, "out", "bot", "Let me find a person"),
        entry("n1", 1_700_000_002.0, "note", "agent", "VIP, be nice", ag="a7"),
        entry("m2", 1_700_000_003.0, "out", "agent", "It ships today", ag="a7"),
        entry("1700000100000-0", 1_700_000_100.0, "in", "customer", "after it was resolved"),
    ]
    await portal.store.commit("c1", Changes(history=history))
    await sink.deliver(created())
    resolved = CloudEvent.of(ConversationResolved(conversation_id=f"c1-{start}-0", contact_id="c1", agent_id="a7",
                                                  channel="telegram"), subject="c1", cause="r1",
                             at=1_700_000_050.0)
    await sink.deliver(resolved)
    await sink.deliver(resolved)

    [comment] = portal.emulator.comments.values()
    [person] = portal.emulator.contacts.values()
    assert comment["ENTITY_TYPE"] == "contact" and comment["ENTITY_ID"] == int(person["ID"])
    assert comment["COMMENT"].splitlines()[1:] == [
        "2023-11-14 22:13:20 · customer: Where is my order?",
        "2023-11-14 22:13:21 · bot: Let me find a person",
        "2023-11-14 22:13:23 · agent a7: It ships today",
    ]
    assert "c1-1700000000000-0" in comment["COMMENT"].splitlines()[0]


async def test_a_long_conversation_is_read_page_by_page(portal: Portal, sink: Bitrix24Sink) -> None:
    history = [entry(f"m{i}", 1_700_000_000.0 + i, "in", "customer", f"message {i}") for i in range(150)]
    await portal.store.commit("c1", Changes(history=history))
    await sink.deliver(created())
    await sink.deliver(CloudEvent.of(ConversationResolved(conversation_id="c1-1700000000000-0", contact_id="c1",
                                                          agent_id="a1"), subject="c1", cause="r", at=1_700_001_000))

    [comment] = portal.emulator.comments.values()
    lines = comment["COMMENT"].splitlines()[1:]
    assert len(lines) == 150 and lines[-1].endswith("customer: message 149")


def test_the_transcript_leaves_out_notes_and_other_conversations() -> None:
    entries = [entry("5-0", 4.0, "in", "customer", "before"), entry("6-0", 6.0, "note", "agent", "secret"),
               entry("7-0", 7.0, "in", "customer", "", pl="yes")]
    assert transcript(entries, "c1-6000-0", until=10.0) == ["1970-01-01 00:00:07 · customer: [button yes]"]


async def test_a_consent_change_is_one_batch_setting_the_field_and_noting_why(
        portal: Portal, sink: Bitrix24Sink) -> None:
    await sink.deliver(created())
    change = event(ConsentChanged(contact_id="c1", channel="telegram", purpose="marketing", state="in",
                                  source="keyword"), cause="k1")
    await sink.deliver(change)
    await sink.deliver(change)

    [record] = portal.emulator.contacts.values()
    assert record["UF_CRM_OMNIHUB_CONSENT"] == "sms marketing: out; telegram marketing: in; telegram service: in"
    [comment] = portal.emulator.comments.values()
    assert "marketing" in comment["COMMENT"] and "keyword" in comment["COMMENT"]
    assert portal.methods()[-1] == "batch" and portal.methods().count("batch") == 1


# --- failures and limits ----------------------------------------------------------------------------

async def test_query_limit_exceeded_is_a_retry_and_holds_back_every_process(portal: Portal) -> None:
    one, other = portal.sink(limit_pause=0.6), portal.sink(limit_pause=0.6)  # two processes, one Redis
    portal.emulator.faults.add(Fault(status=503))
    with pytest.raises(Retry) as refused:
        await one.deliver(created())
    assert refused.value.after == pytest.approx(0.6)

    began = time.monotonic()
    await other.deliver(created())  # the other process waits for the pause, then goes
    assert time.monotonic() - began >= 0.5
    assert len(portal.emulator.contacts) == 1
    await one.aclose()
    await other.aclose()


async def test_the_governor_keeps_all_processes_within_the_portals_rate_and_burst(redis: Redis) -> None:
    rate, burst = 5.0, 5
    # one request of slack on the portal's side: the hub takes its tokens a few ms before the portal
    # counts the requests, and that jitter is not what this test is about
    async with running(redis, rate=rate, threshold=burst + 1) as portal:
        async with httpx.AsyncClient() as raw:  # the emulator enforces the limit: ungoverned, a burst fails
            answers = await asyncio.gather(*(raw.post(f"{portal.url}/rest/1/{CODE}/crm.contact.get.json",
                                                      json={"id": 1}) for _ in range(burst + 4)))
        assert any(a.status_code == 503 and a.json()["error"] == "QUERY_LIMIT_EXCEEDED" for a in answers)
        await asyncio.sleep(burst / rate + 0.2)  # let the portal's counter drain
        portal.emulator.requests.clear()

        sinks = [portal.sink(rate=rate, burst=burst) for _ in range(3)]
        await sinks[0].deliver(created())
        handoffs = [event(HandoffRequested(conversation_id="c1-1-0", contact_id="c1"), cause=f"h{i}")
                    for i in range(20)]
        await asyncio.gather(*(sinks[i % 3].deliver(h) for i, h in enumerate(handoffs)))

        times = [r["at"] for r in portal.emulator.requests]
        assert {r["status"] for r in portal.emulator.requests} == {200}
        assert len(portal.emulator.leads) == 20
        for i, first in enumerate(times):  # in any window: at most the burst plus what drained meanwhile
            inside = [t for t in times[i:] if t - first <= 1.0]
            assert len(inside) <= burst + rate * 1.0 + 1
        assert times[-1] - times[0] >= (len(times) - burst) / rate - 0.1
        for made in sinks:
            await made.aclose()


async def test_a_wrong_webhook_code_is_a_loud_retry_not_a_crash(portal: Portal, caplog: pytest.LogCaptureFixture
                                                                ) -> None:
    wrong = portal.sink(code="not-the-code")
    with caplog.at_level(logging.ERROR, "bot.crm.bitrix24"), pytest.raises(Retry) as refused:
        await wrong.deliver(created())
    assert "NO_AUTH_FOUND" in str(refused.value)
    assert "BITRIX24_WEBHOOK_URL" in caplog.text and "not-the-code" not in caplog.text
    assert portal.emulator.contacts == {}
    await wrong.aclose()


@pytest.mark.parametrize(("status", "outcome"), [(500, Retry), (403, Retry), (429, Retry), (400, Reject)])
async def test_errors_map_to_retry_or_reject(portal: Portal, sink: Bitrix24Sink, status: int,
                                             outcome: type[Exception]) -> None:
    portal.emulator.faults.add(Fault(status=status))
    with pytest.raises(outcome):
        await sink.deliver(created())


async def test_a_portal_that_is_down_or_silent_is_a_retry(portal: Portal) -> None:
    held: list[asyncio.StreamWriter] = []

    async def hold(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)  # accepts, never answers

    silent = await asyncio.start_server(hold, "127.0.0.1", 0)
    port = silent.sockets[0].getsockname()[1]
    for url, why in ((f"http://127.0.0.1:{free_port()}/rest/1/x/", "ConnectError"),
                     (f"http://127.0.0.1:{port}/rest/1/x/", "no answer")):
        settings = Bitrix24Settings(enabled=True, webhook_url=url, timeout=0.3)
        down = Bitrix24Sink(portal.redis, portal.store, settings)
        with pytest.raises(Retry, match=why):
            await down.deliver(created())
        await down.aclose()
    for writer in held:
        writer.close()
        await writer.wait_closed()
    silent.close()
    await silent.wait_closed()


def test_settings_refuse_a_url_that_is_not_a_webhook() -> None:
    with pytest.raises(ValueError, match="BITRIX24_WEBHOOK_URL"):
        Bitrix24Settings(enabled=True, webhook_url="https://portal.bitrix24.ru/rest/")
    assert not Bitrix24Settings(enabled=True).active  # no URL: the adapter stays off
    assert not Bitrix24Settings(enabled=False, webhook_url="https://p.bitrix24.ru/rest/1/abc").active
    assert Bitrix24Settings(webhook_url="https://p.bitrix24.ru/rest/1/abc").endpoint() == "https://p.bitrix24.ru/rest/1/abc/"


# --- the emulator against the recorded shapes -------------------------------------------------------

def recorded(method: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((RECORDED / f"{method}.json").read_text())
    return data


@pytest.mark.parametrize("method", ["crm.contact.add", "crm.contact.update", "crm.contact.get",
                                    "crm.duplicate.findbycomm", "crm.lead.add", "crm.timeline.comment.add"])
async def test_the_emulator_answers_the_documented_request_in_the_documented_shape(portal: Portal,
                                                                                    method: str) -> None:
    doc = recorded(method)
    async with httpx.AsyncClient(base_url=f"{portal.url}/rest/1/{CODE}/") as api:
        made = await api.post("crm.contact.add", json={"fields": {"NAME": "x", "PHONE": [{"VALUE": "8976543"}]}})
        request = dict(doc["request"])
        if "id" in request:
            request["id"] = made.json()["result"]
        if method == "crm.timeline.comment.add":
            request["fields"] = {**request["fields"], "ENTITY_TYPE": "contact", "ENTITY_ID": made.json()["result"]}
        answer = await api.post(f"{method}.json", json=request)
    expected = doc["response"]["body"]
    assert answer.status_code == doc["response"]["status"]
    body = answer.json()
    assert type(body["result"]) is type(expected["result"])
    assert set(body["time"]) >= {"start", "finish", "duration", "date_start", "date_finish"}
    if isinstance(expected["result"], dict):
        assert set(expected["result"]) & set(body["result"])


async def test_the_emulators_batch_and_errors_have_the_documented_shapes(portal: Portal) -> None:
    async with httpx.AsyncClient(base_url=f"{portal.url}/rest/1/{CODE}/") as api:
        cmd = {"add": "crm.contact.add?" + php_query({"fields": {"NAME": "Ann", "PHONE": [{"VALUE": "+1 555"}]}}),
               "get": "crm.contact.get?id=$result[add]", "bad": "crm.contact.get?id=999"}
        answer = (await api.post("batch", json={"halt": 0, "cmd": cmd})).json()
        form = await api.post("crm.contact.update", data={"id": "1", "fields[NAME]": "Form"})
        wrong = await api.post(f"{portal.url}/rest/1/nope/crm.contact.get.json", json={"id": 1})
    documented = recorded("batch")["response"]["body"]
    assert set(answer) == set(documented) and set(answer["result"]) == set(documented["result"])
    assert answer["result"]["result"]["get"]["NAME"] == "Ann"
    assert answer["result"]["result_error"]["bad"] == {"error": "", "error_description": "Not found"}
    assert form.json()["result"] is True and portal.emulator.contacts[1]["NAME"] == "Form"
    no_auth = next(e for e in recorded("errors")["errors"] if e["body"]["error"] == "NO_AUTH_FOUND")
    assert (wrong.status_code, wrong.json()) == (no_auth["status"], no_auth["body"])


def test_batch_commands_are_encoded_as_php_reads_them() -> None:
    params = {"id": 7, "fields": {"NAME": "A & B", "PHONE": [{"VALUE": "+7 916", "VALUE_TYPE": "MOBILE"}],
                                  "COMMENTS": "line 1\nline 2 · ok"}}
    assert php_parse(php_query(params)) == {"id": "7", "fields": {
        "NAME": "A & B", "PHONE": [{"VALUE": "+7 916", "VALUE_TYPE": "MOBILE"}], "COMMENTS": "line 1\nline 2 · ok"}}
    assert php_query({"a": [1, 2]}) == "a%5B0%5D=1&a%5B1%5D=2"

