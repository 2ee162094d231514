"""A campaign as a marketer writes it (YAML file, API): who, what per channel and language, the cascade.

The channel strategy is a list of steps. Each recipient gets step 1 on its channel (`preferred`: the
contact's preferred channel that may carry the purpose, `bot.pipeline.reach`; `next`: the next
messenger in that order that no earlier step used — never SMS); a step declares what
counts as success (`until`: sent, delivered, read, replied) and how long to wait for it (`within`
seconds); a recipient whose step-n message does not get there in time gets step n+1. SMS has no read
receipts: an SMS step judged on `read` is judged on delivery. Marketing needs that channel's
marketing consent; service does not. Texts are Jinja2 (`{{ contact.name }}`), per language or one
for all.
"""

from __future__ import annotations

import hashlib
import time
from datetime import datetime
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from bot.campaigns.segments import Segment
from bot.models import Button, Channel, Purpose

StepChannel = Channel | Literal["preferred", "next"]
Until = Literal["sent", "delivered", "read", "replied"]
StopOn = Literal["replied", "converted", "opted_out"]
Status = Literal["draft", "running", "paused", "done", "cancelled"]
STOP_ALL: tuple[StopOn, ...] = ("replied", "converted", "opted_out")
_CLOCK = r"^([01]\d|2[0-3]):[0-5]\d$"


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Step(Strict):
    channel: StepChannel
    text: str | dict[str, str] = Field(description='one text, or {"ru": …, "en": …} by the contact\'s language')
    buttons: list[Button] = Field(default_factory=list, max_length=10)
    until: Until = "delivered"
    within: float = Field(86_400, gt=0, le=90 * 86_400, description="seconds to wait for `until`")
    variants: dict[str, str | dict[str, str]] = Field(
        default_factory=dict, description="A/B: the text for the recipients of each variant (`split`)")

    @field_validator("text")
    @classmethod
    def _some_text(cls, text: str | dict[str, str]) -> str | dict[str, str]:
        texts = [text] if isinstance(text, str) else list(text.values())
        if not texts or not all(t.strip() for t in texts):
            raise ValueError("a step needs a text (or one per language)")
        if any(len(t) > 4096 for t in texts):
            raise ValueError("a step's text is at most 4096 characters")
        return text

    def text_for(self, language: str | None, default: str, variant: str | None = None) -> str:
        text = self.variants.get(variant, self.text) if variant else self.text
        if isinstance(text, str):
            return text
        return text.get(language or default) or text.get(default) or next(iter(text.values()))


class QuietHours(Strict):
    """No marketing message between `start` and `end` in the contact's time zone (attribute
    `timezone`, else `timezone` here); a step due then waits for `end`."""

    start: str = Field("21:00", pattern=_CLOCK)
    end: str = Field("09:00", pattern=_CLOCK)
    timezone: str = "UTC"

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown IANA time zone {value!r}") from None
        return value


class Trigger(Strict):
    """A journey: the campaign starts for one contact when this happens, not for a whole audience.
    Once per contact: a contact the journey already reached is not started again."""

    event: str | None = Field(None, min_length=1, max_length=100, pattern=r"^[\w.:-]+$",
                              description="a CRM event: POST /api/v1/contacts/{id}/events {\"name\": …}")
    conversion: bool = Field(False, description="the contact's conversion (an order) starts it")
    tag: str | None = Field(None, min_length=1, max_length=100, description="the tag added to the contact")
    inactive_days: float | None = Field(None, gt=0, le=3650, description="no message from the contact this long")

    @model_validator(mode="after")
    def _one(self) -> Trigger:
        given = [self.event is not None, self.conversion, self.tag is not None, self.inactive_days is not None]
        if sum(given) != 1:
            raise ValueError("a trigger is one of: event, conversion, tag, inactive_days")
        return self


class CampaignIn(Strict):
    name: str = Field(min_length=1, max_length=200)
    purpose: Purpose = "marketing"
    audience: Segment = Field(default_factory=Segment,
                              description='a segment (docs/segments.md), e.g. {"tags": ["vip"]}; a journey '
                              "starts only for the contacts of its trigger (the audience is not planned)")
    trigger: Trigger | None = None
    steps: list[Step] = Field(min_length=1, max_length=10)
    stop_on: list[StopOn] = Field(default_factory=lambda: list(STOP_ALL))
    quiet_hours: QuietHours | None = None
    start_at: datetime | None = None
    end_by: datetime | None = None
    cost: dict[Channel, float] = Field(default_factory=dict, description="per message part (SMS: per segment); "
                                       "default: the hub's sms_cost")
    split: dict[str, float] = Field(default_factory=dict, description='A/B: {"A": 1, "B": 1} shares of the '
                                    "audience; a step's `variants` give each its text")

    @model_validator(mode="after")
    def _window(self) -> CampaignIn:
        if self.start_at and self.end_by and self.end_by <= self.start_at:
            raise ValueError("end_by must be after start_at")
        if self.split and (len(self.split) < 2 or any(w <= 0 for w in self.split.values())):
            raise ValueError("a split names two or more variants with positive shares")
        for n, step in enumerate(self.steps, 1):
            if unknown := set(step.variants) - set(self.split):
                raise ValueError(f"step {n} has variants {sorted(unknown)} that `split` does not name")
        return self

    def variant_of(self, campaign_id: str, cid: str) -> str | None:
        """The variant a recipient is in: always the same one, by a hash of campaign and contact."""
        if not self.split:
            return None
        point = int(hashlib.sha256(f"{campaign_id}:{cid}".encode()).hexdigest()[:8], 16) / 0x1_0000_0000
        total, edge = sum(self.split.values()), 0.0
        for name, share in self.split.items():
            edge += share / total
            if point < edge:
                return name
        return next(reversed(self.split))


class Campaign(BaseModel):
    """A stored campaign: its definition, where it is, and when it got there."""

    id: str
    definition: CampaignIn
    status: Status = "draft"
    created_at: float = Field(default_factory=time.time)
    started_at: float | None = None
    finished_at: float | None = None
    recipients: int = 0
