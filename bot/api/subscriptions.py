"""`/api/v1/webhooks`: subscribe to the event feed, and look after a subscription.

Create (the secret is shown here, and again only when rotated), list, read, disable / enable,
rotate the secret, delete; send a test ping; read a subscription's figures and dead letters; deliver
a dead letter again, or replay everything since a moment (`bot.crm.replay`).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Literal

from fastapi import APIRouter, HTTPException, Query, Response
from pydantic import BaseModel, Field

from bot.api.deps import ApiKey, HubDep
from bot.crm import replay
from bot.crm.ping import ping
from bot.crm.stats import SinkStats, sink_stats
from bot.crm.subscriptions import BadSubscription, Subscription
from bot.hub import Hub

router = APIRouter(prefix="/api/v1/webhooks", tags=["CRM feed"])


class SubscriptionIn(BaseModel):
    url: str = Field(pattern=r"^https?://", max_length=2000)
    secret: str | None = Field(None, max_length=200, description="whsec_<base64>; one is made when left out")
    events: list[str] = Field(default_factory=lambda: ["*"], min_length=1, max_length=100,
                              description='event types, "omnihub.message.*", or "*" for all (docs/events.md)')
    description: str | None = Field(None, max_length=500)


class SubscriptionOut(BaseModel):
    id: str
    url: str
    events: list[str]
    status: Literal["active", "disabled"]
    disabled_reason: str | None
    created_at: datetime
    description: str | None
    secret: str | None = Field(None, description="only when created or rotated")


class SubscriptionList(BaseModel):
    items: list[SubscriptionOut]


class TestOut(BaseModel):
    delivered: bool
    detail: str


class DeadList(BaseModel):
    items: list[replay.DeadEvent]


class ReplayIn(BaseModel):
    since: datetime = Field(description="ISO-8601; every event from then on is sent again")


class ReplayOut(BaseModel):
    queued: int


def _out(sub: Subscription, show_secret: bool = False) -> SubscriptionOut:
    return SubscriptionOut(id=sub.id, url=sub.url, events=sub.events, status=sub.status,
                           disabled_reason=sub.disabled_reason, created_at=datetime.fromtimestamp(sub.created_at, UTC),
                           description=sub.description, secret=sub.secret if show_secret else None)


async def _found(hub: Hub, subscription_id: str) -> Subscription:
    sub = await hub.subscriptions.get(subscription_id)
    if sub is None:
        raise HTTPException(404, f"no webhook subscription {subscription_id!r}")
    return sub


@router.post("", status_code=201, response_model=SubscriptionOut)
async def create(body: SubscriptionIn, hub: HubDep, _: ApiKey) -> SubscriptionOut:
    try:
        sub = await hub.subscriptions.create(body.url, body.secret, body.events, body.description)
    except BadSubscription as exc:
        raise HTTPException(422, str(exc)) from None
    return _out(sub, show_secret=True)


@router.get("", response_model=SubscriptionList)
async def list_all(hub: HubDep, _: ApiKey) -> SubscriptionList:
    return SubscriptionList(items=[_out(s) for s in await hub.subscriptions.all()])


@router.get("/{subscription_id}", response_model=SubscriptionOut)
async def get(subscription_id: str, hub: HubDep, _: ApiKey) -> SubscriptionOut:
    return _out(await _found(hub, subscription_id))


@router.delete("/{subscription_id}", status_code=204)
async def delete(subscription_id: str, hub: HubDep, _: ApiKey) -> Response:
    if not await hub.subscriptions.delete(subscription_id):
        raise HTTPException(404, f"no webhook subscription {subscription_id!r}")
    return Response(status_code=204)


@router.post("/{subscription_id}/disable", response_model=SubscriptionOut)
async def disable(subscription_id: str, hub: HubDep, _: ApiKey) -> SubscriptionOut:
    await _found(hub, subscription_id)
    await hub.subscriptions.disable(subscription_id, "disabled through the API")
    return _out(await _found(hub, subscription_id))


@router.post("/{subscription_id}/enable", response_model=SubscriptionOut,
             description="Deliver again from now on; replay what was missed with `/replay`.")
async def enable(subscription_id: str, hub: HubDep, _: ApiKey) -> SubscriptionOut:
    await _found(hub, subscription_id)
    await hub.subscriptions.enable(subscription_id)
    return _out(await _found(hub, subscription_id))


@router.post("/{subscription_id}/rotate-secret", response_model=SubscriptionOut,
             description="A new secret; deliveries are signed with the old one too for 24 hours.")
async def rotate(subscription_id: str, hub: HubDep, _: ApiKey) -> SubscriptionOut:
    await _found(hub, subscription_id)
    sub = await hub.subscriptions.rotate(subscription_id)
    return _out(sub or await _found(hub, subscription_id), show_secret=True)


@router.post("/{subscription_id}/test", response_model=TestOut,
             description="POST a signed `omnihub.webhook.test` event to the URL now, outside the feed.")
async def test(subscription_id: str, hub: HubDep, _: ApiKey) -> TestOut:
    sub = await _found(hub, subscription_id)
    delivered, detail = await ping(sub, hub.feed.poster, hub.settings.crm.timeout_seconds)
    return TestOut(delivered=delivered, detail=detail)


@router.get("/{subscription_id}/stats", response_model=SinkStats)
async def stats(subscription_id: str, hub: HubDep, _: ApiKey) -> SinkStats:
    sub = await _found(hub, subscription_id)
    return await sink_stats(hub.redis, hub.settings.pipeline.partitions, sub.sink_name)


@router.get("/{subscription_id}/dead-letters", response_model=DeadList)
async def dead(subscription_id: str, hub: HubDep, _: ApiKey,
               limit: Annotated[int, Query(ge=1, le=1000)] = 100) -> DeadList:
    sub = await _found(hub, subscription_id)
    return DeadList(items=await replay.dead_letters(hub.redis, hub.settings.pipeline.partitions, sub.sink_name,
                                                    limit))


@router.post("/{subscription_id}/dead-letters/{letter_id}/redeliver", status_code=202)
async def redeliver(subscription_id: str, letter_id: str, hub: HubDep, _: ApiKey) -> dict[str, bool]:
    sub = await _found(hub, subscription_id)
    try:
        found = await replay.redeliver(hub.redis, letter_id, sub.sink_name)
    except ValueError as exc:
        raise HTTPException(422, str(exc)) from None
    if not found:
        raise HTTPException(404, f"no dead letter {letter_id!r} of {subscription_id!r}")
    return {"queued": True}


@router.post("/{subscription_id}/replay", status_code=202, response_model=ReplayOut)
async def replay_since(subscription_id: str, body: ReplayIn, hub: HubDep, _: ApiKey) -> ReplayOut:
    sub = await _found(hub, subscription_id)
    queued = await replay.replay(hub.redis, hub.settings.pipeline.partitions, sub.sink_name, body.since, sub.wants)
    return ReplayOut(queued=queued)
