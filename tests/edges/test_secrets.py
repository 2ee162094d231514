"""No configured secret is ever logged or served: real traffic through a hub with known secrets for
every channel, whose provider APIs answer garbage (so every send fails with the client's own error,
which for Telegram quotes the request URL `/bot<TOKEN>/sendMessage`)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from redis.asyncio import Redis

from bot.cli import setup_logging
from bot.redaction import MASK, RedactingFilter, scrub
from tests.api.chat import Api
from tests.conftest import hub_settings, running_hub
from tests.edges import wire

SECRETS = {
    "telegram__bot_token": "7000000001:AAE-tg-token-3f9kq2",
    "telegram__webhook_secret": "tg-webhook-secret-9f3k",
    "twilio__auth_token": "twilio-auth-token-8d2h",
    "viber__auth_token": "viber-auth-token-7c1q",
    "admin_token": "admin-token-5b0z",
}


@contextlib.asynccontextmanager
async def garbage_api() -> AsyncIterator[str]:
    """A provider API that answers every request with bytes that are not HTTP."""

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError):
            await reader.read(65536)
            writer.write(b"NOT HTTP AT ALL\r\n\r\n")
            await writer.drain()
        writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0)
    try:
        yield f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    finally:
        server.close()


async def until_failed(api: Api, channel: str, user_id: str, wait: float = 20.0) -> str:
    """The contact's history (as JSON text) once its reply has failed."""
    deadline = time.monotonic() + wait
    while True:
        found = await api.find(channel=channel, user_id=user_id)
        if found:
            response = await api.http.get(f"/api/v1/contacts/{found[0]['id']}/history", headers=api.headers)
            if '"failed"' in response.text:
                return response.text
        assert time.monotonic() < deadline, f"the reply to {channel} {user_id} never failed"
        await asyncio.sleep(0.1)


async def test_no_secret_reaches_the_log_or_the_history_api(
    redis: Redis, redis_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    async with garbage_api() as api_base:
        settings = hub_settings(
            redis_url, pipeline__partitions=2, pipeline__send_attempts=1,
            telegram__api_base=api_base, twilio__api_base=api_base, viber__api_base=api_base,
            twilio__account_sid="AC" + "1" * 32, twilio__sms_from="+15005550006",
            twilio__whatsapp_from="+14155238886", **SECRETS,
        )
        caplog.set_level(logging.INFO)
        setup_logging(settings)  # as `omnihub run` does: the filter on every handler, pytest's too
        async with running_hub(settings) as client:
            http = client.http
            update = {"update_id": 1, "message": {"message_id": 1, "date": 1746268830, "text": "hello",
                                                  "chat": {"id": 42, "type": "private"},
                                                  "from": {"id": 42, "is_bot": False, "first_name": "A"}}}
            headers = {"x-telegram-bot-api-secret-token": SECRETS["telegram__webhook_secret"]}
            assert (await http.post("/webhooks/telegram", json=update, headers=headers)).status_code == 200
            form = {"MessageSid": "SM1", "From": "+79990001122", "To": "+15005550006", "Body": "hello"}
            signature = wire.RequestValidator(SECRETS["twilio__auth_token"]).compute_signature(
                f"{wire.base_of(http)}/webhooks/twilio", form)
            assert (await http.post("/webhooks/twilio", data=form, headers={"x-twilio-signature": signature})
                    ).status_code == 200
            callback = {"event": "message", "timestamp": 1763834340000, "message_token": 1,
                        "sender": {"id": "viber-user="}, "message": {"type": "text", "text": "hello"}}
            body = wire.json.dumps(callback).encode()
            signature = wire.hmac.new(SECRETS["viber__auth_token"].encode(), body, wire.hashlib.sha256).hexdigest()
            assert (await http.post("/webhooks/viber", content=body,
                                    headers={"x-viber-content-signature": signature})).status_code == 200

            api = Api(client, token=SECRETS["admin_token"])
            served = [await until_failed(api, "telegram", "42"), await until_failed(api, "sms", "+79990001122"),
                      await until_failed(api, "viber", "viber-user=")]
            served.append((await http.get("/readyz")).text)
        logged = caplog.text
    assert "sendMessage" in served[0]  # the Telegram failure reason is there, with its URL, scrubbed
    leaks = {name: where for name, secret in SECRETS.items()
             for where, text in (("log", logged), *(("api", s) for s in served)) if secret in text}
    assert leaks == {}


def test_the_filter_scrubs_messages_arguments_and_tracebacks() -> None:
    secret = SECRETS["viber__auth_token"]
    record: Any = None
    try:
        raise RuntimeError(f"GET https://api.telegram.org/bot123:ABC-def/getMe with {secret}")
    except RuntimeError:
        record = logging.LogRecord("t", logging.ERROR, __file__, 1, "token %s in %s", (secret, "x"), sys.exc_info())
    RedactingFilter([secret]).filter(record)
    text = logging.Formatter().format(record)
    assert "RuntimeError" in text and MASK in text
    assert secret not in text and "ABC-def" not in text


def test_scrub_takes_the_longest_secret_first_and_leaves_short_values() -> None:
    assert scrub("abcdefgh abcdef", ["abcdef", "abcdefgh"]) == f"{MASK} {MASK}"
    assert scrub("id 1234", ["1234"]) == "id 1234"  # too short to be a secret; masking it would garble text
