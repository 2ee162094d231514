"""A channel whose webhook registration fails is retried in the background; the others work meanwhile.

Viber is configured as a live channel whose API is not reachable yet (nothing listens on its port);
Telegram runs on the sandbox emulator. `/readyz` stays 200 but says "degraded" and why, the Telegram
customer is answered, and once the Viber API comes up the hub registers and says "ready".
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from typing import Any

import uvicorn

from bot.redis_server import free_port
from bot.sandbox import emulators as sandbox
from tests.conftest import HubFactory, serving
from tests.pipeline.customer import Customer, small_hub


@contextlib.asynccontextmanager
async def viber_api(port: int, hub_url: str) -> AsyncIterator[None]:
    app = sandbox.standalone_app(sandbox.create_emulators(hub_url, ["viber"]))
    async with serving(uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))):
        yield


async def readiness_until(client: Any, done: Any, wait: float = 20.0) -> dict[str, Any]:
    deadline = time.monotonic() + wait
    while True:
        answer = await client.http.get("/readyz")
        report: dict[str, Any] = answer.json()
        if answer.status_code == 200 and done(report):
            return report
        assert time.monotonic() < deadline, f"/readyz never got there: {answer.status_code} {report}"
        await asyncio.sleep(0.1)


async def test_a_failing_registration_is_retried_while_other_channels_work(hub: HubFactory) -> None:
    port, viber_port = free_port(), free_port()
    hub_url = f"http://127.0.0.1:{port}"
    overrides = {"port": port, "public_url": hub_url, "viber__auth_token": sandbox.VIBER_TOKEN,
                 "viber__api_base": f"http://127.0.0.1:{viber_port}/emulator/viber"}
    async with small_hub(hub, **overrides) as client:
        report = await readiness_until(client, lambda r: "registration failed" in r["channels"]["viber"])
        assert report["status"] == "degraded" and report["channels"]["telegram"] == "live"

        ada = Customer(client, "telegram", "630001")
        await ada.say("hello")
        [greeting] = await ada.replies(1)
        assert greeting["text"].startswith("Hi")

        async with viber_api(viber_port, hub_url):
            report = await readiness_until(client, lambda r: r["status"] == "ready", wait=30)
            assert report["channels"]["viber"] == "live"
