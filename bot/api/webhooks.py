"""`POST /webhooks/{provider}`: verify, parse, store durably, then answer 2xx — in that order.

Nothing is stored before the signature is checked; nothing is answered 2xx before the events are
in Redis (so a provider retries whatever we could not store). A body we cannot read gets a 4xx with
a message; an update type we do not handle is answered 200 and dropped, or Telegram retries forever.
"""

from __future__ import annotations

import logging
from urllib.parse import parse_qsl

from fastapi import APIRouter, HTTPException, Request, Response
from redis.exceptions import RedisError

from bot.api.metrics import WEBHOOKS
from bot.hub import Hub
from connectors.base import WebhookError, WebhookRequest

log = logging.getLogger(__name__)
router = APIRouter(tags=["webhooks"])  # hot path: no dependency injection, the Hub comes from app.state


async def read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise HTTPException(413, f"body larger than {limit} bytes")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise HTTPException(413, f"body larger than {limit} bytes")
    return bytes(body)


@router.post("/webhooks/{provider}", include_in_schema=False)
@router.post("/webhooks/{provider}/{kind}", include_in_schema=False)
async def webhook(provider: str, request: Request) -> Response:
    hub: Hub = request.app.state.hub
    connector = hub.webhooks.get(provider)
    if connector is None:
        raise HTTPException(404, f"no webhook for {provider!r}: the channel is not enabled")
    body = await read_body(request, hub.settings.max_body_bytes)
    form: dict[str, str] = {}
    if request.headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
        form = dict(parse_qsl(body.decode("utf-8", errors="replace"), keep_blank_values=True))
    query = f"?{request.url.query}" if request.url.query else ""
    signed = WebhookRequest(
        url=f"{hub.public_url}{request.url.path}{query}",
        headers={k.lower(): v for k, v in request.headers.items()},
        body=body,
        form=form,
    )
    try:
        connector.verify(signed)
        events = connector.parse(signed)
    except WebhookError as exc:
        WEBHOOKS.labels(provider, str(exc.status)).inc()
        raise HTTPException(exc.status, str(exc)) from None
    try:
        await hub.accept(events)
    except RedisError as exc:
        log.error("could not store %s webhook: %s", provider, exc)
        WEBHOOKS.labels(provider, "503").inc()
        raise HTTPException(503, "storage unavailable; retry later") from None
    WEBHOOKS.labels(provider, "200").inc()
    await hub.acknowledge(provider, events)
    answer = connector.answer(events)
    return Response(answer.body, media_type=answer.media_type)
