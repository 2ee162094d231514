"""`omnihub agents …` and `omnihub teams …` run as the commands they are, against the test Redis."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from redis.asyncio import Redis

from bot.handoff.agents import AgentStore
from bot.handoff.teams import Teams
from bot.settings import load_settings

ROOT = Path(__file__).resolve().parents[2]


def omnihub(redis_url: str | None, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "REDIS_URL"}
    if redis_url:
        env["REDIS_URL"] = redis_url
    return subprocess.run([sys.executable, "-m", "bot.cli", *args], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=60)


def one_line_error(run: subprocess.CompletedProcess[str], *words: str) -> None:
    assert run.returncode == 2, run
    assert len(run.stderr.strip().splitlines()) == 1 and all(w in run.stderr for w in words), run.stderr


async def test_agents_add_list_passwd_disable(redis: Redis, redis_url: str) -> None:
    added = omnihub(redis_url, "agents", "add", "ada@example.com", "--password", "correct horse", "--name", "Ada",
                    "--role", "supervisor", "--team", "support", "--team", "vip", "--capacity", "3")
    assert added.returncode == 0, added.stderr
    agent_id = added.stdout.split()[0]
    store = AgentStore(redis)
    ada = await store.get(agent_id)
    assert ada is not None and (ada.role, ada.teams, ada.capacity) == ("supervisor", ("support", "vip"), 3)
    assert await store.verify("ada@example.com", "correct horse") == ada

    listed = omnihub(redis_url, "agents", "list")
    assert listed.returncode == 0 and agent_id in listed.stdout and "0/3" in listed.stdout
    assert "offline" in listed.stdout

    one_line_error(omnihub(redis_url, "agents", "add", "ada@example.com", "--password", "another one"), "exists")
    one_line_error(omnihub(redis_url, "agents", "add", "bob@example.com", "--password", "x"), "password")
    one_line_error(omnihub(redis_url, "agents", "add", "bob@example.com", "--password", "long enough",
                           "--role", "boss"), "role")

    assert omnihub(redis_url, "agents", "passwd", "ada@example.com", "--password", "battery staple").returncode == 0
    assert await store.verify("ada@example.com", "battery staple") is not None
    assert omnihub(redis_url, "agents", "disable", agent_id).returncode == 0
    assert await store.verify("ada@example.com", "battery staple") is None
    assert "disabled" in omnihub(redis_url, "agents", "list").stdout
    one_line_error(omnihub(redis_url, "agents", "disable", "ghost@example.com"), "no agent", "ghost@example.com")
    one_line_error(omnihub(None, "agents", "list"), "REDIS_URL")


async def test_teams_add_and_list(redis: Redis, redis_url: str) -> None:
    added = omnihub(redis_url, "teams", "add", "ru-night", "--language", "ru", "--channel", "telegram",
                    "--timezone", "Europe/Moscow", "--hours", "mon=09:00-13:00,14:00-18:00",
                    "--hours", "fri=22:00-02:00", "--holiday", "2027-01-01", "--queue-timeout", "120",
                    "--on-timeout", "escalate", "--escalate-to", "support", "--manual")
    assert added.returncode == 0, added.stderr
    team = await Teams(redis, load_settings({}).handoff).get("ru-night")
    assert team is not None and team.hours.week == {"mon": ["09:00-13:00", "14:00-18:00"], "fri": ["22:00-02:00"]}
    assert (team.languages, team.channels, team.on_timeout, team.escalate_to, team.auto_assign) == (
        ["ru"], ["telegram"], "escalate", "support", False)

    listed = omnihub(redis_url, "teams", "list")
    assert listed.returncode == 0
    lines = {line.split()[0]: line for line in listed.stdout.splitlines()}
    assert "redis" in lines["ru-night"] and "config" in lines["support"]

    one_line_error(omnihub(redis_url, "teams", "add", "x", "--timezone", "Mars/Olympus"), "timezone", "Mars/Olympus")
    one_line_error(omnihub(redis_url, "teams", "add", "x", "--hours", "monday=9-5"), "--hours")
    one_line_error(omnihub(redis_url, "teams", "add", "x", "--on-timeout", "panic"), "on_timeout")
    one_line_error(omnihub(redis_url, "teams", "add", "bad name!"), "team name")
