"""`omnihub chat` as a real subprocess against a running sandbox hub: lines typed on stdin, and what
the customer reads on stdout, on each of the four channels."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import pytest

from tests.conftest import HubFactory

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]

# channel: (customer, what the customer types, what they must then read, in this order)
CASES: dict[str, tuple[str, list[str], list[str]]] = {
    "telegram": ("700007", ["hello", "#1", "Привет"],
                 ["Welcome to Omnishop", "[#1] Order status", "What's your order number?", "Здравствуйте"]),
    "viber": ("viber-7", ["hello", "#1", "Привет"],
              ["Welcome to Omnishop", "[#1] Order status", "What's your order number?", "Здравствуйте"]),
    "whatsapp": ("+79990000007", ["hello", "1", "Привет"],
                 ["Welcome to Omnishop", "1. Order status", "What's your order number?", "Здравствуйте"]),
    "sms": ("+79990000007", ["hello", "1", "Привет"],
            ["Welcome to Omnishop", "1. Order status", "(GSM-7, 1 segment)", "What's your order number?",
             "Здравствуйте", "(UCS-2, "]),
}


async def omnihub_chat(port: int, channel: str, user: str, lines: list[str]) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OMNIHUB_", "REDIS_", "TELEGRAM_", "TWILIO_",
                                                                   "VIBER_"))}
    env["OMNIHUB_PORT"] = str(port)  # how `omnihub chat` finds the running hub
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bot.cli", "chat", "--channel", channel, "--user", user, cwd=ROOT, env=env,
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate("\n".join(lines).encode() + b"\n"), 120)
    assert process.returncode == 0, err.decode()[-3000:]
    return out.decode()


def assert_in_order(output: str, expected: list[str]) -> None:
    at = 0
    for text in expected:
        found = output.find(text, at)
        assert found >= 0, f"{text!r} missing after position {at} of:\n{output}"
        at = found + len(text)


@pytest.mark.parametrize("channel", list(CASES))
async def test_chat_on_each_channel(hub: HubFactory, channel: str) -> None:
    user, lines, expected = CASES[channel]
    async with hub() as client:
        if channel == "sms":  # the same phone on WhatsApp: its messages share the Twilio outbox
            await client.send("whatsapp", user, "opening hours")
            assert await client.replies("whatsapp", user, wait=10)
        port = client.http.base_url.port
        assert port is not None
        output = await omnihub_chat(port, channel, user, lines)
    assert "no hub at" not in output  # it chatted with this hub, not one of its own
    assert_in_order(output, expected)
    assert "Our store is open" not in output  # the WhatsApp answer stays on WhatsApp
