"""What a customer's message means while people have the conversation: pure rules, no I/O.

While the conversation is queued or with an agent the bot stays silent, except for two things the
customer can always do: leave the queue and go back to the bot, and — after a resolve — answer the
rating question. Keywords of the consent ledger (STOP…) are answered before any of this.
"""

from __future__ import annotations

import re

from bot.models import InboundEvent

BACK_TO_BOT_PAYLOAD = "back_to_bot"
_BACK_TO_BOT = re.compile(
    r"^\s*(back to (the )?bot|to the bot|bot|cancel|вернуться к боту|назад к боту|к боту|бот|отмена)\s*[.!]*\s*$",
    re.IGNORECASE,
)
_RATING = re.compile(r"^\s*([1-5])\s*(?:/\s*5)?\s*[.!]*\s*$")
RATING_PAYLOAD = "csat:"


def wants_the_bot(event: InboundEvent) -> bool:
    """The customer asks to leave the queue ("back to the bot", "отмена", or the button)."""
    if event.payload == BACK_TO_BOT_PAYLOAD:
        return True
    return bool(event.text and _BACK_TO_BOT.match(event.text))


def rating(event: InboundEvent) -> int | None:
    """A 1–5 answer to the rating question: the button's payload, or a message that is just the digit."""
    if event.payload and event.payload.startswith(RATING_PAYLOAD):
        digits = event.payload[len(RATING_PAYLOAD):]
        return int(digits) if digits in {"1", "2", "3", "4", "5"} else None
    match = _RATING.match(event.text or "")
    return int(match.group(1)) if match else None


def conversation_id(cid: str, entry_id: str) -> str:
    """A conversation's id names its contact, so the desk finds the contact without an index."""
    return f"{cid}-{entry_id}"


def contact_of(conversation_id: str) -> str:
    return conversation_id.partition("-")[0]
