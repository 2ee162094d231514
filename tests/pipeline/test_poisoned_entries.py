"""An entry that fails is retried in order, then dead-lettered; the contact's next message waits for it.

The failure comes from a dialog action that asks for a retry (tests.pipeline.flaky_actions), in a
real hub against the test Redis.
"""

from __future__ import annotations

import time
from pathlib import Path

from redis.asyncio import Redis

from bot.context import keys
from tests.conftest import HubFactory
from tests.pipeline.customer import PARTITIONS, Customer, small_hub

DIALOGS = Path(__file__).parent / "flaky_dialogs"


async def test_a_failing_entry_is_retried_and_the_next_message_waits_behind_it(hub: HubFactory) -> None:
    async with small_hub(hub, dialogs_dir=DIALOGS, pipeline__entry_attempts=5) as client:
        ada = Customer(client, "telegram", "610001")
        await ada.say("/start")
        await ada.replies(1)
        await ada.say("fail 2 a")  # fails twice, answered on the third try
        await ada.say("after")
        first, second = await ada.replies(2, wait=15)
        assert [first["text"], second["text"]] == ["echo fail 2 a", "echo after"]
        assert (await client.http.get("/api/v1/dead-letters")).json()["items"] == []


async def test_a_poisoned_entry_is_dead_lettered_then_the_contact_moves_on(hub: HubFactory, redis: Redis) -> None:
    async with small_hub(hub, dialogs_dir=DIALOGS, pipeline__entry_attempts=3) as client:
        bob = Customer(client, "telegram", "610002")
        await bob.say("/start")
        await bob.replies(1)
        started = time.monotonic()
        await bob.say("poison")
        await bob.say("next")
        [reply] = await bob.replies(1, wait=15)
        assert reply["text"] == "echo next"
        assert time.monotonic() - started > 1.0  # three tries with pauses between them, not at once
        [letter] = (await client.http.get("/api/v1/dead-letters")).json()["items"]
        assert letter["contact_id"] == await bob.contact_id()
        assert letter["attempts"] == 3 and "RetryLater" in letter["error"] and '"poison"' in letter["body"]
        for p in range(PARTITIONS):  # nothing left pending, and no attempt counter left behind
            assert (await redis.xpending(keys.inbound(p), keys.GROUP))["pending"] == 0
            assert await redis.hlen(keys.attempts(p)) == 0

        # put back, it fails its attempts again and comes back as a new letter; then drop it
        assert (await client.http.post(f"/api/v1/dead-letters/{letter['id']}/retry")).status_code == 202
        deadline = time.monotonic() + 15
        while not (items := (await client.http.get("/api/v1/dead-letters")).json()["items"]):
            assert time.monotonic() < deadline, "the requeued entry never came back as a dead letter"
        [again] = items
        assert again["id"] != letter["id"] and again["attempts"] == 3
        assert (await client.http.delete(f"/api/v1/dead-letters/{again['id']}")).status_code == 204
        assert (await client.http.get("/api/v1/dead-letters")).json()["items"] == []
        assert (await client.http.delete(f"/api/v1/dead-letters/{again['id']}")).status_code == 404
        assert (await client.http.post("/api/v1/dead-letters/nonsense/retry")).status_code == 422
        await bob.nothing_more()


async def test_an_unreadable_entry_is_dead_lettered_at_once(hub: HubFactory, redis: Redis) -> None:
    async with small_hub(hub, dialogs_dir=DIALOGS) as client:
        cleo = Customer(client, "telegram", "610003")
        await cleo.say("/start")
        await cleo.replies(1)
        cid = await cleo.contact_id()
        p = keys.partition_of(cid, PARTITIONS)
        await redis.xadd(keys.inbound(p), {"c": cid, "e": '{"kind": "message", "latitude": null}'})
        await cleo.say("still here")
        [reply] = await cleo.replies(1)
        assert reply["text"] == "echo still here"
        [letter] = (await client.http.get("/api/v1/dead-letters")).json()["items"]
        assert letter["attempts"] == 1 and "not an inbound event" in letter["error"]
