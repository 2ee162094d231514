"""`/api/v1/contacts/{id}/messages` and `/handoff`: act on a contact through its partition.

Both queue a contact-addressed command (`bot.pipeline.commands`) and answer 202: the partition's
worker applies it in order with the customer's own messages, so an API send never overtakes the bot's
answer to the message before it. An `Idempotency-Key` header makes a retried call a no-op.
"""

from __future__ import annotations

import hashlib
from typing import Annotated

from fastapi import APIRouter, Header, HTTPException
from pydantic import BaseModel, Field

from bot.api.contacts import live_contact
from bot.api.deps import ApiKey, HubDep
from bot.context.store import new_id
from bot.models import Button, Channel, Purpose
from bot.pipeline.commands import CommandRefused, SendText, address

router = APIRouter(prefix="/api/v1/contacts", tags=["contacts"])
IdempotencyKey = Annotated[str | None, Header(max_length=200, description="the same key: the same command, once")]


class MessageIn(BaseModel):
    text: str = Field(min_length=1, max_length=4096)
    buttons: list[Button] = Field(default_factory=list, max_length=10)
    channel: Channel | None = Field(default=None, description="default: where the customer wrote last")
    purpose: Purpose = "service"


class HandoffIn(BaseModel):
    reason: str | None = Field(default=None, max_length=500)


class Queued(BaseModel):
    id: str
    queued: bool = Field(description="false when the Idempotency-Key was used before")


def _command_id(prefix: str, cid: str, key: str | None) -> str:
    if key is None:
        return new_id(prefix)
    return prefix + hashlib.sha256(f"{cid}\n{key}".encode()).hexdigest()[:24]


@router.post("/{cid}/messages", status_code=202, response_model=Queued)
async def send_message(cid: str, body: MessageIn, hub: HubDep, _: ApiKey, idempotency_key: IdempotencyKey = None
                       ) -> Queued:
    """Send a message to the contact (consent and the WhatsApp window are checked when it goes out)."""
    snapshot = await live_contact(hub, cid)
    try:
        address(snapshot, body.channel)  # refuse now what the worker would refuse later
    except CommandRefused as exc:
        raise HTTPException(409, str(exc)) from None
    command = SendText(id=_command_id("api", cid, idempotency_key), text=body.text, buttons=tuple(body.buttons),
                       channel=body.channel, purpose=body.purpose)
    return Queued(id=command.id, queued=await hub.ingest.command(command, cid))


@router.post("/{cid}/handoff", status_code=202, response_model=Queued)
async def hand_off(cid: str, body: HandoffIn, hub: HubDep, _: ApiKey, idempotency_key: IdempotencyKey = None
                   ) -> Queued:
    """Queue the contact's conversation for a person: the bot stops answering it."""
    await live_contact(hub, cid)
    command_id = _command_id("hof", cid, idempotency_key)
    return Queued(id=command_id, queued=await hub.desk.hand_off(cid, body.reason or "api", command_id=command_id))
