"""Where a contact stands in each campaign it is in: a field per campaign of `omni:{cid}:cmp`.

Kept with the contact, so the step that sends, the check that judges it and a reply that stops it
all change it in the contact's own MULTI (bot.campaigns.steps). Here, below the pipeline, because a
customer's reply (a turn) and a conversion (a command) stop a waiting campaign too.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel

from bot.context.store import Changes, Snapshot
from bot.models import Channel

# waiting: step `step` went out; passed: it could not go out (no identity, no consent on its channel)
# and the next step follows; the others end the campaign for the contact.
State = Literal["waiting", "passed", "reached", "stopped", "done", "skipped"]
ACTIVE = ("waiting", "passed")


class Standing(BaseModel):
    """Where a contact stands in one campaign."""

    step: int
    state: State
    message_id: str | None = None
    channel: Channel | None = None
    sent_at: float | None = None
    why: str | None = None
    stop_on: list[str] | None = None  # the campaign's, so a reply can stop it without reading the campaign
    used: list[str] | None = None  # the channels its steps went out on so far (for a `next` step)
    variant: str | None = None  # A/B: the recipient's variant

    @classmethod
    def of(cls, snapshot: Snapshot, campaign_id: str) -> Standing | None:
        raw = snapshot.campaigns.get(campaign_id)
        return cls.model_validate_json(raw) if raw else None

    def stored(self) -> str:
        return self.model_dump_json(exclude_none=True)


def stop_waiting(snapshot: Snapshot, changes: Changes, reason: Literal["replied", "converted", "opted_out"]) -> None:
    """The contact replied, bought or opted out while campaigns wait on them: those whose `stop_on`
    names it stop for this contact at once (a reply also counts as having reached a step)."""
    for campaign_id, raw in snapshot.campaigns.items():
        standing = Standing.model_validate_json(raw)
        if standing.state in ACTIVE and reason in (standing.stop_on or ()):
            changes.campaigns[campaign_id] = standing.model_copy(update={"state": "stopped", "why": reason}).stored()
