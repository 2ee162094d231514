"""Telegram long polling against the emulator: delivered once, confirmed only after being handled."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from bot.models import InboundEvent
from bot.sandbox.emulator_kit import serve
from bot.sandbox.telegram_api import TelegramEmulator, create_telegram_emulator
from bot.settings import TelegramSettings
from connectors.telegram import TelegramConnector

TOKEN = "7000000001:AAE-sandbox_token"
CUSTOMER = "123456789"


@dataclass
class Hub:
    """The emulator, a started connector, and what a customer does through `/_/inbound`."""

    connector: TelegramConnector
    emulator: TelegramEmulator
    http: httpx.AsyncClient

    async def customer(self, **action: Any) -> int:
        answer = await self.http.post("/_/inbound", json={"user_id": CUSTOMER, **action})
        answer.raise_for_status()
        assert answer.json()["status"] is None  # queued for getUpdates, not posted anywhere
        update_id: int = answer.json()["update_id"]
        return update_id


@pytest.fixture
async def hub() -> AsyncIterator[Hub]:
    # A webhook is set, as a previous deployment may have left it: poll() must remove it first.
    app = create_telegram_emulator(TOKEN, webhook_url="https://old.example/webhooks/telegram")
    async with serve(app) as url, httpx.AsyncClient(base_url=url) as http:
        connector = TelegramConnector(TelegramSettings(api_base=url), TOKEN)
        await connector.start(None)
        try:
            yield Hub(connector, app.state.emulator, http)
        finally:
            await connector.close()


async def eventually(check: Callable[[], bool], seconds: float = 5) -> None:
    for _ in range(int(seconds * 100)):
        if check():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"not true within {seconds} s")


async def test_poll_delivers_each_update_once_and_confirms_it(hub: Hub) -> None:
    received: list[InboundEvent] = []

    async def store(events: list[InboundEvent]) -> None:
        received.extend(events)

    stop = asyncio.Event()
    polling = asyncio.create_task(hub.connector.poll(store, stop))
    await eventually(lambda: hub.emulator.webhook_url is None)
    first = await hub.customer(text="hi", first_name="Anna", language_code="en")
    second = await hub.customer(contact_phone="+79991234567")
    await hub.customer(callback_data="order:1001")
    await eventually(lambda: len(received) == 3)

    hi, contact, press = received
    assert (hi.text, hi.provider_id, hi.user_name, hi.language) == ("hi", str(first), "Anna", "en")
    assert (contact.contact_phone, contact.provider_id) == ("+79991234567", str(second))
    assert press.payload == "order:1001" and press.user_id == CUSTOMER
    await eventually(lambda: list(hub.emulator.answered_callbacks) == [press.provider_id.removeprefix("cb:")])

    stop.set()
    await asyncio.wait_for(polling, 5)
    info = await hub.connector.bot.get_webhook_info()
    assert info.pending_update_count == 0  # confirmed to Telegram before stopping
    assert await hub.connector.bot.get_updates(timeout=0) == []

    # The next poller starts after them: only what came since.
    await hub.customer(text="again")
    later: list[InboundEvent] = []

    async def store_later(events: list[InboundEvent]) -> None:
        later.extend(events)
        stop.set()

    stop.clear()
    await asyncio.wait_for(hub.connector.poll(store_later, stop), 5)
    assert [event.text for event in later] == ["again"]


async def test_updates_come_again_when_storing_them_failed(hub: Hub) -> None:
    attempts: list[list[str]] = []
    stop = asyncio.Event()

    async def flaky_store(events: list[InboundEvent]) -> None:
        attempts.append([event.provider_id for event in events])
        if len(attempts) == 1:
            raise ConnectionError("storage is down")
        stop.set()

    await hub.connector.bot.delete_webhook()
    update_id = await hub.customer(text="do not lose me")
    await asyncio.wait_for(hub.connector.poll(flaky_store, stop), 10)
    assert attempts == [[str(update_id)], [str(update_id)]]


async def test_stop_interrupts_an_idle_long_poll(hub: Hub) -> None:
    async def never_called(events: list[InboundEvent]) -> None:
        raise AssertionError(events)

    stop = asyncio.Event()
    polling = asyncio.create_task(hub.connector.poll(never_called, stop))
    await asyncio.sleep(0.3)  # now inside a 25-second getUpdates
    stop.set()
    await asyncio.wait_for(polling, 2)
