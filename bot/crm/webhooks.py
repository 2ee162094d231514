"""One webhook subscription as a sink: the event POSTed as a CloudEvent, signed by Standard Webhooks.

Headers: `webhook-id` (the event id, the same on every retry: receivers deduplicate by it),
`webhook-timestamp` (seconds, of this attempt), `webhook-signature` (`v1,<base64 HMAC-SHA256 of
"{id}.{timestamp}.{body}">` per signing key, space-separated during a secret rotation), and
`content-type: application/cloudevents+json`. The answer decides what happens next
(`bot.crm.sinks`): 2xx delivered; 410 disables the subscription; anything else, or no answer within
the timeout, is retried, after the `Retry-After` the receiver asked for when it gave one.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from email.utils import parsedate_to_datetime

import httpx

from bot.crm.events import CloudEvent
from bot.crm.sinks import Gone, Reject, Retry
from bot.crm.subscriptions import Subscription

USER_AGENT = "Omnihub-Webhooks/1.0"


def sign(keys: list[bytes], message_id: str, timestamp: int, body: bytes) -> str:
    signed = f"{message_id}.{timestamp}.".encode() + body
    return " ".join("v1," + base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
                    for key in keys)


def retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header: a number, or an HTTP date."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError):
        return None


class WebhookSink:
    def __init__(self, subscription: Subscription, http: httpx.AsyncClient, timeout: float) -> None:
        self.subscription = subscription
        self.http = http
        self.timeout = timeout

    @property
    def name(self) -> str:
        return self.subscription.sink_name

    def wants(self, event_type: str) -> bool:
        return self.subscription.wants(event_type)

    async def deliver(self, event: CloudEvent) -> None:
        body, now = event.body(), int(time.time())
        headers = {
            "content-type": "application/cloudevents+json",
            "user-agent": USER_AGENT,
            "webhook-id": event.id,
            "webhook-timestamp": str(now),
            "webhook-signature": sign(self.subscription.keys(now), event.id, now, body),
        }
        try:
            answer = await self.http.post(self.subscription.url, content=body, headers=headers, timeout=self.timeout)
        except httpx.TimeoutException:
            raise Retry(f"no answer within {self.timeout:g} s") from None
        except httpx.InvalidURL as exc:
            raise Reject(f"the subscription's URL cannot be called: {exc}") from None
        except httpx.HTTPError as exc:
            raise Retry(f"could not reach the receiver: {exc!r}") from None
        if answer.is_success:
            return
        if answer.status_code == 410:
            raise Gone("the receiver answered 410 Gone")
        raise Retry(f"the receiver answered {answer.status_code}", retry_after(answer.headers.get("retry-after")))
