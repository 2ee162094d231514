"""Against a real Rasa server (built and started by `scripts/rasa-env up`), through a real hub and the
Telegram emulator. Runs when `OMNIHUB_RASA_URL` is set, and is skipped, saying so, otherwise:

    OMNIHUB_HUB_URL=http://127.0.0.1:18080 scripts/rasa-env up
    OMNIHUB_RASA_URL=http://127.0.0.1:5005 OMNIHUB_HUB_URL=http://127.0.0.1:18080 \\
        .venv/bin/python -m pytest -q tests/rasa/test_integration.py

The hub under test listens where Rasa's action endpoint points (`OMNIHUB_HUB_URL`, with the token
`OMNIHUB_RASA_TOKEN` or the script's dev token). "Rasa killed" is Rasa cut off from the hub: the hub
reaches Rasa through a loopback relay the test closes, which the hub sees exactly as a dead server
(connection refused) — and the real server stays up for the next run.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from bot.redis_server import free_port
from bot.sandbox.client import SandboxClient
from tests.conftest import hub_settings, running_hub
from tests.handoff.test_conversation_api import queued
from tests.pipeline.customer import Customer

RASA_URL = os.environ.get("OMNIHUB_RASA_URL")
HUB_URL = os.environ.get("OMNIHUB_HUB_URL", "http://127.0.0.1:8080")
TOKEN = os.environ.get("OMNIHUB_RASA_TOKEN", "omnihub-dev-rasa-token")
pytestmark = pytest.mark.skipif(RASA_URL is None, reason="no real Rasa: set OMNIHUB_RASA_URL (scripts/rasa-env up)")


class Relay:
    """A loopback TCP relay to `target`; `close` shuts it and every connection through it."""

    def __init__(self, target: str) -> None:
        self.target = urlsplit(target)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._writers: set[asyncio.StreamWriter] = set()
        self._server: asyncio.Server | None = None

    async def start(self) -> Relay:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", self.port)
        return self

    async def close(self) -> None:
        assert self._server is not None
        self._server.close()
        for writer in self._writers:
            writer.close()
        await self._server.wait_closed()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        far_reader, far_writer = await asyncio.open_connection(self.target.hostname, self.target.port)
        self._writers.update((writer, far_writer))
        await asyncio.gather(self._pipe(reader, far_writer), self._pipe(far_reader, writer))

    @staticmethod
    async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError):
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        writer.close()


@contextlib.asynccontextmanager
async def hub_with_rasa(redis_url: str, rasa_url: str, **overrides: Any) -> AsyncIterator[SandboxClient]:
    settings = hub_settings(redis_url, port=urlsplit(HUB_URL).port, rasa__url=rasa_url, rasa__token=TOKEN,
                            pipeline__partitions=2, **overrides)
    async with running_hub(settings) as client:
        yield client


async def rasa_tracker(sender: str) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=str(RASA_URL), timeout=10) as http:
        response = await http.get(f"/conversations/{sender}/tracker")
        response.raise_for_status()
        tracker: dict[str, Any] = response.json()
        return tracker


def said(tracker: dict[str, Any], kind: str) -> list[str]:
    return [e.get("text") or "" for e in tracker["events"] if e["event"] == kind]


async def test_a_telegram_message_is_answered_by_rasa(redis: Any, redis_url: str) -> None:
    async with hub_with_rasa(redis_url, str(RASA_URL)) as client:
        kim = Customer(client, "telegram", "740001")
        await kim.say("hello", name="Kim", language="en")
        [greeting] = await kim.replies(1, wait=30)
        tracker = await rasa_tracker(await sender_of(client, kim))
        assert said(tracker, "user")[-1] == "hello"
        assert greeting["text"] == said(tracker, "bot")[-1]  # Rasa's words, not the built-in engine's


async def sender_of(client: SandboxClient, customer: Customer) -> str:
    """The conversation id the hub gave Rasa as the sender."""
    cid = await customer.contact_id()
    export = (await client.http.get(f"/api/v1/contacts/{cid}/export")).json()
    return str(export["conversation"]["id"])


async def test_a_button_round_trips_and_action_handoff_keeps_rasa_out_while_an_agent_has_it(
    redis: Any, redis_url: str,
) -> None:
    async with hub_with_rasa(redis_url, str(RASA_URL)) as client:
        kim = Customer(client, "telegram", "740002")
        await kim.say("hello", language="en")
        [greeting] = await kim.replies(1, wait=30)
        buttons = {b["callback_data"]: b["text"] for row in greeting["raw"]["reply_markup"]["inline_keyboard"]
                   for b in row}
        assert "/human" in buttons, buttons  # the exported greeting's buttons: intents, as Rasa writes them
        await kim.say(button="/human")
        [conversation] = await queued(client, wait=30)
        sender = await sender_of(client, kim)
        tracker = await rasa_tracker(sender)
        assert said(tracker, "user")[-1] == "/human"
        assert "action_handoff" in [e.get("name") for e in tracker["events"] if e["event"] == "action"]
        assert (await client.http.get(f"/api/v1/conversations/{conversation['id']}")).json()["mode"] == "queued"

        heard = len(said(tracker, "user"))
        await kim.say("is anyone there?")
        await kim.history_until(lambda items: any(i.get("text") == "is anyone there?" for i in items))
        await asyncio.sleep(1.0)
        assert len(said(await rasa_tracker(sender), "user")) == heard  # Rasa was not called


async def test_rasa_cut_off_the_built_in_engine_answers(redis: Any, redis_url: str) -> None:
    relay = await Relay(str(RASA_URL)).start()
    async with hub_with_rasa(redis_url, relay.url, rasa__pause_seconds=0) as client:
        kim = Customer(client, "telegram", "740003")
        await kim.say("hello", language="en")
        [by_rasa] = await kim.replies(1, wait=30)
        assert said(await rasa_tracker(await sender_of(client, kim)), "bot")[-1] == by_rasa["text"]
        await relay.close()
        await kim.say("opening hours")
        [answer] = await kim.replies(1, wait=30)
        assert answer["text"].startswith("Our store is open")  # the built-in engine's own text
        metrics = (await client.http.get("/metrics")).text
        assert 'omnihub_rasa_fallbacks_total{mode="dialogue",reason="down"} 1.0' in metrics
