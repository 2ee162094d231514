"""A campaign's figures per channel and step, counted from the feed — once each.

`CampaignStats` is one more sink of the event feed (bot.crm.sinks): it reads the campaign's events
(step sent / skipped / reached, replied, stopped) and the messages' own (sent with its cost,
delivered, read, failed) and a conversion attributed to the campaign, and counts them into
`omni:cmpstat:{<campaign>}`. The feed is delivered at least once, so every count goes through a
guard in `omni:cmpseen:{<campaign>}` (HSETNX of "<contact>|<step>|<what>", in the same script as the
increment, one slot): a redelivered event counts nothing. Reads also record the time from send to
read (a sorted set per channel, for the median) and whether the next step had gone out already — a
"late read": the fallback was paid for and the first message was read after all.
"""

from __future__ import annotations

import math
import statistics
from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field
from redis.asyncio import Redis

from bot.context import keys
from bot.crm.events import CloudEvent

NAME = "stats:campaigns"
METRICS = ("audience", "sent", "delivered", "read", "replied", "converted", "opted_out", "failed", "skipped",
           "late_reads")
_WANTED = frozenset({
    "omnihub.campaign.step_sent", "omnihub.campaign.step_skipped", "omnihub.campaign.step_reached",
    "omnihub.campaign.replied", "omnihub.campaign.stopped", "omnihub.message.sent", "omnihub.message.delivered",
    "omnihub.message.read", "omnihub.message.failed", "omnihub.conversion.recorded",
})

# KEYS: seen, stats; ARGV: guard field, guard value, then counter field, increment pairs
_COUNT_ONCE = """
if redis.call('HSETNX', KEYS[1], ARGV[1], ARGV[2]) == 0 then return 0 end
for i = 3, #ARGV, 2 do redis.call('HINCRBYFLOAT', KEYS[2], ARGV[i], ARGV[i + 1]) end
return 1
"""


def step_of(message_id: str | None) -> int | None:
    """Campaign messages are `cmp-<campaign>-<step>` (bot.campaigns.steps)."""
    if not message_id or not message_id.startswith("cmp"):
        return None
    tail = message_id.rpartition("-")[2]
    return int(tail) if tail.isdigit() else None


class CampaignStats:
    def __init__(self, redis: Redis) -> None:
        self.redis = redis
        self._count = redis.register_script(_COUNT_ONCE)

    @property
    def name(self) -> str:
        return NAME

    def wants(self, event_type: str) -> bool:
        return event_type in _WANTED

    async def deliver(self, event: CloudEvent) -> None:
        data, cid = event.data, event.subject
        campaign = data.get("campaign_id")
        if not campaign:
            return
        kind = event.type.removeprefix("omnihub.")
        channel = data.get("channel") or data.get("campaign_channel") or "none"
        step = data.get("step") or data.get("campaign_step") or step_of(data.get("message_id"))
        variant = await self._variant(campaign, cid, kind, step, data.get("variant"))
        if kind == "campaign.step_sent":
            await self._once(campaign, f"{cid}|{step}|sent", _epoch(event), channel, step, "sent", variant=variant)
        elif kind == "campaign.step_skipped":
            await self._once(campaign, f"{cid}|{step}|skipped", "1", channel, step, "skipped",
                             extra={f"why|{data.get('reason')}": 1})
        elif kind == "campaign.step_reached":
            await self._once(campaign, f"{cid}|{step}|reached", "1", channel, step, "reached")
        elif kind == "campaign.replied":
            await self._once(campaign, f"{cid}|replied", "1", channel, step, "replied", variant=variant)
        elif kind == "campaign.stopped" and str(data.get("reason", "")).startswith("opted"):
            await self._once(campaign, f"{cid}|opted_out", "1", channel, step, "opted_out")
        elif kind == "message.sent" and data.get("cost"):
            await self._once(campaign, f"{cid}|{data['message_id']}|cost", "1", channel, step, "cost",
                             amount=float(data["cost"]))
        elif kind == "message.delivered":
            await self._once(campaign, f"{cid}|{step}|delivered", "1", channel, step, "delivered")
        elif kind == "message.failed":
            await self._once(campaign, f"{cid}|{step}|failed", "1", channel, step, "failed")
        elif kind == "message.read" and await self._once(campaign, f"{cid}|{step}|read", _epoch(event), channel,
                                                          step, "read", variant=variant):
            await self._after_read(campaign, cid, channel, step, event)
        elif kind == "conversion.recorded":
            await self._once(campaign, f"{data['conversion_id']}|converted", "1", channel, step, "converted",
                             extra={f"{channel}|revenue": float(data.get("amount") or 0)}, variant=variant)

    async def _variant(self, campaign: str, cid: str, kind: str, step: Any, named: str | None) -> str | None:
        """A/B: the recipient's variant, counted for its first step and its conversions only."""
        if kind == "campaign.step_sent" and named:
            await self.redis.hset(keys.campaign_seen(campaign), f"{cid}|variant", named)
            return named if step == 1 else None
        if kind in ("message.read", "campaign.replied") and step != 1:
            return None
        if kind in ("message.read", "campaign.replied", "conversion.recorded"):
            found = await self.redis.hget(keys.campaign_seen(campaign), f"{cid}|variant")
            return str(found) if found else None
        return None

    async def _once(self, campaign: str, guard: str, value: str, channel: str, step: Any, metric: str,
                    amount: float = 1, extra: dict[str, float] | None = None, variant: str | None = None) -> bool:
        counters = {metric: amount, f"{channel}|{metric}": amount, f"{channel}|{step}|{metric}": amount,
                    **(extra or {})}
        if variant:
            counters[f"v|{variant}|{metric}"] = amount
        args: list[str | float] = [guard, value]
        for name, increment in counters.items():
            args += [name, increment]
        return bool(await self._count(keys=[keys.campaign_seen(campaign), keys.campaign_stats(campaign)], args=args))

    async def _after_read(self, campaign: str, cid: str, channel: str, step: Any, event: CloudEvent) -> None:
        """Time to read, and a late read: the next step had gone out before this one was read."""
        seen = keys.campaign_seen(campaign)
        sent_at, next_sent = await self.redis.hmget(seen, [f"{cid}|{step}|sent", f"{cid}|{int(step or 0) + 1}|sent"])
        if sent_at:
            await self.redis.zadd(keys.campaign_read_times(campaign, channel),
                                  {f"{cid}|{step}": max(0.0, float(_epoch(event)) - float(sent_at))})
        if next_sent:
            await self._once(campaign, f"{cid}|{step}|late", "1", channel, step, "late_reads")


def _epoch(event: CloudEvent) -> str:
    return f"{datetime.fromisoformat(event.time.replace('Z', '+00:00')).timestamp():.3f}"


class ChannelFigures(BaseModel):
    sent: int = 0
    delivered: int = 0
    read: int = 0
    replied: int = 0
    converted: int = 0
    opted_out: int = 0
    failed: int = 0
    skipped: int = 0
    late_reads: int = 0
    reached: int = 0
    cost: float = 0.0
    revenue: float = 0.0
    cost_per_conversion: float | None = None
    median_seconds_to_read: float | None = None


class VariantFigures(BaseModel):
    """A/B, per variant: its recipients (step 1 sent), step 1 read and replied, and conversions."""

    sent: int = 0
    read: int = 0
    replied: int = 0
    converted: int = 0


class CampaignFigures(BaseModel):
    recipients: int
    variants: dict[str, VariantFigures] = Field(default_factory=dict)
    significance: str | None = Field(None, description="A/B: whether the best two variants' conversion "
                                     "(else read) rates differ more than chance would make them")
    channels: dict[str, ChannelFigures] = Field(default_factory=dict)
    steps: dict[str, dict[str, ChannelFigures]] = Field(default_factory=dict, description="step -> channel ->")
    skipped_because: dict[str, int] = Field(default_factory=dict)
    totals: ChannelFigures = Field(default_factory=ChannelFigures)


async def figures(redis: Redis, campaign_id: str, recipients: int) -> CampaignFigures:
    raw: dict[str, str] = await redis.hgetall(keys.campaign_stats(campaign_id))  # type: ignore[assignment]
    found = CampaignFigures(recipients=max(recipients, int(float(raw.get("audience", 0)))))  # a journey counts its own
    totals: dict[str, float] = {}
    for name, value in raw.items():
        parts = name.split("|")
        number = float(value)
        if parts[0] == "why":
            found.skipped_because[parts[1]] = int(number)
        elif parts[0] == "v" and len(parts) == 3:
            variant = found.variants.setdefault(parts[1], VariantFigures())
            if parts[2] in VariantFigures.model_fields:
                setattr(variant, parts[2], int(number))
        elif len(parts) == 1:
            totals[parts[0]] = number
        elif len(parts) == 2:
            _put(found.channels.setdefault(parts[0], ChannelFigures()), parts[1], number)
        else:
            _put(found.steps.setdefault(parts[1], {}).setdefault(parts[0], ChannelFigures()), parts[2], number)
    for metric, number in totals.items():
        _put(found.totals, metric, number)
    for channel, figures_ in found.channels.items():
        scored: list[tuple[str, float]] = await redis.zrange(  # type: ignore[assignment]
            keys.campaign_read_times(campaign_id, channel), 0, -1, withscores=True)
        times = [float(seconds) for _, seconds in scored]
        figures_.median_seconds_to_read = round(statistics.median(times), 3) if times else None
        if figures_.converted:
            figures_.cost_per_conversion = round(figures_.cost / figures_.converted, 4)
        found.totals.revenue += figures_.revenue
    if found.totals.converted:
        found.totals.cost_per_conversion = round(found.totals.cost / found.totals.converted, 4)
    found.significance = significance(found.variants)
    return found


def significance(variants: dict[str, VariantFigures]) -> str | None:
    """A two-proportion z-test between the two variants with most recipients, on conversion (or, with
    no conversion yet, on step 1 being read), worded for a marketer."""
    ranked = sorted(((v.sent, name, v) for name, v in variants.items() if v.sent), reverse=True)[:2]
    if len(ranked) < 2:
        return None
    (n1, a, fa), (n2, b, fb) = ranked
    metric = "converted" if fa.converted + fb.converted else "read"
    x1, x2 = getattr(fa, metric), getattr(fb, metric)
    pooled = (x1 + x2) / (n1 + n2)
    spread = math.sqrt(pooled * (1 - pooled) * (1 / n1 + 1 / n2))
    if spread == 0:
        return f"{a} and {b}: no difference in {metric} yet ({x1}/{n1} vs {x2}/{n2})"
    z = (x1 / n1 - x2 / n2) / spread
    p = math.erfc(abs(z) / math.sqrt(2))
    verdict = "significant at 5 %" if p < 0.05 else "not significant yet: keep collecting"
    return (f"{metric}: {a} {100 * x1 / n1:.1f} % ({x1}/{n1}) vs {b} {100 * x2 / n2:.1f} % ({x2}/{n2}); "
            f"z = {z:.2f}, p = {p:.3f} — {verdict}")


def _put(target: ChannelFigures, metric: str, number: float) -> None:
    if metric in ChannelFigures.model_fields and metric not in ("cost_per_conversion", "median_seconds_to_read"):
        kind = ChannelFigures.model_fields[metric].annotation
        setattr(target, metric, round(number, 6) if kind in (float, "float") else int(number))
