"""`/api/v1/contacts`: find a customer, read their unified history, erase them."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

import phonenumbers
from fastapi import APIRouter, HTTPException, Query, Response
from pydantic import BaseModel

from bot.api.deps import ApiKey, HubDep
from bot.context import keys
from bot.context.store import Snapshot
from bot.models import CHANNELS

router = APIRouter(prefix="/api/v1/contacts", tags=["contacts"])


class Identity(BaseModel):
    channel: str
    id: str


class ContactOut(BaseModel):
    id: str
    phone: str | None
    name: str | None
    language: str | None
    preferred_channel: str | None
    identities: list[Identity]
    attributes: dict[str, str]
    tags: list[str]
    mode: str


class ContactList(BaseModel):
    items: list[ContactOut]


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


class HistoryPage(BaseModel):
    items: list[HistoryItem]
    total: int
    offset: int


def contact_out(s: Snapshot) -> ContactOut:
    return ContactOut(
        id=s.cid, phone=s.profile.get("phone"), name=s.profile.get("name"), language=s.profile.get("lang"),
        preferred_channel=s.profile.get("pref"), identities=[Identity(**i) for i in s.identities],
        attributes=s.attributes, tags=s.tags, mode=s.mode,
    )


def normalise_phone(raw: str, region: str) -> str:
    try:
        number = phonenumbers.parse(raw, region)
    except phonenumbers.NumberParseException as exc:
        raise HTTPException(422, f"not a phone number: {raw!r} ({exc})") from None
    if not phonenumbers.is_possible_number(number):
        raise HTTPException(422, f"not a possible phone number: {raw!r}")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


@router.get("", response_model=ContactList)
async def find_contacts(
    hub: HubDep,
    _: ApiKey,
    phone: str | None = None,
    channel: Annotated[str | None, Query(description="with `user_id`: a channel identity")] = None,
    user_id: str | None = None,
) -> ContactList:
    if phone:
        cid = await hub.store.by_phone(normalise_phone(phone, hub.settings.context.default_region))
    elif channel and user_id:
        if channel not in CHANNELS:
            raise HTTPException(422, f"unknown channel {channel!r}; one of {', '.join(CHANNELS)}")
        found = await hub.redis.get(keys.identity(channel, user_id))
        cid = str(found) if found else None
    else:
        raise HTTPException(400, "give `phone`, or `channel` and `user_id`")
    if cid is None:
        return ContactList(items=[])
    snapshot = await hub.store.load(cid)
    return ContactList(items=[contact_out(snapshot)] if snapshot.profile else [])


@router.get("/{contact_id}", response_model=ContactOut)
async def get_contact(contact_id: str, hub: HubDep, _: ApiKey) -> ContactOut:
    snapshot = await hub.store.load(contact_id)
    if not snapshot.profile:
        raise HTTPException(404, f"no contact {contact_id!r}")
    return contact_out(snapshot)


def history_item(entry: dict[str, Any]) -> HistoryItem:
    return HistoryItem(
        id=entry["id"], channel=entry["ch"], direction=entry["d"], author=entry.get("by", "customer"),
        text=entry.get("tx"), at=datetime.fromtimestamp(entry["at"], UTC), status=entry.get("st"),
        provider_id=entry.get("pid") or None, buttons=entry.get("btn", []), payload=entry.get("pl"),
        error=entry.get("err"),
    )


@router.get("/{contact_id}/history", response_model=HistoryPage)
async def get_history(
    contact_id: str,
    hub: HubDep,
    _: ApiKey,
    offset: Annotated[int, Query(ge=0)] = 0,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> HistoryPage:
    if not await hub.store.exists(contact_id):
        raise HTTPException(404, f"no contact {contact_id!r}")
    total, entries = await hub.store.history(contact_id, offset, limit)
    return HistoryPage(items=[history_item(e) for e in entries], total=total, offset=offset)


@router.delete("/{contact_id}", status_code=204)
async def erase_contact(contact_id: str, hub: HubDep, _: ApiKey) -> Response:
    if not await hub.store.erase(contact_id):
        raise HTTPException(404, f"no contact {contact_id!r}")
    return Response(status_code=204)
