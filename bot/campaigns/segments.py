"""Segments: who a campaign is for, as a small filter language evaluated from the indexes in Redis.

A `Segment` ANDs its filters: all of `tags`, at least one of `any_tags`, none of `not_tags`, an
identity on every one of `channels`, "in" for every `consent` pair, one of `language`, every
`attributes` value, `last_seen` / `created` windows, conversion totals and RFM thresholds, and the
saved segment named by `segment`. The contract's `{"tags": ["vip"]}` is a segment as it stands.

Evaluation never reads a profile: the sets and sorted sets of bot.context.indexes are combined in
one round trip (ZRANGESTORE for each range, ZINTERSTORE of everything positive, ZDIFFSTORE of what
is excluded) into a scratch sorted set under `omni:{ix}` with a short TTL, which the caller pages
through with stable offsets. The indexes are supersets of the profiles, so a result may hold a few
contacts that no longer match; whoever acts on a recipient re-checks the profile (docs/segments.md).
"""

from __future__ import annotations

import secrets
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Annotated, Any, Self

import orjson
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator, model_validator
from redis.asyncio import Redis

from bot.context import indexes, keys
from bot.models import Channel, Purpose

DAY = 86400.0
SCRATCH_TTL = 300  # seconds a result stays readable
MAX_NESTING = 5  # saved segments naming saved segments
Tag = Annotated[str, StringConstraints(pattern=r"^[\w.:-]{1,64}$")]
Name = Annotated[str, StringConstraints(pattern=r"^[\w.-]{1,64}$")]
Days = Annotated[float, Field(gt=0, le=36500)]


class _Filter(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Window(_Filter):
    """A date filter: within the last N days, or longer ago than N days (one of the two)."""

    within_days: Days | None = None
    older_than_days: Days | None = None

    @model_validator(mode="after")
    def _one(self) -> Self:
        if (self.within_days is None) == (self.older_than_days is None):
            raise ValueError("give one of within_days or older_than_days")
        return self

    def bounds(self, now: float) -> tuple[float, float]:
        if self.within_days is not None:
            return now - self.within_days * DAY, float("inf")
        assert self.older_than_days is not None
        return float("-inf"), now - self.older_than_days * DAY


class ConsentGiven(_Filter):
    channel: Channel
    purpose: Purpose = "marketing"


class Conversions(_Filter):
    """Lifetime totals the CRM recorded (`cv:n`, `cv:sum`) and the last one's time (`cv:last`)."""

    min_count: int | None = Field(None, ge=0)
    max_count: int | None = Field(None, ge=0)  # includes contacts who never converted
    min_total: float | None = None
    since_days: Days | None = None  # the last conversion within N days

    @model_validator(mode="after")
    def _ordered(self) -> Self:
        if self.min_count is not None and self.max_count is not None and self.min_count > self.max_count:
            raise ValueError(f"min_count {self.min_count} is above max_count {self.max_count}")
        return self


class Rfm(_Filter):
    """Recency, frequency and monetary thresholds over the same totals."""

    max_recency_days: Days | None = None  # last conversion at most N days ago
    min_frequency: int | None = Field(None, ge=1)
    min_monetary: float | None = None


class Segment(_Filter):
    tags: list[Tag] = []
    any_tags: list[Tag] = []
    not_tags: list[Tag] = []
    channels: list[Channel] = []
    consent: list[ConsentGiven] = []
    language: list[Annotated[str, StringConstraints(pattern=r"^[a-z]{2}$")]] = []
    attributes: dict[Name, Annotated[str, StringConstraints(max_length=2000)]] = {}
    last_seen: Window | None = None
    created: Window | None = None
    conversions: Conversions | None = None
    rfm: Rfm | None = None
    segment: Name | None = None  # a saved segment, ANDed with the rest

    @field_validator("language", mode="before")
    @classmethod
    def _one_or_many(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value


@dataclass(frozen=True)
class SegmentResult:
    """An evaluated segment: `count` contact ids in the sorted set `key`, readable for `ttl` seconds."""

    key: str
    count: int
    ttl: int

    async def page(self, redis: Redis, start: int = 0, count: int = 1000) -> list[str]:
        """Ids `start` to `start + count - 1`, in a stable order (the key does not change)."""
        return [str(m) for m in await redis.zrange(self.key, start, start + count - 1)]

    async def ids(self, redis: Redis, page: int = 1000) -> AsyncIterator[str]:
        for start in range(0, self.count, page):
            for cid in await self.page(redis, start, page):
                yield cid


@dataclass(frozen=True)
class Preview:
    count: int
    sample: list[str]


class SegmentError(ValueError):
    """A segment that names a saved segment that is missing, or itself (the API answers 422)."""


@dataclass
class _Plan:
    """The evaluation's commands: positive keys, ranges to store first, keys to subtract."""

    scratch: list[str]
    positive: list[str]
    ranges: list[tuple[str, str, float, float]]  # (scratch key, zset, min, max)
    unions: list[tuple[str, list[str]]]  # (scratch key, set keys)
    negative: list[str]

    def temp(self) -> str:
        key = keys.segment_scratch(secrets.token_hex(8))
        self.scratch.append(key)
        return key

    def range(self, zset: str, low: float, high: float, positive: bool = True) -> None:
        key = self.temp()
        self.ranges.append((key, keys.ranked(zset), low, high))
        (self.positive if positive else self.negative).append(key)

    def union(self, members: list[str]) -> None:
        if len(members) == 1:
            self.positive.append(members[0])
        elif members:
            key = self.temp()
            self.unions.append((key, members))
            self.positive.append(key)


def _plan(segment: Segment, now: float) -> _Plan:
    p = _Plan([], [], [], [], [])
    p.positive += [keys.tag(t) for t in segment.tags]
    p.positive += [keys.with_channel(c) for c in segment.channels]
    p.positive += [keys.with_consent(c.channel, c.purpose, "in") for c in segment.consent]
    p.positive += [keys.with_attribute(name, v[:indexes.ATTRIBUTE_CAP]) for name, v in segment.attributes.items()]
    p.union([keys.tag(t) for t in segment.any_tags])
    p.union([keys.with_language(lang) for lang in segment.language])
    p.negative += [keys.tag(t) for t in segment.not_tags]
    if segment.last_seen:
        p.range("seen", *segment.last_seen.bounds(now))
    if segment.created:
        p.range("created", *segment.created.bounds(now))
    if cv := segment.conversions:
        if cv.min_count:
            p.range("cv:n", cv.min_count, float("inf"))
        if cv.max_count is not None:  # never converted counts as 0: subtract those above the cap
            p.range("cv:n", cv.max_count + 0.5, float("inf"), positive=False)
        if cv.min_total is not None:
            p.range("cv:sum", cv.min_total, float("inf"))
        if cv.since_days:
            p.range("cv:last", now - cv.since_days * DAY, float("inf"))
    if rfm := segment.rfm:
        if rfm.max_recency_days:
            p.range("cv:last", now - rfm.max_recency_days * DAY, float("inf"))
        if rfm.min_frequency:
            p.range("cv:n", rfm.min_frequency, float("inf"))
        if rfm.min_monetary is not None:
            p.range("cv:sum", rfm.min_monetary, float("inf"))
    return p


def _score(x: float) -> str:
    return {float("inf"): "+inf", float("-inf"): "-inf"}.get(x, repr(x))


async def evaluate(redis: Redis, segment: Segment, now: float | None = None, ttl: int = SCRATCH_TTL,
                   _depth: int = 0) -> SegmentResult:
    """The contacts `segment` selects, as a scratch sorted set (the index's superset of them)."""
    now = time.time() if now is None else now
    plan = _plan(segment, now)
    if segment.segment is not None:
        if _depth >= MAX_NESTING:
            raise SegmentError(f"saved segments nest deeper than {MAX_NESTING} (a loop?) at {segment.segment!r}")
        saved = await SavedSegments(redis).get(segment.segment)
        if saved is None:
            raise SegmentError(f"no saved segment {segment.segment!r}")
        inner = await evaluate(redis, saved, now, ttl, _depth + 1)
        plan.scratch.append(inner.key)
        plan.positive.append(inner.key)
    result = keys.segment_scratch(secrets.token_hex(8))
    positive = plan.positive or [keys.EVERYONE]
    positive = list(dict.fromkeys(positive))
    # raw commands: redis-py's cluster pipeline blocks its multi-key methods, but routes these by
    # their keys, which all share the `{ix}` slot
    async with redis.pipeline(transaction=False) as pipe:
        for key, zset, low, high in plan.ranges:
            pipe.execute_command("ZRANGESTORE", key, zset, _score(low), _score(high), "BYSCORE")
        for key, members in plan.unions:
            pipe.execute_command("SUNIONSTORE", key, *members)
        pipe.execute_command("ZINTERSTORE", result, len(positive), *positive, "WEIGHTS", *[0] * len(positive))
        if plan.negative:
            pipe.execute_command("ZDIFFSTORE", result, 1 + len(plan.negative), result, *plan.negative)
        pipe.expire(result, ttl)
        pipe.zcard(result)
        if plan.scratch:
            pipe.execute_command("DEL", *plan.scratch)
        found = await pipe.execute()
    count = found[-2] if plan.scratch else found[-1]
    return SegmentResult(result, int(count), ttl)


async def preview(redis: Redis, segment: Segment, sample: int = 20, now: float | None = None) -> Preview:
    """How many contacts the segment selects, and up to `sample` of them at random."""
    result = await evaluate(redis, segment, now, ttl=30)
    picked = await redis.zrandmember(result.key, sample) if sample and result.count else []
    await redis.delete(result.key)
    return Preview(result.count, sorted(str(m) for m in picked or []))


class SavedSegments:
    """Named segments, kept as JSON in one hash (`omni:segments`)."""

    def __init__(self, redis: Redis) -> None:
        self.redis = redis

    async def save(self, name: str, segment: Segment) -> None:
        if segment.segment == name:
            raise SegmentError(f"segment {name!r} cannot name itself")
        await self.redis.hset(keys.SAVED_SEGMENTS, name, segment.model_dump_json(exclude_defaults=True))

    async def get(self, name: str) -> Segment | None:
        raw = await self.redis.hget(keys.SAVED_SEGMENTS, name)
        return Segment.model_validate_json(raw) if raw else None

    async def list(self) -> dict[str, Segment]:
        raw = await self.redis.hgetall(keys.SAVED_SEGMENTS)
        return {str(name): Segment.model_validate(orjson.loads(body)) for name, body in sorted(raw.items())}

    async def delete(self, name: str) -> bool:
        return bool(await self.redis.hdel(keys.SAVED_SEGMENTS, name))
