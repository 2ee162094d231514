"""Contact-addressed commands: what the API, agents, campaigns and the CRM do *to* a contact.

A command travels like a customer message: appended to the contact's partition stream (idempotent by
its id) and applied by the partition's worker, in order with the customer's own messages. So there
is still exactly one writer per contact — an agent's reply and the customer's next message cannot
race, and nothing needs WATCH against the worker. `apply` is a pure function of what was read; the
worker does the I/O.
"""

from __future__ import annotations

import time
from typing import Annotated, Literal

from pydantic import Field, TypeAdapter

from bot.context.history import HistoryEntry
from bot.context.store import Changes, Snapshot
from bot.models import Button, Channel, Frozen, OutboundMessage, Purpose, Reply
from bot.pipeline.turns import TurnOutcome

Mode = Literal["bot", "queued", "assigned", "resolved"]


class SendText(Frozen):
    """Say something to the contact on the channel they last wrote from (or the one named)."""

    kind: Literal["send"] = "send"
    id: str
    text: str = Field(min_length=1, max_length=4096)
    buttons: tuple[Button, ...] = ()
    channel: Channel | None = None
    author: Literal["agent", "campaign", "system"] = "system"
    purpose: Purpose = "service"
    campaign_id: str | None = None


class SetMode(Frozen):
    """Move the conversation between the bot and the people (handoff, assignment, resolution)."""

    kind: Literal["mode"] = "mode"
    id: str
    mode: Mode
    reason: str | None = Field(default=None, max_length=500)


Command = Annotated[SendText | SetMode, Field(discriminator="kind")]
COMMAND: TypeAdapter[SendText | SetMode] = TypeAdapter(Command)


class CommandRefused(Exception):
    """A command that cannot be applied to this contact as it is now (the reason says why)."""


def apply(snapshot: Snapshot, command: Command, entry_id: str) -> TurnOutcome:
    """The changes and the outbound messages of one command; `entry_id` is its stream entry."""
    changes = Changes(conversation={"last": entry_id})
    if isinstance(command, SetMode):
        if snapshot.mode != command.mode:
            changes.conversation["mode"] = command.mode
            changes.mode = (snapshot.mode if snapshot.conversation else "", command.mode)
        if command.reason is not None:
            changes.conversation["handoff"] = command.reason
        return TurnOutcome(changes)
    channel, user_id = address(snapshot, command.channel)
    message = OutboundMessage(
        id=command.id, contact_id=snapshot.cid, channel=channel, user_id=user_id,
        reply=Reply(text=command.text, buttons=command.buttons), purpose=command.purpose,
        campaign_id=command.campaign_id, author=command.author,
    )
    changes.history.append(HistoryEntry.outbound(message, time.time(), entry_id))
    return TurnOutcome(changes, [message])


def address(snapshot: Snapshot, channel: Channel | None) -> tuple[Channel, str]:
    """Where a message to this contact goes: the named channel's identity, else where they wrote last."""
    if channel is None:
        last, user_id = snapshot.conversation.get("ch"), snapshot.conversation.get("uid")
        if last and user_id:
            return last, user_id  # type: ignore[return-value]
        raise CommandRefused("the contact has not written on any channel yet")
    for identity in snapshot.identities:
        if identity["channel"] == channel:
            return channel, identity["id"]
    if channel in ("sms", "whatsapp") and snapshot.profile.get("phone"):
        return channel, snapshot.profile["phone"]
    raise CommandRefused(f"the contact has no {channel} identity")
