"""`/api/v1/campaigns` and `/api/v1/segments`: define, preview, launch, steer and read campaigns.

A campaign is created as a draft (`POST`), launched with `start` (the audience is planned then, from
the segment indexes), steered with `pause` / `resume` / `cancel`, and read with its figures per
channel and step (`stats`, also as CSV). A segment can be previewed (count and a sample) before a
campaign uses it, and saved under a name for campaigns to refer to.
"""

from __future__ import annotations

import csv
import io
import statistics
from datetime import UTC, datetime
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, HTTPException, Query, Response
from pydantic import BaseModel, Field, ValidationError

from bot.api.deps import ApiKey, HubDep
from bot.campaigns import segments
from bot.campaigns.model import Campaign, CampaignIn
from bot.campaigns.stats import CampaignFigures, ChannelFigures, figures
from bot.campaigns.store import CampaignError, audience
from bot.hub import Hub

router = APIRouter(prefix="/api/v1", tags=["campaigns"])


class CampaignOut(BaseModel):
    id: str
    name: str
    status: str
    purpose: str
    recipients: int
    pending: int | None = Field(None, description="steps still due (0: every recipient is settled)")
    created_at: datetime
    started_at: datetime | None
    definition: CampaignIn


class CampaignList(BaseModel):
    items: list[CampaignOut]


class PreviewOut(BaseModel):
    count: int
    sample: list[str]


def _at(epoch: float | None) -> datetime | None:
    return datetime.fromtimestamp(epoch, UTC) if epoch else None


def _out(campaign: Campaign, pending: int | None = None) -> CampaignOut:
    return CampaignOut(id=campaign.id, name=campaign.definition.name, status=campaign.status,
                       purpose=campaign.definition.purpose, recipients=campaign.recipients, pending=pending,
                       created_at=datetime.fromtimestamp(campaign.created_at, UTC), started_at=_at(campaign.started_at),
                       definition=campaign.definition)


async def _found(hub: Hub, campaign_id: str) -> Campaign:
    campaign = await hub.campaigns.get(campaign_id)
    if campaign is None:
        raise HTTPException(404, f"no campaign {campaign_id!r}")
    return campaign


@router.post("/campaigns", status_code=201, response_model=CampaignOut)
async def create(body: CampaignIn, hub: HubDep, _: ApiKey) -> CampaignOut:
    return _out(await hub.campaigns.create(body))


@router.get("/campaigns", response_model=CampaignList)
async def list_all(hub: HubDep, _: ApiKey, limit: Annotated[int, Query(ge=1, le=500)] = 100) -> CampaignList:
    return CampaignList(items=[_out(c) for c in await hub.campaigns.all(limit)])


@router.get("/campaigns/{campaign_id}", response_model=CampaignOut)
async def get(campaign_id: str, hub: HubDep, _: ApiKey) -> CampaignOut:
    campaign, pending = await hub.campaigns.settled(await _found(hub, campaign_id))
    return _out(campaign, pending)


@router.post("/campaigns/{campaign_id}/start", status_code=202, response_model=CampaignOut)
async def start(campaign_id: str, hub: HubDep, _: ApiKey) -> CampaignOut:
    campaign = await _found(hub, campaign_id)
    try:
        return _out(await hub.campaigns.start(campaign_id, audience(hub.redis, campaign.definition.audience)))
    except CampaignError as exc:
        raise HTTPException(exc.status, str(exc)) from None
    except segments.SegmentError as exc:
        raise HTTPException(422, str(exc)) from None


async def _steer(hub: Hub, campaign_id: str, status: str) -> CampaignOut:
    await _found(hub, campaign_id)
    try:
        return _out(await hub.campaigns.set_status(campaign_id, status))  # type: ignore[arg-type]
    except CampaignError as exc:
        raise HTTPException(exc.status, str(exc)) from None


@router.post("/campaigns/{campaign_id}/pause", response_model=CampaignOut)
async def pause(campaign_id: str, hub: HubDep, _: ApiKey) -> CampaignOut:
    return await _steer(hub, campaign_id, "paused")


@router.post("/campaigns/{campaign_id}/resume", response_model=CampaignOut)
async def resume(campaign_id: str, hub: HubDep, _: ApiKey) -> CampaignOut:
    return await _steer(hub, campaign_id, "running")


@router.post("/campaigns/{campaign_id}/cancel", response_model=CampaignOut)
async def cancel(campaign_id: str, hub: HubDep, _: ApiKey) -> CampaignOut:
    return await _steer(hub, campaign_id, "cancelled")


@router.get("/campaigns/{campaign_id}/stats", response_model=CampaignFigures)
async def stats(campaign_id: str, hub: HubDep, _: ApiKey) -> CampaignFigures:
    campaign = await _found(hub, campaign_id)
    return await figures(hub.redis, campaign_id, campaign.recipients)


@router.get("/campaigns/{campaign_id}/stats.csv", response_class=Response,
            description="One row per step and channel, then one per channel (step `all`).")
async def stats_csv(campaign_id: str, hub: HubDep, _: ApiKey) -> Response:
    campaign = await _found(hub, campaign_id)
    found = await figures(hub.redis, campaign_id, campaign.recipients)
    columns = list(ChannelFigures.model_fields)
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["step", "channel", *columns])
    rows: list[tuple[str, str, ChannelFigures]] = [
        (step, channel, f) for step, by_channel in sorted(found.steps.items()) for channel, f in by_channel.items()]
    rows += [("all", channel, f) for channel, f in found.channels.items()]
    for step, channel, f in rows:
        writer.writerow([step, channel, *(getattr(f, c) if getattr(f, c) is not None else "" for c in columns)])
    return Response(out.getvalue(), media_type="text/csv",
                    headers={"content-disposition": f'attachment; filename="{campaign_id}.csv"'})


class ChannelComparison(BaseModel):
    campaigns: int = 0
    sent: int = 0
    read: int = 0
    converted: int = 0
    cost: float = 0.0
    conversion_rate: float | None = None
    cost_per_conversion: float | None = None
    median_seconds_to_read: float | None = Field(None, description="the median of the campaigns' medians")


class SegmentComparison(BaseModel):
    audience: dict[str, Any]
    channels: dict[str, ChannelComparison]


@router.get("/campaigns-by-channel", response_model=list[SegmentComparison],
            description="Across campaigns, per audience (segment) and channel: conversion, cost and time "
            "to read side by side — which channel balances them for that segment.")
async def by_channel(hub: HubDep, _: ApiKey) -> list[SegmentComparison]:
    groups: dict[str, SegmentComparison] = {}
    medians: dict[tuple[str, str], list[float]] = {}
    for campaign in await hub.campaigns.all(500):
        if campaign.status == "draft":
            continue
        audience = campaign.definition.audience.model_dump(exclude_defaults=True)
        key = orjson.dumps(audience, option=orjson.OPT_SORT_KEYS).decode()
        group = groups.setdefault(key, SegmentComparison(audience=audience, channels={}))
        for channel, f in (await figures(hub.redis, campaign.id, campaign.recipients)).channels.items():
            row = group.channels.setdefault(channel, ChannelComparison())
            row.campaigns += 1
            row.sent, row.read, row.converted = row.sent + f.sent, row.read + f.read, row.converted + f.converted
            row.cost = round(row.cost + f.cost, 6)
            if f.median_seconds_to_read is not None:
                medians.setdefault((key, channel), []).append(f.median_seconds_to_read)
    for key, group in groups.items():
        for channel, row in group.channels.items():
            row.conversion_rate = round(row.converted / row.sent, 4) if row.sent else None
            row.cost_per_conversion = round(row.cost / row.converted, 4) if row.converted else None
            if found := medians.get((key, channel)):
                row.median_seconds_to_read = statistics.median(found)
    return list(groups.values())


@router.post("/segments/preview", response_model=PreviewOut)
async def preview(body: dict[str, Any], hub: HubDep, _: ApiKey,
                  sample: Annotated[int, Query(ge=0, le=100)] = 20) -> PreviewOut:
    """How many contacts a segment selects now, and a sample of their ids."""
    try:
        segment = segments.Segment.model_validate(body)
        found = await segments.preview(hub.redis, segment, sample)
    except ValidationError as exc:
        raise HTTPException(422, exc.errors(include_url=False, include_context=False)) from None
    except segments.SegmentError as exc:
        raise HTTPException(422, str(exc)) from None
    return PreviewOut(count=found.count, sample=found.sample)
