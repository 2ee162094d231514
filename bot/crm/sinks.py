"""What consumes the event feed: a webhook subscription, a CRM adapter — one protocol for both.

A sink is one more consumer group on every partition's event stream (`bot.crm.delivery` reads it,
contact by contact, and retries on the sink's schedule); it only has to say which event types it
wants and deliver one event. How it fails tells the delivery side what to do next:

- returns: delivered, the next event of that contact may go;
- `Retry` (a 5xx, a timeout, a rate limit; `after` from a Retry-After): try again on the schedule;
- `Reject`: this event can never be delivered (the receiver refuses it): dead-lettered at once;
- `Gone` (HTTP 410): the receiver wants nothing more: the subscription is disabled.

Adding amoCRM or HubSpot is one more module with a class like `bot.crm.bitrix24.Bitrix24Sink`.
"""

from __future__ import annotations

from typing import Protocol

from bot.crm.events import CloudEvent


class Retry(Exception):
    """A passing failure: try again later (`after`: seconds the receiver asked for)."""

    def __init__(self, reason: str, after: float | None = None) -> None:
        super().__init__(reason)
        self.after = after


class Reject(Exception):
    """A permanent refusal of this one event."""


class Gone(Exception):
    """The receiver is gone for good (HTTP 410): stop sending to it."""


class Sink(Protocol):
    @property
    def name(self) -> str:
        """Unique and stable: the consumer group (`wh:<subscription id>`, `crm:bitrix24`)."""
        ...

    def wants(self, event_type: str) -> bool: ...

    async def deliver(self, event: CloudEvent) -> None: ...
