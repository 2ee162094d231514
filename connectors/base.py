"""The contract every connector keeps, and the errors a webhook route turns into HTTP answers."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol

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
