"""The Telegram emulator's webhook delivery, against a slow real hub on a loopback port: as many posts
at once as setWebhook's max_connections allows, different chats in parallel, one chat's in order."""

from __future__ import annotations

import asyncio
import json

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from bot.sandbox.emulator_kit import serve
from bot.sandbox.telegram_api import create_telegram_emulator

TOKEN = "7000000001:AAE-sandbox_token"


class SlowHub:
    """Answers each webhook after a pause, noting how many it held at once and each chat's texts."""

    def __init__(self) -> None:
        self.open = self.most = 0
        self.texts: dict[int, list[str]] = {}

    async def webhook(self, request: Request) -> Response:
        message = json.loads(await request.body())["message"]
        self.open += 1
        self.most = max(self.most, self.open)
        await asyncio.sleep(0.05)
        self.texts.setdefault(message["chat"]["id"], []).append(message["text"])
        self.open -= 1
        return Response(b"", 200)


async def test_chats_are_delivered_in_parallel_each_in_order_within_max_connections() -> None:
    hub = SlowHub()
    async with serve(Starlette(routes=[Route("/hook", hub.webhook, methods=["POST"])])) as hub_url:
        app = create_telegram_emulator(TOKEN)
        async with serve(app) as url, httpx.AsyncClient(base_url=url, timeout=10) as api:
            hook = {"url": f"{hub_url}/hook", "max_connections": "3"}
            set_hook = await api.post(f"/bot{TOKEN}/setWebhook", data=hook)
            assert set_hook.json() == {"ok": True, "result": True}
            info = (await api.post(f"/bot{TOKEN}/getWebhookInfo")).json()["result"]
            assert info["max_connections"] == 3

            async def write(user: int, n: int) -> int:
                answer = await api.post("/_/inbound", json={"user_id": user, "text": f"{n}"})
                return int(answer.json()["status"])

            started = asyncio.get_running_loop().time()
            writes = [asyncio.create_task(write(user, n)) for n in range(4) for user in (1, 2, 3, 4, 5)]
            await asyncio.sleep(0)  # every post asked for before any is answered
            statuses = await asyncio.gather(*writes)
            took = asyncio.get_running_loop().time() - started

    assert statuses == [200] * 20
    assert hub.texts == {user: ["0", "1", "2", "3"] for user in (1, 2, 3, 4, 5)}  # each chat in order
    assert hub.most == 3  # parallel, but no more than max_connections
    assert took < 20 * 0.05  # not one at a time


async def test_max_connections_must_be_a_number() -> None:
    app = create_telegram_emulator(TOKEN)
    async with serve(app) as url, httpx.AsyncClient(base_url=url, timeout=10) as api:
        answer = await api.post(f"/bot{TOKEN}/setWebhook", data={"url": "http://x/hook", "max_connections": "many"})
    assert answer.status_code == 400 and answer.json()["ok"] is False
