"""`omnihub dead list|retry|drop` against a Redis holding a dead letter, run as the command it is."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from redis.asyncio import Redis

from bot.context import keys
from bot.pipeline import dead_letters

ROOT = Path(__file__).resolve().parents[2]


def omnihub(redis_url: str | None, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "REDIS_URL"}
    if redis_url:
        env["REDIS_URL"] = redis_url
    return subprocess.run([sys.executable, "-m", "bot.cli", "dead", *args], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=60)


async def test_list_retry_and_drop(redis: Redis, redis_url: str) -> None:
    letter = dead_letters.DeadLetter.of("1-0", {"c": "c-ada", "e": '{"kind": "message"}'}, ValueError("bad"), 3)
    async with redis.pipeline(transaction=True) as pipe:
        dead_letters.stage(pipe, 2, letter)
        await pipe.execute()
    [(stream_id, _)] = await redis.xrange(keys.dead(2))
    letter_id = f"2:{stream_id}"

    listed = omnihub(redis_url, "list")
    assert listed.returncode == 0, listed.stderr
    assert letter_id in listed.stdout and "c-ada" in listed.stdout and "ValueError: bad" in listed.stdout

    assert omnihub(redis_url, "retry", letter_id).returncode == 0
    [(_, fields)] = await redis.xrange(keys.inbound(2))
    assert fields == {"c": "c-ada", "e": '{"kind": "message"}'}  # back on its partition, as it was
    assert await redis.xlen(keys.dead(2)) == 0

    missing = omnihub(redis_url, "drop", letter_id)
    assert missing.returncode == 2 and f"no dead letter '{letter_id}'" in missing.stderr
    bad = omnihub(redis_url, "retry", "nonsense")
    assert bad.returncode == 2 and "is not a dead-letter id" in bad.stderr
    unset = omnihub(None, "list")
    assert unset.returncode == 2 and "REDIS_URL" in unset.stderr
