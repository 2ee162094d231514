"""A tiny real hub for emulator tests: one route that runs a connector's verify + parse + answer,
keeping the events it accepted (callbacks arrive in the background)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from urllib.parse import parse_qsl

from starlette.requests import Request
from starlette.responses import Response

from bot.models import InboundEvent
from connectors.base import Connector, WebhookError, WebhookRequest


@dataclass
class Hub:
    connector: Connector
    events: list[InboundEvent] = field(default_factory=list)
    answered: int = 0  # webhooks verified and answered 2xx, with events or none
    arrived: asyncio.Condition = field(default_factory=asyncio.Condition)

    async def webhook(self, request: Request) -> Response:
        body = await request.body()
        form: dict[str, str] = {}
        if request.headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
            form = dict(parse_qsl(body.decode(), keep_blank_values=True))
        signed = WebhookRequest(str(request.url), {k.lower(): v for k, v in request.headers.items()}, body, form)
        try:
            self.connector.verify(signed)
            events = self.connector.parse(signed)
        except WebhookError as exc:
            return Response(str(exc), exc.status)
        async with self.arrived:
            self.answered += 1
            self.events += events
            self.arrived.notify_all()
        answer = self.connector.answer(events)
        return Response(answer.body, media_type=answer.media_type)

    async def until(self, count: int) -> list[InboundEvent]:
        """The events once there are `count` of them."""
        async with asyncio.timeout(5), self.arrived:
            await self.arrived.wait_for(lambda: len(self.events) >= count)
        return self.events
