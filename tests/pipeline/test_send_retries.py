"""The sender against a provider that refuses: rate limits are waited out, hard refusals recorded.

Faults are injected at the wire, in the Telegram emulator, the way Telegram answers.
"""

from __future__ import annotations

import time

from tests.conftest import HubFactory
from tests.pipeline.customer import Customer, small_hub, statuses


async def test_a_rate_limited_reply_waits_retry_after_and_arrives_once(hub: HubFactory) -> None:
    async with small_hub(hub) as client:
        anna = Customer(client, "telegram", "300001")
        fault = {"method": "sendMessage", "status": 429, "retry_after": 1, "times": 2}
        (await client.http.post("/emulator/telegram/_/faults", json=fault)).raise_for_status()
        started = time.monotonic()
        await anna.say("hello")
        [greeting] = await anna.replies(wait=15)
        assert time.monotonic() - started >= 2  # two refusals, each asking to wait a second
        assert greeting["text"].startswith("Hi")
        await anna.nothing_more()
        assert statuses(await anna.history()) == ["sent"]


async def test_a_blocked_bot_fails_the_message_with_the_reason(hub: HubFactory) -> None:
    async with small_hub(hub) as client:
        boris = Customer(client, "telegram", "300002")
        fault = {"method": "sendMessage", "status": 403, "times": 1}
        (await client.http.post("/emulator/telegram/_/faults", json=fault)).raise_for_status()
        await boris.say("hello")
        items = await boris.history_until(lambda items: statuses(items) == ["failed"])
        assert "blocked" in (items[-1]["error"] or "")
        await boris.nothing_more()
