"""The CRM feed end to end: a real hub, customers on the emulators, receivers that verify every
delivery with the `standardwebhooks` package. Every event of a whole conversation arrives once by
id and in order; filters, retries with Retry-After, dead letters and their redelivery, 410."""

from __future__ import annotations

import asyncio
import itertools
import time
from typing import Any

from redis.asyncio import Redis

from bot.crm.subscriptions import new_secret
from bot.handoff.agents import AgentStore
from bot.sandbox.client import SandboxClient
from tests.conftest import HubFactory
from tests.crm.receiver import Receiver, receiving
from tests.handoff.test_conversation_api import queued
from tests.pipeline.customer import Customer, small_hub

FAST_RETRIES = {"crm__retry_schedule_seconds": [0, 0.3, 0.3]}


async def subscribe(client: SandboxClient, receiver: Receiver, events: list[str] | None = None) -> str:
    created = await client.http.post("/api/v1/webhooks", json={"url": receiver.url, "secret": receiver.secret,
                                                               "events": events or ["*"]})
    assert created.status_code == 201, created.text
    return str(created.json()["id"])


async def test_a_whole_conversation_reaches_the_crm_once_by_id_and_in_order(hub: HubFactory, redis: Redis) -> None:
    anna = await AgentStore(redis).create("anna@example.com", "Anna", "correct horse battery")
    async with small_hub(hub) as client, receiving(Receiver(new_secret())) as crm:
        await subscribe(client, crm)
        kim = Customer(client, "telegram", "710001")
        await kim.say("hello")
        await kim.replies(1)
        await kim.say("talk to a human")
        await kim.replies(2)
        [conversation] = await queued(client)
        conv = conversation["id"]
        assert (await client.http.post(f"/api/v1/conversations/{conv}/assign", json={"agent_id": anna.id})).is_success
        sent = await client.http.post(f"/api/v1/conversations/{conv}/messages",
                                      json={"agent_id": anna.id, "text": "Anna here, how can I help?"})
        assert sent.status_code == 202
        await kim.replies(1)
        assert (await client.http.post(f"/api/v1/conversations/{conv}/resolve", json={"agent_id": anna.id})).is_success
        await kim.replies(1)  # the rating question
        await kim.say("5")
        await kim.replies(1)
        cid = await kim.contact_id()
        bought = await client.http.post(f"/api/v1/contacts/{cid}/conversions",
                                        json={"name": "order 1001", "amount": 49.9, "currency": "EUR"})
        assert bought.status_code == 201, bought.text
        await crm.until_type("omnihub.conversion.recorded")
        await asyncio.sleep(0.5)  # anything doubled would have come by now

    assert crm.refused == []
    assert len(crm.ids()) == len(set(crm.ids())), "an event came twice"
    mine = crm.types(cid)
    expected_in_order = [
        "omnihub.contact.created", "omnihub.conversation.started", "omnihub.message.received",
        "omnihub.message.sent", "omnihub.conversation.handoff_requested", "omnihub.conversation.assigned",
        "omnihub.conversation.resolved", "omnihub.csat.submitted", "omnihub.conversion.recorded",
    ]
    positions = [mine.index(t) for t in expected_in_order]
    assert positions == sorted(positions), mine
    received = [e for e in crm.events if e["type"] == "omnihub.message.received"]
    assert [e["data"]["text"] for e in received] == ["hello", "talk to a human", "5"]
    agent_said = [e for e in crm.events if e["type"] == "omnihub.message.sent" and e["data"]["author"] == "agent"]
    assert [(e["data"]["text"], e["data"]["agent_id"]) for e in agent_said] == [("Anna here, how can I help?", anna.id)]
    by_type = {e["type"]: e for e in crm.events}
    assert by_type["omnihub.conversation.assigned"]["data"]["agent_id"] == anna.id
    assert by_type["omnihub.csat.submitted"]["data"] == {"conversation_id": conv, "contact_id": cid, "score": 5,
                                                          "agent_id": anna.id}
    assert by_type["omnihub.conversion.recorded"]["data"]["conversation_id"] == conv
    for event in crm.events:
        assert (event["specversion"], event["source"], event["subject"]) == ("1.0", "/omnihub", cid)


async def test_a_filter_takes_only_its_types_and_a_second_receiver_gets_everything(hub: HubFactory) -> None:
    async with small_hub(hub) as client, receiving(Receiver(new_secret())) as picky, \
            receiving(Receiver(new_secret())) as everything:
        await subscribe(client, picky, ["omnihub.conversation.*", "omnihub.contact.created"])
        await subscribe(client, everything)
        lea = Customer(client, "viber", "viber-lea-1")
        await lea.say("talk to a human")
        await everything.until_type("omnihub.conversation.handoff_requested")
        await picky.until_type("omnihub.conversation.handoff_requested")
        await asyncio.sleep(0.3)
    assert set(picky.types()) == {"omnihub.contact.created", "omnihub.conversation.started",
                                  "omnihub.conversation.handoff_requested"}
    assert "omnihub.message.received" in everything.types()


async def test_a_failing_receiver_is_retried_after_its_retry_after_then_dead_lettered_and_redelivered(
        hub: HubFactory) -> None:
    async with small_hub(hub, **FAST_RETRIES) as client, receiving(Receiver(new_secret(), status=503,
                                                                             retry_after="1")) as crm:
        sub = await subscribe(client, crm, ["omnihub.contact.created"])
        await Customer(client, "telegram", "710002").say("hi")
        letters = await _until(lambda: _dead(client, sub), lambda items: len(items) == 1)
        times = [at for at, _ in crm.attempts]
        assert len(times) == 3  # the schedule: now, then two retries
        assert min(b - a for a, b in itertools.pairwise(times)) >= 0.95  # Retry-After: 1 beat 0.3 s
        assert letters[0]["attempts"] == 3 and "503" in letters[0]["error"]
        stats = (await client.http.get(f"/api/v1/webhooks/{sub}/stats")).json()
        assert (stats["dead"], stats["retried"], stats["delivered"]) == (1, 2, 0)

        crm.status = 200
        again = await client.http.post(f"/api/v1/webhooks/{sub}/dead-letters/{letters[0]['id']}/redeliver")
        assert again.status_code == 202
        [event] = await crm.until(1)
        assert event["id"] == letters[0]["event"]["id"]
        assert await _dead(client, sub) == []


async def test_410_disables_the_subscription_and_tells_the_others(hub: HubFactory) -> None:
    async with small_hub(hub) as client, receiving(Receiver(new_secret(), status=410)) as gone, \
            receiving(Receiver(new_secret())) as watcher:
        sub = await subscribe(client, gone)
        await subscribe(client, watcher, ["omnihub.webhook.disabled"])
        await Customer(client, "telegram", "710003").say("hi")
        disabled = await watcher.until_type("omnihub.webhook.disabled")
        assert disabled["data"]["subscription_id"] == sub and "410" in disabled["data"]["reason"]
        got = (await client.http.get(f"/api/v1/webhooks/{sub}")).json()
        assert got["status"] == "disabled" and "410" in got["disabled_reason"]
        await asyncio.sleep(1.5)  # every partition's reader looks at the subscriptions once a second
        tries = len(gone.attempts)
        await Customer(client, "telegram", "710004").say("hi")
        await asyncio.sleep(1.0)
        assert len(gone.attempts) == tries  # nothing more is sent to it


async def test_a_slow_receiver_does_not_slow_another_subscription(hub: HubFactory) -> None:
    """10 s an answer: the other subscription's five events all arrive within 4 s."""
    async with small_hub(hub, crm__timeout_seconds=30) as client, \
            receiving(Receiver(new_secret(), delay=10.0)) as slow, receiving(Receiver(new_secret())) as fast:
        await subscribe(client, slow, ["omnihub.message.received"])
        await subscribe(client, fast, ["omnihub.message.received"])
        started = time.monotonic()
        for n in range(5):
            await Customer(client, "telegram", f"71001{n}").say(f"message {n}")
        await fast.until(5, wait=4.0)
        assert time.monotonic() - started < 4.0 and slow.events == []


async def test_bad_subscriptions_are_refused_with_the_reason(hub: HubFactory) -> None:
    async with small_hub(hub) as client:
        for body, words in [({"url": "http://x", "secret": "nope"}, "whsec_"),
                            ({"url": "http://x", "secret": "whsec_!!!"}, "base64"),
                            ({"url": "http://x", "events": ["omnihub.nothing"]}, "unknown event types"),
                            ({"url": "ftp://x"}, "pattern")]:
            answer = await client.http.post("/api/v1/webhooks", json=body)
            assert answer.status_code == 422 and words in answer.text, (body, answer.text)
        made = await client.http.post("/api/v1/webhooks", json={"url": "http://127.0.0.1:9/hook"})
        assert made.status_code == 201 and made.json()["secret"].startswith("whsec_")
        listed = (await client.http.get("/api/v1/webhooks")).json()["items"]
        assert [s["secret"] for s in listed] == [None]  # shown once, when made


async def _dead(client: SandboxClient, sub: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = (await client.http.get(f"/api/v1/webhooks/{sub}/dead-letters")).json()["items"]
    return items


async def _until(probe: Any, done: Any, wait: float = 15.0) -> Any:
    deadline = time.monotonic() + wait
    while not done(value := await probe()):
        assert time.monotonic() < deadline, f"never got there: {value}"
        await asyncio.sleep(0.1)
    return value


async def test_a_subscription_failing_for_too_long_is_disabled_with_an_event(hub: HubFactory) -> None:
    """`disable_after_days` here is two seconds; every attempt answers 500."""
    async with small_hub(hub, crm__retry_schedule_seconds=[0] + [0.5] * 20, crm__disable_after_days=2 / 86400) \
            as client, receiving(Receiver(new_secret(), status=500)) as failing, \
            receiving(Receiver(new_secret())) as watcher:
        sub = await subscribe(client, failing)
        await subscribe(client, watcher, ["omnihub.webhook.disabled"])
        await Customer(client, "telegram", "710020").say("hi")
        disabled = await watcher.until_type("omnihub.webhook.disabled", wait=15)
        assert disabled["data"]["subscription_id"] == sub and "failing since" in disabled["data"]["reason"]
        assert (await client.http.get(f"/api/v1/webhooks/{sub}")).json()["status"] == "disabled"
