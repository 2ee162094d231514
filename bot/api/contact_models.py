"""The JSON shapes of `/api/v1/contacts`, and how a stored contact becomes one.

`ContactOut.identities`, `phone` and `id` and `HistoryItem`'s `channel`, `direction`, `text`, `at`
are the fixed contract of DESIGN.md; everything else is ours to extend.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from bot.context.history import HistoryEntry
from bot.context.profiles import preferred_channel
from bot.context.store import Snapshot
from bot.models import AttributeName, AttributeValue, Channel, Purpose

Tag = Annotated[str, StringConstraints(pattern=r"^[\w.:-]{1,64}$")]


class Identity(BaseModel):
    channel: str
    id: str


class ContactOut(BaseModel):
    id: str
    phone: str | None
    phones: list[str] = Field(description="every number that resolves to this contact, `phone` first")
    name: str | None
    language: str | None = Field(description="set through the API, else the one the customer writes in")
    language_set: bool = Field(description="true when set through the API, not detected")
    preferred_channel: str | None = Field(description="set explicitly, else the channel written from last")
    preferred_channel_set: bool = Field(description="true when set through the API, not learned")
    identities: list[Identity]
    attributes: dict[str, str]
    tags: list[str]
    mode: str
    last_seen: dict[str, datetime] = Field(description="last inbound message per channel")
    merged: list[str] = Field(description="ids of the contacts merged into this one")


class ContactList(BaseModel):
    items: list[ContactOut]
    next_cursor: int | None = Field(None, description="with `tag`: pass it back for the next page")


class HistoryItem(BaseModel):
    id: str
    channel: str
    direction: str
    author: str
    text: str | None
    at: datetime
    status: str | None = None
    provider_id: str | None = None
    buttons: list[dict[str, str]] = []
    payload: str | None = None
    error: str | None = None
    sms_segments: int | None = None
    sms_encoding: str | None = None
    cost: float | None = None
    template: str | None = None
    campaign_id: str | None = None


class HistoryPage(BaseModel):
    items: list[HistoryItem]
    total: int
    offset: int


class ContactPatch(BaseModel):
    """What a CRM pushes. Fields left out are untouched; `null` clears one (an attribute, the explicit
    preferred channel, the name, the language)."""

    model_config = ConfigDict(extra="forbid")

    name: Annotated[str, StringConstraints(min_length=1, max_length=200)] | None = None
    language: Annotated[str, StringConstraints(pattern=r"^[a-z]{2}$")] | None = None
    preferred_channel: Channel | None = None
    attributes: dict[AttributeName, AttributeValue | None] = {}
    add_tags: list[Tag] = []
    remove_tags: list[Tag] = []
    consent: dict[Channel, dict[Purpose, Literal["in", "out"]]] = Field(
        default_factory=dict, description='{"sms": {"marketing": "in"}}: recorded in the consent trail, source api')


class ContactUpsert(ContactPatch):
    """One contact of a batch: found by `id`, else by `phone` (created when nobody has that number)."""

    id: str | None = None
    phone: Annotated[str, StringConstraints(min_length=3, max_length=40)] | None = None


class BatchIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    items: list[ContactUpsert] = Field(min_length=1, max_length=500)


class BatchItemOut(BaseModel):
    id: str | None
    created: bool = False
    error: str | None = None


class BatchOut(BaseModel):
    items: list[BatchItemOut]


class ConversionIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=200, description="what was bought, e.g. an order number")
    amount: float = Field(ge=0, le=1e12)
    currency: str = Field(pattern=r"^[A-Z]{3}$", description="ISO 4217")
    campaign_id: str | None = Field(None, max_length=100, description="default: the campaign that wrote last")


class EventIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=100, pattern=r"^[\w.:-]+$", description="e.g. loyalty.joined")


class Triggered(BaseModel):
    journeys: list[str] = Field(description="the journeys this started for the contact")


class ConversionOut(BaseModel):
    id: str
    contact_id: str


class MergeIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    other_id: str = Field(description="the contact to absorb; it keeps a `merged_into` marker")


class UnmergeIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    absorbed_id: str


class MergeOut(BaseModel):
    contact: ContactOut
    absorbed_id: str
    event_id: str | None


class UnmergeOut(BaseModel):
    survivor: ContactOut
    restored: ContactOut
    event_id: str


class ExportOut(BaseModel):
    """Everything held about a contact, as stored (privacy export)."""

    id: str
    exported_at: datetime
    contact: ContactOut
    profile: dict[str, str]
    conversation: dict[str, str]
    history: list[dict[str, Any]]
    consent: list[dict[str, Any]] = Field(description="every consent change, oldest first")
    merged: list[dict[str, Any]] = Field(description="contacts merged into this one, with their original profiles")


def _at(seconds: str | float) -> datetime:
    return datetime.fromtimestamp(float(seconds), UTC)


def contact_out(s: Snapshot) -> ContactOut:
    profile = s.profile
    phone = profile.get("phone")
    extra = sorted(k[2:] for k in profile if k.startswith("p:") and k[2:] != phone)
    return ContactOut(
        id=s.cid, phone=phone, phones=([phone] if phone else []) + extra, name=profile.get("name"),
        language=profile.get("lang_set") or profile.get("lang"), language_set="lang_set" in profile,
        preferred_channel=preferred_channel(profile),
        preferred_channel_set="pref_set" in profile, identities=[Identity(**i) for i in s.identities],
        attributes=s.attributes, tags=s.tags, mode=s.mode,
        last_seen={k[5:]: _at(v) for k, v in profile.items() if k.startswith("seen:")},
        merged=sorted(k[2:] for k in profile if k.startswith("m:")),
    )


def history_item(entry: HistoryEntry) -> HistoryItem:
    return HistoryItem(
        id=entry.id, channel=entry.channel, direction=entry.direction, author=entry.author, text=entry.text,
        at=_at(entry.at), status=entry.status, provider_id=entry.provider_id or None,
        buttons=[b.model_dump() for b in entry.buttons], payload=entry.payload, error=entry.error,
        sms_segments=entry.sms_segments, sms_encoding=entry.sms_encoding, cost=entry.cost,
        template=entry.template, campaign_id=entry.campaign_id,
    )
