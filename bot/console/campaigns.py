"""`/console/api/campaigns/*`: the JSON the console's Campaigns page reads, and pause / resume / cancel.

Marketers, supervisors and admins only (403 for an agent, 401 without a session); the steering routes
also need the session's CSRF token. The page polls a running campaign's figures every two seconds
(the live socket is for conversation notices, and a marketer handles none); `pending` is counted only
for a running or paused campaign, the one state in which it changes. The CSV is the API's, byte for
byte (`bot.api.campaigns.stats_csv`), so an export from the console and one from the API agree.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Response
from starlette.requests import HTTPConnection

from bot.api.campaigns import stats_csv
from bot.campaigns.model import Campaign, Status
from bot.campaigns.stats import figures
from bot.campaigns.store import CampaignError
from bot.console.deps import AnyRole, Parts, SignedIn, check_csrf

CAMPAIGNERS = frozenset({"marketer", "supervisor", "admin"})

router = APIRouter(prefix="/console/api/campaigns", include_in_schema=False)


async def require_campaigner(me: AnyRole) -> SignedIn:
    if me.agent.role not in CAMPAIGNERS:
        raise HTTPException(403, f"the {me.agent.role} role does not see campaigns")
    return me


async def require_acting_campaigner(conn: HTTPConnection,
                                    me: Annotated[SignedIn, Depends(require_campaigner)]) -> SignedIn:
    check_csrf(conn, me)
    return me


Campaigner = Annotated[SignedIn, Depends(require_campaigner)]
Steering = Annotated[SignedIn, Depends(require_acting_campaigner)]


async def summary(parts: Parts, campaign: Campaign) -> dict[str, Any]:
    """One row of the list: progress is the recipients whose steps are all settled (none still due)."""
    campaign, pending = await parts.hub.campaigns.settled(campaign)
    progress = campaign.recipients - pending if pending is not None else (
        campaign.recipients if campaign.status == "done" else None)
    return {"id": campaign.id, "name": campaign.definition.name, "status": campaign.status,
            "purpose": campaign.definition.purpose, "recipients": campaign.recipients, "pending": pending,
            "progress": progress, "created_at": campaign.created_at, "started_at": campaign.started_at,
            "finished_at": campaign.finished_at}


async def found(parts: Parts, campaign_id: str) -> Campaign:
    campaign = await parts.hub.campaigns.get(campaign_id)
    if campaign is None:
        raise HTTPException(404, f"no campaign {campaign_id!r}")
    return campaign


@router.get("")
async def listed(parts: Parts, _: Campaigner) -> dict[str, Any]:
    return {"items": [await summary(parts, c) for c in await parts.hub.campaigns.all()]}


@router.get("/{campaign_id}")
async def one(campaign_id: str, parts: Parts, _: Campaigner) -> dict[str, Any]:
    """The campaign, its steps and its figures per channel (one fetch for the page's pane)."""
    campaign = await found(parts, campaign_id)
    counted = await figures(parts.hub.redis, campaign.id, campaign.recipients)
    return {"campaign": {**await summary(parts, campaign),
                         "definition": campaign.definition.model_dump(mode="json")},
            "figures": counted.model_dump(mode="json")}


@router.get("/{campaign_id}/stats.csv")
async def csv_export(campaign_id: str, parts: Parts, me: Campaigner) -> Response:
    return await stats_csv(campaign_id, parts.hub, me.agent.id)


async def steer(parts: Parts, campaign_id: str, status: Status) -> dict[str, Any]:
    await found(parts, campaign_id)
    try:
        changed = await parts.hub.campaigns.set_status(campaign_id, status)
    except CampaignError as exc:  # 409: not from this status (a draft cannot pause, a cancelled one resume)
        raise HTTPException(exc.status, str(exc)) from None
    return await summary(parts, changed)


@router.post("/{campaign_id}/pause")
async def pause(campaign_id: str, parts: Parts, _: Steering) -> dict[str, Any]:
    return await steer(parts, campaign_id, "paused")


@router.post("/{campaign_id}/resume")
async def resume(campaign_id: str, parts: Parts, _: Steering) -> dict[str, Any]:
    return await steer(parts, campaign_id, "running")


@router.post("/{campaign_id}/cancel")
async def cancel(campaign_id: str, parts: Parts, _: Steering) -> dict[str, Any]:
    return await steer(parts, campaign_id, "cancelled")
