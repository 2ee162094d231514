"""The test ping: one signed `omnihub.webhook.test` event POSTed to a subscription's URL now, outside
the feed (no retries, no dead letter), so its owner can see the receiver verify and answer. The API's
`POST /api/v1/webhooks/{id}/test` and `omnihub webhooks test` both send it."""

from __future__ import annotations

import time

from bot.crm.events import CloudEvent, EventData
from bot.crm.poster import Poster
from bot.crm.sinks import Gone, Reject, Retry
from bot.crm.subscriptions import Subscription
from bot.crm.webhooks import WebhookSink


class Ping(EventData):
    """Sent by the test call only (`omnihub webhooks test`, `POST /api/v1/webhooks/{id}/test`); never in the feed."""

    type = "omnihub.webhook.test"
    subscription_id: str


async def ping(sub: Subscription, poster: Poster, timeout_seconds: float) -> tuple[bool, str]:
    """(delivered, what happened): the receiver's answer in words."""
    event = CloudEvent.of(Ping(subscription_id=sub.id), sub.id, f"{sub.id}/{time.time()}")
    try:
        await WebhookSink(sub, poster, timeout_seconds).deliver(event)
    except (Retry, Gone, Reject) as exc:
        return False, str(exc)
    return True, "the receiver answered 2xx"
