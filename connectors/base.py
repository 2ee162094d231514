"""The contract every connector keeps, the abilities only some have, and the errors a webhook route
turns into HTTP answers.

An ability is a small protocol a connector declares by inheriting it (`class TelegramConnector(Polls,
...)`), so mypy checks the signatures where it is declared and the hub asks `isinstance(k, Polls)`
instead of knowing which channels can do what.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from bot.models import Capabilities, Channel, InboundEvent
from bot.rendering import RenderedPart


class WebhookError(Exception):
    """A webhook we refuse; `status` is the HTTP answer, the message says why."""

    status = 400


class BadSignature(WebhookError):
    status = 403


class BadPayload(WebhookError):
    status = 400


class SendError(Exception):
    """A send the provider refused. `retry_after` (seconds) is set when trying again may work."""

    def __init__(self, message: str, *, retry_after: float | None = None, permanent: bool = False):
        super().__init__(message)
        self.retry_after = retry_after
        self.permanent = permanent


@dataclass(frozen=True)
class WebhookRequest:
    """What a route hands a connector: the URL the provider signed, headers (lower-case) and raw body."""

    url: str
    headers: Mapping[str, str]
    body: bytes
    form: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class WebhookAnswer:
    """What the route answers once the events are stored (Twilio wants TwiML, Viber may greet)."""

    body: bytes = b""
    media_type: str = "application/json"


class Connector(Protocol):
    """A messenger. `parse` is pure; `send` holds an injected client created once per process."""

    channel: Channel
    capabilities: Capabilities

    def verify(self, request: WebhookRequest) -> None:
        """Raise `BadSignature` unless the request comes from the provider."""

    def parse(self, request: WebhookRequest) -> list[InboundEvent]:
        """Turn a verified request into events; raise `BadPayload` on a malformed body."""

    def answer(self, events: list[InboundEvent]) -> WebhookAnswer:
        """The HTTP body the provider expects once the events are stored."""

    async def send(self, user_id: str, part: RenderedPart) -> str | None:
        """Send one rendered part; return the provider's message id. Raise `SendError` on refusal."""

    async def start(self, public_url: str | None) -> None:
        """Open clients (once), register webhooks; called again to retry a registration that failed."""

    async def close(self) -> None:
        """Release clients."""


@runtime_checkable
class DeepLinks(Protocol):
    """A channel a link can open with a code already typed in (offered for linking identities)."""

    def deep_link(self, code: str) -> str:
        """The link; raises `ValueError` for a code the channel cannot carry."""
        ...


@runtime_checkable
class AcknowledgesCallbacks(Protocol):
    """A provider that waits for us to confirm some events (Telegram: a pressed button spins until then)."""

    def awaits_acknowledgement(self, events: list[InboundEvent]) -> bool:
        """Whether any of `events` needs `acknowledge` (cheap: called for every webhook)."""
        ...

    async def acknowledge(self, events: list[InboundEvent]) -> None:
        """Confirm them, once they are stored; logs failures, never raises."""
        ...


@runtime_checkable
class Polls(Protocol):
    """A provider we can ask for new events when it cannot reach us (no public URL)."""

    async def poll(self, on_events: Callable[[list[InboundEvent]], Awaitable[None]], stop: asyncio.Event) -> None:
        """Hand events to `on_events` until `stop` is set; confirm them to the provider only after it returned."""
        ...
