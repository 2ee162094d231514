"""The consent ledger: may this contact be messaged on this channel, for this purpose?

Consent is kept per channel AND per purpose, because customers, carriers and the law tell them apart:

- **service** (answers, order updates, agent replies) is allowed unless the customer opted out on
  that channel: writing to a business is consent to be answered, and STOP or a Viber unsubscribe
  takes it back;
- **marketing** (campaigns) is allowed only after an explicit opt-in on that channel — a keyword, an
  API call, an import of consents collected elsewhere. Silence is not consent.

The current state is a field of the contact's profile hash, `cs:<channel>:<purpose>` = "in" | "out"
(absent = never said), so whoever loads a contact has it, and it is merged and erased with the
contact. Every change is also appended to the contact's trail `omni:{cid}:consent` (the newest
`CONSENT_TRAIL_CAP` kept) with its source, time and the inbound message that made it: the answer to
"when and how did this person agree, or refuse?".

`record` stages a change on a turn's `Changes`, so the state, its trail row and the history entry of
the message that caused it are written in the same MULTI: no consent change without its record.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

import orjson
from redis.asyncio import Redis

from bot.context import keys
from bot.context.store import Changes
from bot.models import Purpose

State = Literal["in", "out"]
Source = Literal["keyword", "subscribed", "unsubscribed", "api", "import"]
PURPOSES: tuple[Purpose, ...] = ("service", "marketing")


def field(channel: str, purpose: str) -> str:
    """The profile hash field holding one channel's consent for one purpose."""
    return f"cs:{channel}:{purpose}"


def refusal(profile: Mapping[str, str], channel: str, purpose: str) -> str | None:
    """Why a message may not go out under the rule above, or None when it may."""
    state = profile.get(field(channel, purpose))
    if state == "out":
        return f"{channel} consent for {purpose} messages was withdrawn"
    if purpose == "marketing" and state != "in":
        return f"no opt-in to marketing messages on {channel}"
    return None


def allowed(profile: Mapping[str, str], channel: str, purpose: str) -> bool:
    return refusal(profile, channel, purpose) is None


@dataclass(frozen=True)
class Cause:
    """What changed consent: its source, when, and the inbound message or event that carried it."""

    source: Source
    at: float  # epoch seconds
    message_id: str | None = None  # the provider's id of that message or event
    entry_id: str | None = None  # its inbound stream entry, which is also its history entry id
    detail: str | None = None  # e.g. the keyword as the customer wrote it

    def row(self, channel: str, purpose: Purpose, state: State) -> dict[str, Any]:
        row: dict[str, Any] = {"channel": channel, "purpose": purpose, "state": state, "source": self.source,
                               "at": self.at}
        optional = {"message_id": self.message_id, "entry_id": self.entry_id, "detail": self.detail}
        row.update({name: value for name, value in optional.items() if value is not None})
        return row


def record(
    changes: Changes,
    profile: Mapping[str, str],
    channel: str,
    purposes: Iterable[Purpose],
    state: State,
    cause: Cause,
) -> bool:
    """Stage a consent change on `changes`; True when it changed anything.

    `profile` is the contact as loaded at the start of the turn; what the turn has staged already
    counts too, so two changes in one turn see each other. A state that already holds is not
    written again and leaves no trail row, so the trail lists changes, not repetitions.
    """
    current = {**profile, **changes.profile}
    changed = False
    for purpose in purposes:
        name = field(channel, purpose)
        if current.get(name) == state:
            continue
        changes.profile[name] = state
        changes.consent.append(cause.row(channel, purpose, state))
        changed = True
    return changed


async def consent_trail(redis: Redis, cid: str) -> list[dict[str, Any]]:
    """Every recorded consent change of a contact, oldest first (for export and audits)."""
    return [orjson.loads(row) for row in await redis.lrange(keys.consent(cid), 0, -1)]
