"""Talk to the hub as a customer would, through the emulators' control routes.

One place that knows how each emulator takes a customer's message, used by `omnihub chat`, the
tests and the benchmark alike (the `/sandbox` page does the same from JavaScript).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import httpx

from bot.models import Channel

EMULATOR_OF: dict[Channel, str] = {"telegram": "telegram", "whatsapp": "twilio", "sms": "twilio", "viber": "viber"}


def default_user(channel: Channel) -> str:
    return {"telegram": "100001", "whatsapp": "+79991234567", "sms": "+79991234567", "viber": "viber-user-1"}[channel]


def inbound_body(
    channel: Channel, user: str, text: str | None = None, button: str | None = None, name: str | None = None,
    language: str | None = None, phone: str | None = None,
) -> dict[str, Any]:
    """The emulator's `/_/inbound` body for a customer's message or button press."""
    if channel in ("telegram", "viber"):  # the two emulators name the same things differently
        name_key, language_key, button_key = (
            ("first_name", "language_code", "callback_data") if channel == "telegram"
            else ("name", "language", "button_payload")
        )
        body: dict[str, Any] = {"user_id": user, name_key: name or "Sandbox", language_key: language}
        if button is not None:
            body[button_key] = button
        elif phone is not None:
            body["contact_phone"] = phone
        else:
            body["text"] = text
        return body
    body = {"channel": channel, "from": user, "text": text or "", "profile_name": name}
    if button is not None:
        body["button_payload"] = button
    return body


@dataclass
class SandboxClient:
    http: httpx.AsyncClient  # based at the hub, e.g. http://127.0.0.1:8080

    async def send(self, channel: Channel, user: str, text: str | None = None, **kw: Any) -> dict[str, Any]:
        response = await self.http.post(
            f"/emulator/{EMULATOR_OF[channel]}/_/inbound", json=inbound_body(channel, user, text, **kw)
        )
        response.raise_for_status()
        answer: dict[str, Any] = response.json()
        return answer

    async def replies(self, channel: Channel, user: str, after: int = 0, wait: float = 0) -> list[dict[str, Any]]:
        """The bot's messages to `user` on `channel` after seq `after`, waiting up to `wait` seconds for one.

        One Twilio number serves SMS and WhatsApp, so a phone's outbox holds both (the emulator records
        which channel each message took): the other channel's messages are skipped and do not end the wait.
        """
        deadline = time.monotonic() + wait
        while True:
            left = max(0.0, deadline - time.monotonic())
            response = await self.http.get(
                f"/emulator/{EMULATOR_OF[channel]}/_/outbox/{user}", params={"after": after, "wait": left},
                timeout=left + 10,
            )
            response.raise_for_status()
            items: list[dict[str, Any]] = response.json()["items"]
            mine = [m for m in items if m.get("raw", {}).get("channel", channel) == channel]
            if mine or not items or not left:
                return mine
            after = items[-1]["seq"]
