"""`/api/v1/contacts/{id}/merge` and `/unmerge`: join two contacts by hand, and take a merge back.

Automatic merges (a shared phone, a link code) happen in the worker; these calls are for the CRM
and for agents who know better. Unmerging restores identities, phones, tags and the profile of the
absorbed contact, but not its history: that stays merged (see docs/architecture.md), so unmerge is
an admin call — the `OMNIHUB_ADMIN_TOKEN` key, or anyone when the API runs without keys on loopback.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException

from bot.api.contact_models import MergeIn, MergeOut, UnmergeIn, UnmergeOut, contact_out
from bot.api.contacts import live_contact
from bot.api.deps import ApiKey, HubDep
from bot.context.merge import MergeError

router = APIRouter(prefix="/api/v1/contacts", tags=["contacts"])


def require_admin(key: ApiKey) -> str:
    if key not in ("admin", "anonymous"):
        raise HTTPException(403, "unmerge needs the admin key (OMNIHUB_ADMIN_TOKEN)")
    return key


@router.post("/{contact_id}/merge", response_model=MergeOut)
async def merge_contacts(contact_id: str, body: MergeIn, hub: HubDep, _: ApiKey) -> MergeOut:
    """Absorb `other_id` into this contact: one history, the newest dialog state, identities and tags
    unioned, attribute conflicts won by the more recently active contact."""
    if body.other_id == contact_id:
        raise HTTPException(422, f"cannot merge contact {contact_id!r} with itself")
    await live_contact(hub, contact_id)
    await live_contact(hub, body.other_id)
    try:
        merged = await hub.merger.merge(contact_id, body.other_id, "api")
    except MergeError as exc:
        raise HTTPException(exc.status, str(exc)) from None
    return MergeOut(contact=contact_out(await hub.store.load(contact_id)), absorbed_id=body.other_id,
                    event_id=merged.event_id)


@router.post("/{contact_id}/unmerge", response_model=UnmergeOut)
async def unmerge_contacts(
    contact_id: str, body: UnmergeIn, hub: HubDep, _: Annotated[str, Depends(require_admin)]
) -> UnmergeOut:
    await live_contact(hub, contact_id)
    try:
        event_id = await hub.merger.unmerge(contact_id, body.absorbed_id)
    except MergeError as exc:
        raise HTTPException(exc.status, str(exc)) from None
    survivor, restored = await hub.store.load(contact_id), await hub.store.load(body.absorbed_id)
    return UnmergeOut(survivor=contact_out(survivor), restored=contact_out(restored), event_id=event_id)
