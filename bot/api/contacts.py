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
    BatchIn,
    BatchItemOut,
    BatchOut,
    ContactList,
    ContactOut,
    ContactPatch,
    ContactUpsert,
    ConversionIn,
    ConversionOut,
    EventIn,
    ExportOut,
    HistoryPage,
    Tag,
    Triggered,
    contact_out,
    history_item,
)
from bot.api.deps import COMMAND_WAIT_SECONDS, ApiKey, HubDep, IdempotencyKey, command_id
from bot.context.phones import BadPhone, normalise
from bot.context.store import Snapshot, new_id
from bot.hub import Hub
from bot.models import Channel
from bot.pipeline.commands import Command, ConsentSet, RecordConversion, UpdateContact
from bot.pipeline.ingest import NotYetApplied

router = APIRouter(prefix="/api/v1/contacts", tags=["contacts"])
# items of one batch waiting for the worker at once: each wait holds a Redis connection (BLPOP), and a
# 500-item batch would take the whole pool the workers need to answer them
BATCH_AT_ONCE = 32


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


def update_command(body: ContactPatch, create: bool = False, phone: str | None = None) -> UpdateContact:
    """The contact-addressed command a patch is (422 for a contradiction in it)."""
    given = body.model_fields_set
    # a language set here wins over the one detected from messages until it is cleared (bot.dialogue.language)
    named = {"name": "name", "language": "lang_set", "preferred_channel": "pref_set"}
    fields: dict[str, str | None] = {field: getattr(body, attr) for attr, field in named.items() if attr in given}
    fields.update({f"a:{name}": value for name, value in body.attributes.items()})
    if phone is not None:
        fields["phone"] = phone
    if overlap := set(body.add_tags) & set(body.remove_tags):
        raise HTTPException(422, f"tags both added and removed: {sorted(overlap)}")
    consent = tuple(ConsentSet(channel=channel, purpose=purpose, state=state)
                    for channel, purposes in body.consent.items() for purpose, state in purposes.items())
    return UpdateContact(id=new_id("upd"), fields=fields, add_tags=tuple(body.add_tags),
                         remove_tags=tuple(body.remove_tags), consent=consent, create=create)


async def applied(hub: Hub, command: Command, cid: str) -> None:
    """Through the contact's partition (one writer per contact, and the feed's events with it);
    waits for the worker: 409 with its refusal, 504 when it has not answered yet."""
    try:
        refusal = await hub.ingest.applied(command, cid, COMMAND_WAIT_SECONDS)
    except NotYetApplied as exc:
        raise HTTPException(504, str(exc)) from None
    if refusal:
        raise HTTPException(409, refusal)


@router.patch("/{contact_id}", response_model=ContactOut)
@router.put("/{contact_id}", response_model=ContactOut, description="The same partial update as PATCH.")
async def update_contact(contact_id: str, body: ContactPatch, hub: HubDep, _: ApiKey) -> ContactOut:
    await live_contact(hub, contact_id)
    await applied(hub, update_command(body), contact_id)
    if body.add_tags:
        await hub.campaigns.triggered(contact_id, tags=body.add_tags)
    return contact_out(await hub.store.load(contact_id))


@router.post("/batch", response_model=BatchOut,
             description="Upsert up to 500 contacts: each by `id`, or by `phone` (created if nobody has it).")
async def upsert_contacts(body: BatchIn, hub: HubDep, _: ApiKey) -> BatchOut:
    waiting = asyncio.Semaphore(BATCH_AT_ONCE)

    async def one(item: ContactUpsert) -> BatchItemOut:
        async with waiting:
            return await upsert(item)

    async def upsert(item: ContactUpsert) -> BatchItemOut:
        try:
            cid, created, phone = await _target(hub, item)
            await applied(hub, update_command(item, create=created, phone=phone), cid)
            if item.add_tags:
                await hub.campaigns.triggered(cid, tags=item.add_tags)
        except HTTPException as exc:
            return BatchItemOut(id=item.id, error=str(exc.detail))
        return BatchItemOut(id=cid, created=created)

    return BatchOut(items=list(await asyncio.gather(*(one(item) for item in body.items))))


async def _target(hub: Hub, item: ContactUpsert) -> tuple[str, bool, str | None]:
    """(contact id, whether it is new, the phone to write) for one upsert."""
    if item.id is not None:
        await live_contact(hub, item.id)
        return item.id, False, None
    if item.phone is None:
        raise HTTPException(422, "give `id` or `phone`")
    try:
        phone = normalise(item.phone, hub.settings.context.default_region)
    except BadPhone as exc:
        raise HTTPException(422, str(exc)) from None
    if (cid := await hub.identities.by_phone(phone)) is not None:
        snapshot = await hub.store.load(cid)
        if snapshot.profile and "merged_into" not in snapshot.profile:
            return cid, False, None
    return await hub.identities.resolve("sms", phone), True, phone


@router.post("/{contact_id}/conversions", status_code=201, response_model=ConversionOut)
async def record_conversion(contact_id: str, body: ConversionIn, hub: HubDep, _: ApiKey,
                            idempotency_key: IdempotencyKey = None) -> ConversionOut:
    """An order or other conversion, attributed to the campaign named (or the one that wrote last)
    and to the contact's conversation; counted for segments (recency, frequency, monetary)."""
    await live_contact(hub, contact_id)
    command = RecordConversion(id=command_id("cv", contact_id, idempotency_key), name=body.name, amount=body.amount,
                               currency=body.currency, campaign_id=body.campaign_id)
    await applied(hub, command, contact_id)
    await hub.campaigns.triggered(contact_id, conversion=True)
    return ConversionOut(id=command.id, contact_id=contact_id)


@router.post("/{contact_id}/events", status_code=202, response_model=Triggered)
async def post_event(contact_id: str, body: EventIn, hub: HubDep, _: ApiKey) -> Triggered:
    """Something the CRM knows happened to the contact (`loyalty.joined`): journeys whose trigger it
    is start for them, once per contact."""
    await live_contact(hub, contact_id)
    return Triggered(journeys=await hub.campaigns.triggered(contact_id, event=body.name))


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
