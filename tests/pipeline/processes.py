"""Hub processes for the tests that kill or starve them: `omnihub <role>` with a clean environment."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx
from redis.asyncio import Redis

from bot.context import keys
from bot.redis_server import free_port

ROOT = Path(__file__).resolve().parents[2]
ECHO_DIALOGS = ROOT / "tests" / "pipeline" / "echo_dialogs"


def hub_env(redis_url: str, port: int, config: Path) -> dict[str, str]:
    """This machine's environment with the echo bot, the given Redis and port, and no real channel."""
    env = {**os.environ, "REDIS_URL": redis_url, "OMNIHUB_PORT": str(port), "OMNIHUB_CONFIG": str(config),
           "OMNIHUB_DIALOGS": str(ECHO_DIALOGS)}
    return {name: value for name, value in env.items() if not name.startswith(("TELEGRAM_", "TWILIO_", "VIBER_"))}


LOGS: dict[int, Path] = {}  # pid -> the file its stderr goes to


def start(role: str, env: dict[str, str]) -> subprocess.Popen[bytes]:
    """The process logs to a file, not a pipe: a pipe nobody reads fills up, and a hub blocked writing
    a log line stalls its event loop (its leases lapse) — a fault of the test's own making."""
    handle, name = tempfile.mkstemp(prefix=f"omnihub-{role}-", suffix=".log")
    with open(handle, "wb") as log:  # the child keeps its own copy of the descriptor
        proc = subprocess.Popen([sys.executable, "-m", "bot.cli", role], env=env, cwd=ROOT,
                                stdout=subprocess.DEVNULL, stderr=log)
    LOGS[proc.pid] = Path(name)
    return proc


def log_tail(proc: subprocess.Popen[bytes], chars: int = 3000) -> str:
    """The end of what the process logged (for an assertion's message)."""
    path = LOGS.get(proc.pid)
    return path.read_text(errors="replace")[-chars:] if path and path.exists() else ""


async def ready(url: str, procs: list[subprocess.Popen[bytes]], redis: Redis, partitions: int) -> None:
    """The API answers /readyz and exactly two workers hold every partition's lease between them."""
    async with httpx.AsyncClient() as http:
        deadline = time.monotonic() + 90  # three processes importing aiogram at once on two cores
        while time.monotonic() < deadline:
            for proc in procs:
                assert proc.poll() is None, log_tail(proc)
            try:
                api_up = (await http.get(f"{url}/readyz")).status_code == 200
            except httpx.HTTPError:
                api_up = False
            owners = {await redis.get(keys.lease(p)) for p in range(partitions)}
            if api_up and None not in owners and len(owners) == 2:
                return
            await asyncio.sleep(0.1)
    raise AssertionError("hub did not come up with two workers sharing the partitions")


@dataclass
class SplitHub:
    """`omnihub api` + 2 × `omnihub worker`: the layout of a scaled-out hub, and one worker to kill."""

    url: str
    api: subprocess.Popen[bytes]
    victim: subprocess.Popen[bytes]
    survivor: subprocess.Popen[bytes]

    async def kill_victim(self) -> None:
        self.victim.send_signal(signal.SIGKILL)
        assert self.victim.wait(5) == -signal.SIGKILL


@contextlib.asynccontextmanager
async def split_hub(redis: Redis, redis_url: str, config: Path, partitions: int) -> AsyncIterator[SplitHub]:
    """The three processes started with `config`, ready, and stopped (the survivor cleanly) after."""
    port = free_port()
    env = hub_env(redis_url, port, config)
    hub = SplitHub(f"http://127.0.0.1:{port}", start("api", env), start("worker", env), start("worker", env))
    procs = [hub.api, hub.victim, hub.survivor]
    try:
        await ready(hub.url, procs, redis, partitions)
        yield hub
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.terminate()
        for proc in procs:
            proc.wait(10)
    assert hub.survivor.returncode == 0, log_tail(hub.survivor)
