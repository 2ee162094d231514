"""Kill a worker with SIGKILL in the middle of a stream of messages.

Real processes (`omnihub api` + 2 x `omnihub worker`), real Redis, Telegram through the emulator.
Every accepted message must be answered, in order per conversation, and exactly once — except the
replies that were in flight to the provider inside the killed process, which the hub sends again
because no provider can tell it whether they arrived (see docs/architecture.md, "Nothing doubled").
The sender acknowledges each message with its outcome, so that is at most one reply per conversation
of the killed worker's partitions, and one of those pending on its outbound streams at the kill.
"""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import time
from pathlib import Path

import httpx
import pytest
from redis.asyncio import Redis

from bot.context import keys
from bot.sandbox.client import SandboxClient
from tests.pipeline.processes import split_hub

pytestmark = pytest.mark.slow
USERS = [str(500_000 + i) for i in range(16)]
ROUNDS = 30
PARTITIONS = 8


async def test_sigkill_worker_mid_stream(redis: Redis, redis_url: str, tmp_path: Path) -> None:
    config = tmp_path / "omnihub.yaml"
    config.write_text(f"pipeline: {{partitions: {PARTITIONS}, lease_seconds: 1, batch: 16}}\n")
    async with split_hub(redis, redis_url, config, PARTITIONS) as hub:
        victim = hub.victim
        async with httpx.AsyncClient(base_url=hub.url, timeout=30) as http:
            client = SandboxClient(http)
            await asyncio.gather(*(client.send("telegram", u, "/start") for u in USERS))
            in_doubt: set[str] = set()
            killed_partitions: set[int] = set()
            for round_ in range(ROUNDS):
                answers = await asyncio.gather(*(client.send("telegram", u, f"{u}-{round_}") for u in USERS))
                assert all(a["status"] == 200 for a in answers)
                if round_ == ROUNDS // 3:
                    in_doubt, killed_partitions = await kill_and_list_in_doubt(redis, victim)
                await asyncio.sleep(0.02)
            received = {u: await wait_for(client, u, ROUNDS + 1) for u in USERS}
        assert victim.wait(5) == -signal.SIGKILL
        for user, texts in received.items():
            expected = ["echo"] + [f"echo {user}-{r}" for r in range(ROUNDS)]
            deduplicated = [t for i, t in enumerate(texts) if i == 0 or t != texts[i - 1] or t not in in_doubt]
            assert deduplicated == expected, f"conversation {user}: {texts}"
            doubled = len(texts) - len(deduplicated)
            cid = await redis.get(keys.identity("telegram", user))
            in_flight = 1 if keys.partition_of(cid, PARTITIONS) in killed_partitions else 0
            assert doubled <= in_flight, f"conversation {user} got {doubled} replies twice: {texts}"
        for p in range(PARTITIONS):  # the survivor took every partition, and nothing is left pending
            assert await redis.get(keys.lease(p)) is not None
            assert (await redis.xpending(keys.inbound(p), keys.GROUP))["pending"] == 0
            assert (await redis.xpending(keys.outbound(p), keys.GROUP))["pending"] == 0


async def kill_and_list_in_doubt(redis: Redis, victim: subprocess.Popen[bytes]) -> tuple[set[str], set[int]]:
    """SIGKILL the worker; return the texts of replies it had taken from its outbound streams (and not
    yet acknowledged), and its partitions."""
    owner_of = {p: await redis.get(keys.lease(p)) for p in range(PARTITIONS)}
    victim.send_signal(signal.SIGKILL)
    victim.wait(5)
    victim_id = next(o for o in owner_of.values() if o and o.split(":")[1] == str(victim.pid))
    texts: set[str] = set()
    killed = {p for p, owner in owner_of.items() if owner == victim_id}
    for p in killed:
        for entry in await redis.xpending_range(keys.outbound(p), keys.GROUP, min="-", max="+", count=10_000):
            for _, fields in await redis.xrange(keys.outbound(p), entry["message_id"], entry["message_id"]):
                texts.add(json.loads(fields["m"])["reply"]["text"])
    return texts, killed


async def wait_for(client: SandboxClient, user: str, count: int) -> list[str]:
    deadline = time.monotonic() + 30
    texts: list[str] = []
    while time.monotonic() < deadline:
        texts = [m["text"] for m in await client.replies("telegram", user)]
        if len(texts) >= count:
            await asyncio.sleep(0.5)  # a late duplicate would show up now
            return [m["text"] for m in await client.replies("telegram", user)]
        await asyncio.sleep(0.1)
    raise AssertionError(f"conversation {user} got {len(texts)} of {count} replies: {texts}")
