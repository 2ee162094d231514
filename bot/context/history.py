"""One entry of a contact's history: a message in or out, and what became of it.

Entries are JSON in a capped Redis list (`omni:{cid}:h`), so they are stored under short keys (`ch`,
`tx`, `st`, …: the aliases below) and without empty fields; the names here say what each one is.
The Lua script in bot.context.store updates entries in place by those stored keys (`id`, `pid`,
`st`, `err`), so the aliases are a storage format: renaming one needs a migration of kept data.
Keys this model does not know are ignored on reading, so an older process reads newer entries.

A text that is one of the dialogs' fixed words is stored as its digest (`tk`, bot.context.phrases)
instead of the words, and so is a fixed row of buttons (`bk`); `ContextStore` fills `text` and
`buttons` back in when it reads the entry. (A process older than `tk` reads it without them.)
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from bot.models import Attachment, Button, Channel, InboundEvent, Location, OutboundMessage

Author = Literal["customer", "bot", "agent", "campaign", "system"]


class Delivery(BaseModel):
    """What sending a message (and the provider's status callbacks) adds to its entry."""

    model_config = ConfigDict(frozen=True, populate_by_name=True, extra="ignore")

    status: str | None = Field(None, alias="st")  # queued sent delivered read | failed undelivered blocked
    error: str | None = Field(None, alias="err")
    provider_id: str | None = Field(None, alias="pid")
    sms_segments: int | None = Field(None, alias="seg")
    sms_encoding: str | None = Field(None, alias="enc")
    cost: float | None = None
    template: str | None = Field(None, alias="tpl")  # sent as this template (outside the WhatsApp window)

    def stored(self) -> dict[str, Any]:
        """The stored form: short keys, empty fields left out (what `ContextStore.update_history` takes)."""
        return self.model_dump(mode="json", by_alias=True, exclude_defaults=True)


class HistoryEntry(Delivery):
    id: str  # the inbound stream entry id, or the outbound message id
    channel: Channel = Field(alias="ch")
    direction: Literal["in", "out", "note"] = Field(alias="d")  # a note is an agent's, never sent
    at: float  # epoch seconds
    author: Author = Field(alias="by")
    text: str | None = Field(None, alias="tx")
    buttons: tuple[Button, ...] = Field((), alias="btn")
    payload: str | None = Field(None, alias="pl")  # of a pressed button
    attachments: tuple[Attachment, ...] = Field((), alias="att")
    location: Location | None = Field(None, alias="loc")
    contact_phone: str | None = Field(None, alias="phone")  # a phone the customer shared
    answers: str | None = Field(None, alias="src")  # the inbound entry an outbound one answers (replay)
    campaign_id: str | None = Field(None, alias="cmp")
    keyword_reply: bool = Field(False, alias="kw")  # the confirmation of STOP/START/HELP
    purpose: str | None = Field(None, alias="pur")  # "marketing"; absent for service messages
    agent_id: str | None = Field(None, alias="ag")  # the agent who wrote it (replies and notes)
    phrase: str | None = Field(None, alias="tk")  # `text` is these fixed words (stored instead of them)
    buttons_phrase: str | None = Field(None, alias="bk")  # `buttons` are this fixed row (likewise)

    @classmethod
    def inbound(cls, event: InboundEvent, entry_id: str, at: float) -> HistoryEntry:
        return cls(
            id=entry_id, channel=event.channel, direction="in", at=at, author="customer", text=event.text,
            payload=event.payload, attachments=event.attachments, location=event.location,
            contact_phone=event.contact_phone,
        )

    @classmethod
    def outbound(cls, message: OutboundMessage, at: float, answers: str | None = None) -> HistoryEntry:
        """A message as it is queued; `answers`: the inbound entry it replies to, if any."""
        return cls(
            id=message.id, channel=message.channel, direction="out", at=at, author=message.author,
            status="queued", text=message.reply.text, buttons=message.reply.buttons, answers=answers,
            campaign_id=message.campaign_id, keyword_reply=message.keyword_reply,
            purpose=message.purpose if message.purpose != "service" else None, agent_id=message.agent_id,
        )

    @classmethod
    def read(cls, stored: str | bytes) -> HistoryEntry:
        """The entry as stored: a `phrase` without its `text` yet (see `ContextStore`)."""
        return cls.model_validate_json(stored)

    def stored(self) -> dict[str, Any]:
        """The stored form: short keys, empty fields left out, and the text and buttons left out when
        phrases name them."""
        named = {field for field, phrase in (("text", self.phrase), ("buttons", self.buttons_phrase)) if phrase}
        return self.model_dump(mode="json", by_alias=True, exclude_defaults=True, exclude=named)

    def delivered(self, delivery: Delivery) -> HistoryEntry:
        """This entry with a send's outcome on it (for a message queued without an entry)."""
        return self.model_copy(update=delivery.model_dump(exclude_defaults=True))
