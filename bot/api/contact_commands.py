"""`/api/v1/contacts/{id}/messages` and `/handoff`: act on a contact through its partition.

Both queue a contact-addressed command (`bot.pipeline.commands`) and answer 202: the partition's
worker applies it in order with the customer's own messages, so an API send never overtakes the bot's
answer to the message before it. An `Idempotency-Key` header makes a retried call a no-op.
"""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, HTTPException
from pydantic import BaseModel, Field

from bot.api.contacts import live_contact
from bot.api.deps import ApiKey, HubDep, IdempotencyKey, command_id
from bot.models import Button, Channel, Purpose
from bot.pipeline.commands import CommandRefused, SendText, address
from bot.pipeline.reach import best_channel

router = APIRouter(prefix="/api/v1/contacts", tags=["contacts"])


class MessageIn(BaseModel):
    text: str = Field(min_length=1, max_length=4096)
    buttons: list[Button] = Field(default_factory=list, max_length=10)
    channel: Channel | Literal["best"] | None = Field(
        default=None, description='default: where the customer wrote last; "best": the preferred channel, then '
        "the fallback order, skipping channels without an identity, without consent for the purpose, or WhatsApp "
        "outside its window with no template (bot.pipeline.reach)")
    purpose: Purpose = "service"


class HandoffIn(BaseModel):
    reason: str | None = Field(default=None, max_length=500)


class Queued(BaseModel):
    id: str
    queued: bool = Field(description="false when the Idempotency-Key was used before")
    channel: Channel | None = Field(None, description="the channel it goes out on (default: where they wrote last)")


@router.post("/{cid}/messages", status_code=202, response_model=Queued)
async def send_message(cid: str, body: MessageIn, hub: HubDep, _: ApiKey, idempotency_key: IdempotencyKey = None
                       ) -> Queued:
    """Send a message to the contact (consent and the WhatsApp window are checked when it goes out)."""
    snapshot = await live_contact(hub, cid)
    channel = body.channel
    if channel == "best":
        s = hub.settings
        channel = best_channel(snapshot, body.purpose, s.context.fallback_order, hub.connectors,
                               s.twilio.whatsapp_fallback_template is not None)
        if channel is None:
            raise HTTPException(409, f"no channel may carry a {body.purpose} message to this contact now")
    try:
        address(snapshot, channel)  # refuse now what the worker would refuse later
    except CommandRefused as exc:
        raise HTTPException(409, str(exc)) from None
    command = SendText(id=command_id("api", cid, idempotency_key), text=body.text, buttons=tuple(body.buttons),
                       channel=channel, purpose=body.purpose)
    return Queued(id=command.id, queued=await hub.ingest.command(command, cid), channel=address(snapshot, channel)[0])


@router.post("/{cid}/handoff", status_code=202, response_model=Queued)
async def hand_off(cid: str, body: HandoffIn, hub: HubDep, _: ApiKey, idempotency_key: IdempotencyKey = None
                   ) -> Queued:
    """Queue the contact's conversation for a person: the bot stops answering it."""
    await live_contact(hub, cid)
    handoff_id = command_id("hof", cid, idempotency_key)
    return Queued(id=handoff_id, queued=await hub.desk.hand_off(cid, body.reason or "api", command_id=handoff_id))
