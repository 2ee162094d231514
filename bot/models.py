"""The channel-neutral model every part of the hub speaks.

Connectors turn provider payloads into `InboundEvent`s and render `OutboundMessage`s; nothing past a
connector sees a provider format. The models are frozen so an event read from a stream is never
mutated in place by a later step.
"""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

Channel = Literal["telegram", "whatsapp", "viber", "sms"]
CHANNELS: tuple[Channel, ...] = ("telegram", "whatsapp", "viber", "sms")
Purpose = Literal["service", "marketing"]
AttributeName = Annotated[str, StringConstraints(pattern=r"^[\w.-]{1,64}$")]  # a contact attribute's name
AttributeValue = Annotated[str, StringConstraints(max_length=2000)]


class Frozen(BaseModel):
    # No NaN or infinity anywhere: JSON has no way to write them (pydantic writes null), so a model
    # holding one could be stored but never read back.
    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)


class EventKind(StrEnum):
    message = "message"
    opened = "opened"  # the customer opened the chat (Viber conversation_started): nothing may be sent yet
    status = "status"
    subscribed = "subscribed"
    unsubscribed = "unsubscribed"


class DeliveryStatus(StrEnum):
    queued = "queued"
    sent = "sent"
    delivered = "delivered"
    read = "read"
    failed = "failed"
    undelivered = "undelivered"


class Attachment(Frozen):
    type: Literal["image", "document", "audio", "video", "voice", "sticker"]
    url: str | None = None
    file_id: str | None = None
    mime: str | None = None
    name: str | None = None


class Location(Frozen):
    latitude: float = Field(ge=-90, le=90)
    longitude: float = Field(ge=-180, le=180)


class InboundEvent(Frozen):
    """One thing a provider told us: a customer message, a delivery status, a (un)subscription."""

    kind: EventKind
    channel: Channel
    user_id: str = Field(description="chat id, E.164 phone or Viber id: who on that channel")
    provider_id: str = Field(description="the provider's id of this event; retries carry the same id")
    text: str | None = None
    payload: str | None = Field(default=None, description="payload of a pressed button")
    attachments: tuple[Attachment, ...] = ()
    location: Location | None = None
    contact_phone: str | None = Field(default=None, description="a phone the customer shared")
    user_name: str | None = None
    language: str | None = None
    start_param: str | None = Field(default=None, description="deep-link payload (/start CODE)")
    status: DeliveryStatus | None = None
    status_of: str | None = Field(default=None, description="provider id of the message a status is about")
    error: str | None = None
    at: datetime = Field(default_factory=lambda: datetime.now(UTC))

    @property
    def dedupe_key(self) -> str:
        return f"{self.channel}:{self.kind}:{self.provider_id}"


class Button(Frozen):
    title: str
    payload: str


class Media(Frozen):
    url: str
    type: Literal["image", "document", "video", "audio"] = "image"
    mime: str | None = None


class Template(Frozen):
    """A pre-approved provider template (WhatsApp Content SID) for messages outside the service window."""

    name: str
    variables: dict[str, str] = Field(default_factory=dict)


class Reply(Frozen):
    text: str | None = None
    buttons: tuple[Button, ...] = ()
    media: tuple[Media, ...] = ()
    template: Template | None = None


class OutboundMessage(Frozen):
    """A reply on its way out: addressed to one channel identity, idempotent by `id`."""

    id: str
    contact_id: str
    channel: Channel
    user_id: str
    reply: Reply
    purpose: Purpose = "service"
    campaign_id: str | None = None
    author: Literal["bot", "agent", "campaign", "system"] = "bot"
    agent_id: str | None = None  # who, when the author is an agent
    keyword_reply: bool = Field(
        default=False,
        description="answers an SMS keyword (STOP, START, HELP): carriers require the answer, so it goes "
        "out whatever the consent ledger says",
    )

    @property
    def bulk(self) -> bool:
        """Campaign traffic rides the partition's bulk lane, behind live replies (bot.pipeline.dispatch)."""
        return self.campaign_id is not None or self.author == "campaign"


class Capabilities(Frozen):
    """What a channel can show; the shared renderer reads this, connectors only declare it."""

    max_text: int
    native_buttons: bool
    max_buttons: int = 0
    max_button_title: int = 64
    media: bool = True
    read_receipts: bool = False
    delivery_receipts: bool = False
    sms_segments: bool = False
    template_outside_window: bool = False


class SendResult(Frozen):
    provider_id: str | None
    status: DeliveryStatus = DeliveryStatus.sent
    error: str | None = None
