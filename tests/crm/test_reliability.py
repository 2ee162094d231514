"""The feed under faults, with real processes (`omnihub api` + 2 × `omnihub worker`) and real Redis.

The receiver is down while customers write and a worker is SIGKILLed mid-stream; when the receiver
comes back, every event emitted reaches it — as many distinct webhook-ids as events in the feed, none
missing, none invented — in the order each contact's events were emitted. A second receiver that
answers 500 for good gets every event dead-lettered after the schedule, and a replay delivers them.
"""

from __future__ import annotations

import asyncio
import subprocess
import time
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from redis.asyncio import Redis

from bot.context import keys
from bot.crm.events import CloudEvent
from bot.crm.subscriptions import new_secret
from bot.redis_server import free_port
from bot.sandbox.client import SandboxClient
from tests.crm.receiver import Receiver, receiving
from tests.pipeline.processes import hub_env, log_tail, split_hub, start

pytestmark = pytest.mark.slow
PARTITIONS = 8
USERS = [str(720_000 + i) for i in range(12)]
ROUNDS = 12


async def emitted(redis: Redis) -> dict[str, list[str]]:
    """Contact id -> its events' ids in the order they were appended (replay copies left out)."""
    order: dict[str, list[str]] = defaultdict(list)
    for p in range(PARTITIONS):
        for _, fields in await redis.xrange(keys.events(p)):
            if fields and "only" not in fields:
                event = CloudEvent.read(fields["e"])
                order[event.subject].append(event.id)
    return order


def first_arrivals(receiver: Receiver) -> dict[str, list[str]]:
    order: dict[str, list[str]] = defaultdict(list)
    for event in receiver.events:
        if event["id"] not in order[event["subject"]]:
            order[event["subject"]].append(event["id"])
    return order


async def test_receiver_down_and_a_worker_killed_lose_nothing_and_keep_each_contacts_order(
        redis: Redis, redis_url: str, tmp_path: Path) -> None:
    config = tmp_path / "omnihub.yaml"
    config.write_text(f"pipeline: {{partitions: {PARTITIONS}, lease_seconds: 1, batch: 16}}\n"
                      f"crm: {{retry_schedule_seconds: [{', '.join(['0'] + ['0.5'] * 300)}]}}\n")
    crm = Receiver(new_secret())
    async with split_hub(redis, redis_url, config, PARTITIONS) as hub:
        async with httpx.AsyncClient(base_url=hub.url, timeout=30) as http:
            client = SandboxClient(http)
            made = await http.post("/api/v1/webhooks", json={"url": crm.url, "secret": crm.secret})
            assert made.status_code == 201, made.text
            for round_ in range(ROUNDS):  # the receiver is down all along
                answers = await asyncio.gather(*(client.send("telegram", u, f"{u}-{round_}") for u in USERS))
                assert all(a["status"] == 200 for a in answers)
                if round_ == ROUNDS // 2:
                    await hub.kill_victim()
                await asyncio.sleep(0.05)
            await settled(redis)
            async with receiving(crm):
                expected = await emitted(redis)
                total = sum(len(ids) for ids in expected.values())
                every = [i for ids in expected.values() for i in ids]
                assert len(every) == len(set(every)), f"an event is in the feed twice: {await doubled(redis)}"
                assert total >= len(USERS) * ROUNDS * 2  # at least received + sent per message
                deadline = time.monotonic() + 60
                while len(set(crm.ids())) < total:
                    assert time.monotonic() < deadline, (f"{len(set(crm.ids()))} of {total} arrived; feed: "
                                                         f"{await feed_state(redis)}; {len(crm.attempts)} tries")
                    await asyncio.sleep(0.1)
                await asyncio.sleep(1.0)  # anything extra would come now
        assert crm.refused == []
        assert set(crm.ids()) == {i for ids in expected.values() for i in ids}
        assert first_arrivals(crm) == expected
        assert len(crm.ids()) - total <= 16  # redeliveries: only what the killed worker had delivered unacked


async def doubled(redis: Redis) -> list[str]:
    seen: dict[str, str] = {}
    twice = []
    for p in range(PARTITIONS):
        for entry_id, fields in await redis.xrange(keys.events(p)):
            event = CloudEvent.read(fields["e"])
            if event.id in seen:
                twice.append(f"{event.type} {event.data} at {seen[event.id]} and {p}/{entry_id}")
            seen[event.id] = f"{p}/{entry_id}"
    return twice


async def feed_state(redis: Redis) -> list[object]:
    return [[(p, g["name"], g["pending"], g.get("lag")) for p in range(PARTITIONS)
             for g in await redis.xinfo_groups(keys.events(p))],
            [await redis.xlen(keys.delivery_dead(p)) for p in range(PARTITIONS)],
            [await redis.hgetall(keys.delivery_counts(p)) for p in range(PARTITIONS)]]


async def settled(redis: Redis, wait: float = 30.0) -> None:
    """Every inbound and outbound entry finished (so the feed holds all it will hold)."""
    deadline = time.monotonic() + wait
    while True:
        busy = 0
        for p in range(PARTITIONS):
            for stream in (keys.inbound(p), keys.outbound(p)):
                if await redis.exists(stream):
                    busy += (await redis.xpending(stream, keys.GROUP))["pending"]
                    groups = await redis.xinfo_groups(stream)
                    busy += sum(int(g.get("lag") or 0) for g in groups)
        if busy == 0:
            return
        assert time.monotonic() < deadline, f"{busy} entries still unfinished"
        await asyncio.sleep(0.2)


async def test_a_receiver_failing_for_good_gets_dead_letters_that_a_replay_delivers(
        redis: Redis, redis_url: str, tmp_path: Path) -> None:
    config = tmp_path / "omnihub.yaml"
    config.write_text(f"pipeline: {{partitions: {PARTITIONS}, lease_seconds: 1}}\n"
                      "crm: {retry_schedule_seconds: [0, 0.2, 0.2]}\n")
    port = free_port()
    hub = start("run", hub_env(redis_url, port, config))
    crm = Receiver(new_secret(), status=500)
    try:
        await ready_one(f"http://127.0.0.1:{port}", hub)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as http, receiving(crm):
            client = SandboxClient(http)
            sub = (await http.post("/api/v1/webhooks", json={"url": crm.url, "secret": crm.secret,
                                                              "events": ["omnihub.message.received"]})).json()["id"]
            since = datetime.now(UTC) - timedelta(seconds=1)
            for n in range(10):
                assert (await client.send("telegram", f"73000{n}", f"hello {n}"))["status"] == 200
            deadline = time.monotonic() + 30
            while (dead := (await http.get(f"/api/v1/webhooks/{sub}/stats")).json()["dead"]) < 10:
                assert time.monotonic() < deadline, f"{dead} of 10 dead-lettered"
                await asyncio.sleep(0.1)
            assert crm.events == [] and len(crm.attempts) == 30  # three tries each, as the policy says
            crm.status = 200
            replayed = await http.post(f"/api/v1/webhooks/{sub}/replay", json={"since": since.isoformat()})
            assert replayed.json() == {"queued": 10}
            await crm.until(10)
        assert sorted(e["data"]["text"] for e in crm.events) == [f"hello {n}" for n in range(10)]
    finally:
        hub.terminate()
        hub.wait(10)


async def ready_one(url: str, hub: subprocess.Popen[bytes]) -> None:
    async with httpx.AsyncClient() as http:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            assert hub.poll() is None, log_tail(hub)
            try:
                if (await http.get(f"{url}/readyz")).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            await asyncio.sleep(0.1)
    raise AssertionError("the hub did not get ready")
