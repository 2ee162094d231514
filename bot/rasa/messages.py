"""Rasa's REST-channel answer → our replies, and the `omnihub` control messages inside it.

A Rasa turn answers with bot messages: text, buttons (or quick replies), an image, an attachment or a
`custom` JSON. Each becomes one `Reply`, which the connectors render per channel as they render ours.
A `custom` payload may also name a channel (`{"whatsapp": {...}, "telegram": {...}}`): the customer's
channel's part is used, the others are for other channels.

Actions cannot change the conversation directly: Rasa calls them while the worker is still in the
customer's turn, so a command sent from an action would queue behind the very turn it belongs to.
Instead an action (ours at `/rasa/webhook`, or a team's own rasa-sdk action) answers with a control
message, `{"custom": {"omnihub": {"handoff": {"team", "reason"}, "set_attributes": {...}}}}`, which
Rasa passes back in its answer and the turn applies with everything else — one commit, in order.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from bot.dialogue.backend import HandoffRequest
from bot.models import AttributeName, AttributeValue, Button, Media, Reply
from bot.rasa.client import RestMessage

log = logging.getLogger(__name__)
CONTROL = "omnihub"
_MESSAGE_KEYS = frozenset(RestMessage.model_fields) - {"recipient_id", "custom"}


class HandoffControl(BaseModel):
    model_config = ConfigDict(extra="forbid")
    team: str | None = Field(None, max_length=64)
    reason: str = Field("requested", min_length=1, max_length=200)


class Control(BaseModel):
    """What an action asks of the turn, beside what it says."""

    model_config = ConfigDict(extra="forbid")
    handoff: HandoffControl | None = None
    set_attributes: dict[AttributeName, AttributeValue] = Field(default_factory=dict)

    def message(self) -> dict[str, Any]:
        """The bot message an action answers with to have this done (`responses` of rasa-sdk)."""
        return {"custom": {CONTROL: self.model_dump(exclude_defaults=True)}}


@dataclass
class RasaTurn:
    replies: list[Reply] = field(default_factory=list)
    handoff: HandoffRequest | None = None
    set_attributes: dict[str, str] = field(default_factory=dict)


def read_answer(messages: list[RestMessage], channel: str) -> RasaTurn:
    turn = RasaTurn()
    for message in messages:
        custom = message.custom
        if isinstance(custom, dict) and CONTROL in custom:
            _apply(custom[CONTROL], turn)
            continue
        if isinstance(custom, dict):
            message = _custom_message(custom, channel, message)
        if (reply := _reply(message)) is not None:
            turn.replies.append(reply)
    return turn


def _apply(control: Any, turn: RasaTurn) -> None:
    try:
        asked = Control.model_validate(control)
    except ValidationError as exc:
        log.warning("ignored an omnihub control message from Rasa: %s", exc.errors()[0]["msg"])
        return
    if asked.handoff is not None:
        turn.handoff = HandoffRequest(asked.handoff.reason, asked.handoff.team)
    turn.set_attributes.update(asked.set_attributes)


def _custom_message(custom: dict[str, Any], channel: str, message: RestMessage) -> RestMessage:
    """The part of a custom payload this channel shows, read as a message; one it cannot read shows nothing."""
    part = custom.get(channel, custom)
    if not isinstance(part, dict) or not _MESSAGE_KEYS & part.keys():
        return RestMessage(text=message.text)
    try:
        return RestMessage.model_validate(part)
    except ValidationError:
        log.warning("ignored a custom payload from Rasa that is not a message: %s", str(part)[:200])
        return RestMessage(text=message.text)


def _reply(message: RestMessage) -> Reply | None:
    buttons = tuple(Button(title=b.title, payload=b.payload) for b in (*message.buttons, *message.quick_replies))
    media: list[Media] = []
    if message.image:
        media.append(Media(url=message.image, type="image"))
    if isinstance(message.attachment, str) and message.attachment.startswith(("http://", "https://")):
        media.append(Media(url=message.attachment, type="document"))
    if not (message.text or buttons or media):
        return None
    return Reply(text=message.text or None, buttons=buttons, media=tuple(media))
