"""`omnihub webhooks …` and `omnihub events …` run as the commands they are, against the test Redis
(and, for dead letters and replays, a real hub delivering to a receiver that verifies signatures)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from redis.asyncio import Redis

from bot.context import keys
from bot.crm import replay
from bot.crm.cli import Refused, since_moment
from bot.crm.subscriptions import Subscriptions, new_secret
from tests.conftest import HubFactory
from tests.crm.receiver import Receiver, receiving
from tests.pipeline.customer import PARTITIONS, Customer, small_hub

ROOT = Path(__file__).resolve().parents[2]


def omnihub(redis_url: str | None, *args: str, config: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "OMNIHUB_CONFIG")}
    if redis_url:
        env["REDIS_URL"] = redis_url
    if config:
        env["OMNIHUB_CONFIG"] = str(config)
    return subprocess.run([sys.executable, "-m", "bot.cli", *args], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=60)


async def omnihub_async(redis_url: str, *args: str, config: Path | None = None) -> subprocess.CompletedProcess[str]:
    """The command in a thread, so the receiver (and the hub) in this event loop keep answering."""
    return await asyncio.to_thread(omnihub, redis_url, *args, config=config)


def one_line_error(run: subprocess.CompletedProcess[str], *words: str) -> None:
    assert run.returncode == 2, run
    assert len(run.stderr.strip().splitlines()) == 1 and all(w in run.stderr for w in words), run.stderr
    assert "Traceback" not in run.stderr


def created_id(run: subprocess.CompletedProcess[str]) -> str:
    assert run.returncode == 0, run.stderr
    return run.stdout.split()[0]


@pytest.fixture
def small_config(tmp_path: Path) -> Path:
    """The configuration of a deployment with `small_hub`'s partitions, as the CLI reads it."""
    path = tmp_path / "omnihub.yaml"
    path.write_text(f"pipeline:\n  partitions: {PARTITIONS}\n")
    return path


async def test_add_list_disable_enable_rotate_delete(redis: Redis, redis_url: str) -> None:
    secret = new_secret()
    added = omnihub(redis_url, "webhooks", "add", "https://crm.example.com/hook", "--secret", secret,
                    "--events", "omnihub.contact.created", "--events", "omnihub.message.*,omnihub.csat.submitted",
                    "--description", "the CRM")
    sub_id = created_id(added)
    assert secret in added.stdout
    store = Subscriptions(redis, 16)
    sub = await store.get(sub_id)
    assert sub is not None and (sub.url, sub.secret, sub.description, sub.status) == (
        "https://crm.example.com/hook", secret, "the CRM", "active")
    assert sub.events == ["omnihub.contact.created", "omnihub.message.*", "omnihub.csat.submitted"]
    assert len(await redis.xinfo_groups(keys.events(15))) == 1  # it receives from now on, on every partition

    made = omnihub(redis_url, "webhooks", "add", "http://127.0.0.1:9/other")
    other = created_id(made)
    made_secret = made.stdout.split("secret ", 1)[1].split()[0]
    assert made_secret.startswith("whsec_") and (await store.get(other)).secret == made_secret  # type: ignore[union-attr]

    listed = omnihub(redis_url, "webhooks", "list")
    assert listed.returncode == 0, listed.stderr
    rows = {line.split()[0]: line for line in listed.stdout.splitlines()[1:]}
    assert set(rows) == {sub_id, other}
    assert "active" in rows[sub_id] and "https://crm.example.com/hook" in rows[sub_id] and "0/0/0/0" in rows[sub_id]
    assert secret not in listed.stdout and made_secret not in listed.stdout  # shown once, when made

    assert omnihub(redis_url, "webhooks", "disable", sub_id).returncode == 0
    assert (await store.get(sub_id)).status == "disabled"  # type: ignore[union-attr]
    assert "disabled from the command line" in omnihub(redis_url, "webhooks", "list").stdout
    assert omnihub(redis_url, "webhooks", "enable", sub_id).returncode == 0
    assert (await store.get(sub_id)).status == "active"  # type: ignore[union-attr]

    rotated = omnihub(redis_url, "webhooks", "rotate", sub_id)
    assert rotated.returncode == 0, rotated.stderr
    after = await store.get(sub_id)
    assert after is not None and after.secret != secret and after.previous_secret == secret
    assert after.secret in rotated.stdout

    assert omnihub(redis_url, "webhooks", "delete", sub_id).returncode == 0
    assert await store.get(sub_id) is None
    one_line_error(omnihub(redis_url, "webhooks", "delete", sub_id), "no webhook subscription", sub_id)
    for command in ("disable", "enable", "rotate", "test"):
        one_line_error(omnihub(redis_url, "webhooks", command, "wh_ghost"), "no webhook subscription", "wh_ghost")
    one_line_error(omnihub(redis_url, "webhooks", "add", "https://x.example", "--secret", "hunter2"), "whsec_")
    one_line_error(omnihub(redis_url, "webhooks", "add", "https://x.example", "--secret", "whsec_!!"), "base64")
    one_line_error(omnihub(redis_url, "webhooks", "add", "https://x.example", "--events", "omnihub.nothing"),
                   "unknown event types", "omnihub.nothing")
    one_line_error(omnihub(redis_url, "webhooks", "add", "ftp://x.example"), "http://")
    one_line_error(omnihub(None, "webhooks", "list"), "REDIS_URL")
    assert [s.id for s in await store.all()] == [other]  # nothing refused was saved


async def test_test_pings_the_receiver_signed_and_says_why_not(redis: Redis, redis_url: str) -> None:
    async with receiving(Receiver(new_secret())) as crm:
        sub_id = created_id(await omnihub_async(redis_url, "webhooks", "add", crm.url, "--secret", crm.secret))
        sent = await omnihub_async(redis_url, "webhooks", "test", sub_id)
        assert sent.returncode == 0 and "delivered" in sent.stdout, sent
        [ping] = crm.events  # verified by standardwebhooks with the subscription's secret
        assert (ping["type"], ping["subject"], ping["data"]) == (
            "omnihub.webhook.test", sub_id, {"subscription_id": sub_id})

        crm.status = 503
        refused = await omnihub_async(redis_url, "webhooks", "test", sub_id)
        assert refused.returncode == 1 and "not delivered" in refused.stderr and "503" in refused.stderr, refused
        assert len(crm.attempts) == 2 and crm.refused == []

    down = await omnihub_async(redis_url, "webhooks", "test", sub_id)  # the receiver is gone now
    assert down.returncode == 1 and "could not reach the receiver" in down.stderr, down


async def test_dead_letters_are_listed_and_redelivered_and_the_feed_replayed(
        hub: HubFactory, redis: Redis, redis_url: str, small_config: Path) -> None:
    async with small_hub(hub, crm__retry_schedule_seconds=[0]) as client, \
            receiving(Receiver(new_secret(), status=500)) as crm:
        sub_id = created_id(await omnihub_async(
            redis_url, "webhooks", "add", crm.url, "--secret", crm.secret,
            "--events", "omnihub.contact.created,omnihub.message.received", config=small_config))
        await Customer(client, "telegram", "720001").say("hello")
        letters = await _dead(redis, f"wh:{sub_id}", 2)
        by_type = {letter.event["type"]: letter for letter in letters}
        assert set(by_type) == {"omnihub.contact.created", "omnihub.message.received"}

        listed = await omnihub_async(redis_url, "events", "dead", "--subscription", sub_id, config=small_config)
        assert listed.returncode == 0, listed.stderr
        for letter in letters:
            line = next(x for x in listed.stdout.splitlines() if x.startswith(letter.id + " "))
            assert letter.event["type"] in line and letter.event["id"] in line and "500" in line
        everyone = await omnihub_async(redis_url, "events", "dead", "--limit", "1", config=small_config)
        assert len(everyone.stdout.strip().splitlines()) == 1

        crm.status = 200
        created = by_type["omnihub.contact.created"]
        again = await omnihub_async(redis_url, "events", "redeliver", created.id, "--subscription", sub_id,
                                    config=small_config)
        assert again.returncode == 0, again.stderr
        [event] = await crm.until(1)
        assert event["id"] == created.event["id"] and event["type"] == "omnihub.contact.created"
        one_line_error(await omnihub_async(redis_url, "events", "redeliver", created.id, config=small_config),
                       "no dead letter", created.id)
        one_line_error(await omnihub_async(redis_url, "events", "redeliver", "nonsense", config=small_config),
                       "not a dead letter id")

        replayed = await omnihub_async(redis_url, "events", "replay", "--subscription", sub_id, "--since", "10m",
                                       config=small_config)
        assert replayed.returncode == 0 and replayed.stdout.startswith("2 event(s) queued"), replayed
        await crm.until(3)
        assert sorted(crm.ids()[1:]) == sorted(letter.event["id"] for letter in letters)  # their own ids again

        one_line_error(await omnihub_async(redis_url, "events", "replay", "--subscription", sub_id, "--since",
                                           "yesterday", config=small_config), "--since", "yesterday")
        one_line_error(await omnihub_async(redis_url, "events", "replay", "--subscription", "wh_ghost", "--since",
                                           "1h", config=small_config), "no webhook subscription", "wh_ghost")
        one_line_error(await omnihub_async(redis_url, "events", "dead", "--subscription", "wh_ghost",
                                           config=small_config), "no webhook subscription")


def test_since_takes_iso_8601_or_a_span_back_from_now() -> None:
    now = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
    assert since_moment("2h", now) == now - timedelta(hours=2)
    assert since_moment("30m", now) == now - timedelta(minutes=30)
    assert since_moment("1d", now) == now - timedelta(days=1)
    assert since_moment("2026-03-01T10:00:00Z", now) == datetime(2026, 3, 1, 10, tzinfo=UTC)
    assert since_moment("2026-03-01T13:00:00+03:00", now) == datetime(2026, 3, 1, 10, tzinfo=UTC)
    assert since_moment("2026-03-01 10:00", now) == datetime(2026, 3, 1, 10, tzinfo=UTC)  # no offset: UTC
    for bad in ("2 hours", "h", "-1h", "tomorrow"):
        with pytest.raises(Refused, match="--since"):
            since_moment(bad, now)
    with pytest.raises(Refused, match="future"):
        since_moment("2026-03-02T00:00:00Z", now)


def test_catalogue_writes_and_checks_the_file(tmp_path: Path) -> None:
    path = tmp_path / "events.md"
    stale = omnihub(None, "events", "catalogue", "--check", "--path", str(path))
    assert stale.returncode == 1 and "does not exist" in stale.stderr

    written = omnihub(None, "events", "catalogue", "--path", str(path))
    assert written.returncode == 0 and "omnihub.contact.created" in path.read_text()
    assert omnihub(None, "events", "catalogue", "--check", "--path", str(path)).returncode == 0

    text = path.read_text()
    path.write_text(text.replace("### omnihub.csat.submitted", "### omnihub.csat.given"))
    line = text[:text.index("### omnihub.csat.submitted")].count("\n") + 1
    edited = omnihub(None, "events", "catalogue", "--check", "--path", str(path))
    assert edited.returncode == 1 and f"line {line}" in edited.stderr and "omnihub.csat.given" in edited.stderr
    assert len(edited.stderr.strip().splitlines()) == 1


async def _dead(redis: Redis, sink: str, count: int, wait: float = 15.0) -> list[replay.DeadEvent]:
    deadline = time.monotonic() + wait
    while len(found := await replay.dead_letters(redis, PARTITIONS, sink)) < count:
        assert time.monotonic() < deadline, f"{len(found)} dead letters of {count}"
        await asyncio.sleep(0.1)
    return found
