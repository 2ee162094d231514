"""`/api/v1/contacts`: find a customer (phone, channel identity, tag), read and update the profile,
read the unified history, and the privacy calls: export everything, erase everything.

A contact merged into another answers 404 naming the survivor: its id is history, and the
`contact.merged` event told the CRM where it went.
"""

from __future__ import annotations

import asyncio
from typing import Annotated

from fastapi import APIRouter, HTTPException, Query, Response

from bot.api.contact_models import (
    ContactList,
    ContactOut,
    ContactPatch,
    ExportOut,
    HistoryPage,
    Tag,
    contact_out,
    history_item,
)
from bot.api.deps import ApiKey, HubDep
from bot.context.phones import BadPhone
from bot.context.profiles import GoneContact, ProfileChange
from bot.context.store import Snapshot
from bot.hub import Hub
from bot.models import Channel

router = APIRouter(prefix="/api/v1/contacts", tags=["contacts"])


async def live_contact(hub: Hub, cid: str) -> Snapshot:
    """The contact, or 404 (saying where a merged contact went)."""
    snapshot = await hub.store.load(cid)
    if into := snapshot.profile.get("merged_into"):
        raise HTTPException(404, f"contact {cid!r} was merged into {into!r}")
    if not snapshot.profile:
        raise HTTPException(404, f"no contact {cid!r}")
    return snapshot


async def _found(hub: Hub, ids: list[str]) -> list[ContactOut]:
    """Contacts an index points at; one whose first message is still on its way has no profile yet."""
    snapshots = await asyncio.gather(*(hub.store.load(cid) for cid in ids))
    return [contact_out(s) for s in snapshots if s.profile and "merged_into" not in s.profile]


@router.get("", response_model=ContactList)
async def find_contacts(
    hub: HubDep,
    _: ApiKey,
    phone: Annotated[str | None, Query(description="any spelling: +7 999 123-45-67, 89991234567")] = None,
    channel: Annotated[Channel | None, Query(description="with `user_id`: a channel identity")] = None,
    user_id: str | None = None,
    tag: Tag | None = None,
    cursor: Annotated[int, Query(ge=0, le=2**64 - 1,  # what Redis' SSCAN takes
                                 description="with `tag`: `next_cursor` of the previous page")] = 0,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> ContactList:
    if tag is not None:
        next_cursor, ids = await hub.profiles.tagged(tag, cursor, limit)
        tagged = [c for c in await _found(hub, ids) if tag in c.tags]  # the index is a superset of the profiles
        return ContactList(items=tagged, next_cursor=next_cursor or None)
    try:
        if phone:
            cid = await hub.identities.by_phone(phone)
        elif channel and user_id:
            cid = await hub.identities.lookup(channel, user_id)
        else:
            raise HTTPException(400, "give `phone`, `channel` and `user_id`, or `tag`")
    except BadPhone as exc:
        raise HTTPException(422, str(exc)) from None
    return ContactList(items=await _found(hub, [cid] if cid else []))


@router.get("/{contact_id}", response_model=ContactOut)
async def get_contact(contact_id: str, hub: HubDep, _: ApiKey) -> ContactOut:
    return contact_out(await live_contact(hub, contact_id))


@router.patch("/{contact_id}", response_model=ContactOut)
@router.put("/{contact_id}", response_model=ContactOut, description="The same partial update as PATCH.")
async def update_contact(contact_id: str, body: ContactPatch, hub: HubDep, _: ApiKey) -> ContactOut:
    given = body.model_fields_set
    # a language set here wins over the one detected from messages until it is cleared (bot.dialogue.language)
    named = {"name": "name", "language": "lang_set", "preferred_channel": "pref_set"}
    fields: dict[str, str | None] = {field: getattr(body, attr) for attr, field in named.items() if attr in given}
    fields.update({f"a:{name}": value for name, value in body.attributes.items()})
    if overlap := set(body.add_tags) & set(body.remove_tags):
        raise HTTPException(422, f"tags both added and removed: {sorted(overlap)}")
    try:
        await hub.profiles.change(contact_id, ProfileChange(fields, body.add_tags, body.remove_tags))
    except GoneContact as exc:
        raise HTTPException(404, str(exc)) from None
    return contact_out(await hub.store.load(contact_id))


@router.get("/{contact_id}/history", response_model=HistoryPage)
async def get_history(
    contact_id: str,
    hub: HubDep,
    _: ApiKey,
    offset: Annotated[int, Query(ge=0)] = 0,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    notes: Annotated[bool, Query(description="also the agents' internal notes (direction \"note\")")] = False,
) -> HistoryPage:
    """What was said in and out, oldest first; agents' notes only when asked for (`direction` is "in"
    or "out" otherwise, as the contract has it). `total` and `offset` count every kept entry."""
    await live_contact(hub, contact_id)
    total, entries = await hub.store.history(contact_id, offset, limit)
    shown = [e for e in entries if notes or e.direction != "note"]
    return HistoryPage(items=[history_item(e) for e in shown], total=total, offset=offset)


@router.get("/{contact_id}/export", response_model=ExportOut)
async def export_contact(contact_id: str, hub: HubDep, _: ApiKey) -> ExportOut:
    snapshot = await live_contact(hub, contact_id)
    held = await hub.privacy.export(contact_id)
    if held is None:
        raise HTTPException(404, f"no contact {contact_id!r}")
    return ExportOut(contact=contact_out(snapshot), **held)


@router.delete("/{contact_id}", status_code=204)
async def erase_contact(contact_id: str, hub: HubDep, _: ApiKey) -> Response:
    await live_contact(hub, contact_id)
    if await hub.privacy.erase(contact_id) is None:
        raise HTTPException(404, f"no contact {contact_id!r}")
    return Response(status_code=204)
