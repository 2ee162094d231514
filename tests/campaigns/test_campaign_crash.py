"""A campaign through real processes (`omnihub api` + 2 × `omnihub worker`) while one worker is
SIGKILLed: every recipient gets the step, none twice — except a message that was on its way to the
provider inside the killed process, which no provider can say it received (docs/architecture.md,
"Nothing doubled") — and the SMS sender's rate limit, shared by both workers in Redis, is never
exceeded: the emulator's own clock counts the sends of every one-second window."""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from pathlib import Path

import httpx
import pytest
from redis.asyncio import Redis

from bot.context import keys
from tests.pipeline.processes import split_hub

PARTITIONS = 8

pytestmark = pytest.mark.slow
RECIPIENTS = 60
RATE, BURST = 20, 5


async def in_flight(redis: Redis, owner: str) -> set[str]:
    """Phones whose campaign SMS the killed worker had read from its bulk lanes and not acknowledged."""
    phones: set[str] = set()
    for p in range(PARTITIONS):
        if await redis.get(keys.lease(p)) != owner:  # its leases outlive it by up to a second
            continue
        for entry in await redis.xpending_range(keys.bulk(p), keys.GROUP, min="-", max="+", count=1000):
            for _, fields in await redis.xrange(keys.bulk(p), entry["message_id"], entry["message_id"]):
                phones.add(json.loads(fields["m"])["user_id"])
    return phones


async def test_a_killed_worker_neither_doubles_nor_drops_a_step_and_the_rate_holds(
        redis: Redis, redis_url: str, tmp_path: Path) -> None:
    config = tmp_path / "omnihub.yaml"
    config.write_text(f"pipeline: {{partitions: {PARTITIONS}, lease_seconds: 1, rate_limits: {{sandbox: true, "
                      f"per_sender: {{sms: {{per_second: {RATE}, burst: {BURST}}}}}, bulk_reserve: 0}}}}\n")
    phones = [f"+7999777{n:04d}" for n in range(RECIPIENTS)]
    async with split_hub(redis, redis_url, config, PARTITIONS) as hub:
        async with httpx.AsyncClient(base_url=hub.url, timeout=30) as http:
            items = [{"phone": phone, "add_tags": ["crash-campaign"]} for phone in phones]
            made = await http.post("/api/v1/contacts/batch", json={"items": items})
            assert made.status_code == 200 and not [i for i in made.json()["items"] if i["error"]], made.text
            campaign = (await http.post("/api/v1/campaigns", json={
                "name": "crash", "purpose": "service", "audience": {"tags": ["crash-campaign"]},
                "steps": [{"channel": "sms", "text": "your parcel is on its way", "until": "sent",
                           "within": 60}]})).json()["id"]
            owners = {p: await redis.get(keys.lease(p)) for p in range(PARTITIONS)}
            victim_id = next(o for o in owners.values() if o and o.split(":")[1] == str(hub.victim.pid))
            assert (await http.post(f"/api/v1/campaigns/{campaign}/start")).status_code == 202
            await asyncio.sleep(1.0)  # mid-campaign: at 20/s, about half has gone out
            await hub.kill_victim()
            doubtful = await in_flight(redis, victim_id)  # still pending: nobody took the leases yet
            deadline = time.monotonic() + 40
            while True:
                sent = (await http.get("/emulator/twilio/_/outbox", params={"after": 0})).json()["items"]
                campaign_sms = [m for m in sent if m["text"] == "your parcel is on its way"]
                if len({m["user_id"] for m in campaign_sms}) == RECIPIENTS:
                    break
                assert time.monotonic() < deadline, f"{len(campaign_sms)} of {RECIPIENTS} sent"
                await asyncio.sleep(0.2)
            await asyncio.sleep(1.0)  # a late duplicate would come now
            sent = (await http.get("/emulator/twilio/_/outbox", params={"after": 0})).json()["items"]
        campaign_sms = [m for m in sent if m["text"] == "your parcel is on its way"]
        per_phone = Counter(m["user_id"] for m in campaign_sms)
        assert set(per_phone) == set(phones)
        twice = {phone for phone, n in per_phone.items() if n > 1}
        assert twice <= doubtful and all(n <= 2 for n in per_phone.values()), (twice, doubtful)
        times = sorted(m["at"] for m in campaign_sms)
        busiest = max(sum(1 for t in times if start_ <= t < start_ + 1.0) for start_ in times)
        assert busiest <= RATE + BURST, f"{busiest} SMS in one second; the limit is {RATE}/s, burst {BURST}"
