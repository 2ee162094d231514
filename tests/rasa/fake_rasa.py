"""A Rasa server faked at the wire: its `/model/parse` and REST channel, answering as recorded.

Real Rasa is outside the project (its own environment, minutes to build), so the hub-level tests talk
to this instead; `tests/rasa/test_integration.py` talks to the real one. Answers are taken from the
recorded real payloads in `tests/payloads/rasa/`, with the sender put in as Rasa does. For a message
scripted to run an action, it calls the hub's action server the way Rasa's `RemoteAction` does (the
recorded request body, with this conversation's sender and slots) and answers with the action's
responses, as Rasa's collecting output channel would.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import orjson
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from bot.redis_server import free_port
from tests.conftest import PAYLOADS, serving

RECORDED = PAYLOADS / "rasa"


def recorded(name: str) -> Any:
    return orjson.loads((RECORDED / name).read_bytes())


@dataclass(frozen=True)
class RunAction:
    """Rasa runs this custom action (its slots set as given) and answers with what it responds."""

    name: str
    slots: dict[str, Any] = field(default_factory=dict)


@dataclass
class FakeRasa:
    action_url: str | None = None  # the hub's /rasa/webhook?token=..., for scripted actions
    port: int = field(default_factory=free_port)
    answers: dict[str, list[dict[str, Any]] | RunAction] = field(default_factory=dict)  # message -> answer
    parses: dict[str, dict[str, Any]] = field(default_factory=dict)  # text -> /model/parse answer
    received: list[dict[str, Any]] = field(default_factory=list)  # REST channel bodies, in order
    parsed: list[str] = field(default_factory=list)
    action_answers: list[tuple[int, Any]] = field(default_factory=list)  # what the hub's action server said
    hang: bool = False
    _released: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[FakeRasa]:
        app = Starlette(routes=[Route("/model/parse", self._parse, methods=["POST"]),
                                Route("/webhooks/rest/webhook", self._rest, methods=["POST"])])
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning", lifespan="off")
        self._released = asyncio.Event()
        async with serving(uvicorn.Server(config)):
            try:
                yield self
            finally:
                self._released.set()  # a hanging request ends, so the server can stop

    async def _parse(self, request: Request) -> JSONResponse:
        text = (await request.json())["text"]
        self.parsed.append(text)
        await self._maybe_hang()
        answer = copy.deepcopy(self.parses.get(text) or recorded("parse_nlu_fallback.json"))
        answer["text"] = text
        return JSONResponse(answer)

    async def _rest(self, request: Request) -> JSONResponse:
        body = await request.json()
        self.received.append(body)
        await self._maybe_hang()
        sender, answer = body["sender"], self.answers.get(body["message"], recorded("rest_text.json"))
        if isinstance(answer, RunAction):
            return JSONResponse(await self._run(answer, sender, body))
        return JSONResponse([{**message, "recipient_id": sender} for message in copy.deepcopy(answer)])

    async def _run(self, action: RunAction, sender: str, body: dict[str, Any]) -> list[dict[str, Any]]:
        assert self.action_url is not None, "a scripted action needs the hub's action endpoint"
        call = copy.deepcopy(recorded("action_request_handoff.json"))
        call.update(next_action=action.name, sender_id=sender)
        call["tracker"].update(sender_id=sender)
        call["tracker"]["slots"] = {**dict.fromkeys(call["tracker"]["slots"]), **action.slots}  # only the script's
        call["tracker"]["latest_message"]["metadata"] = body.get("metadata")
        async with httpx.AsyncClient() as http:
            answered = await http.post(self.action_url, json=call)
        self.action_answers.append((answered.status_code, answered.json()))
        if answered.status_code != 200:
            return []  # Rasa logs the failed action and the turn ends with nothing said
        return [{"recipient_id": sender, **message} for message in answered.json()["responses"]]

    async def _maybe_hang(self) -> None:
        if self.hang:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._released.wait(), 30)
