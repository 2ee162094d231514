"""What the workers tell the consoles and the router: one pub/sub message per change a person sees.

Pub/sub, not a stream: a console that was away reloads what it shows, and the router also looks at
the queue on its own every round, so a missed message costs a moment, never a conversation. Each API
process subscribes once and fans out to its own WebSockets (bot.console), which is what lets any
number of API processes serve the consoles.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import orjson
from pydantic import BaseModel

CONSOLE = "omni:console"  # every change a console may show
ROUTER = "omni:router"  # a conversation entered the queue: assign now rather than at the next round


class Change(BaseModel):
    """`event`: message (in or out) | mode | assigned | note | status."""

    event: str
    conversation: str
    contact: str
    mode: str
    assignee: str | None = None
    team: str | None = None


def changes(cid: str, conversation: Mapping[str, str], events: Iterable[str]) -> list[bytes]:
    """The messages to publish for `events` of one conversation (its fields as they are now)."""
    return [
        orjson.dumps(Change(event=event, conversation=conversation.get("id", cid), contact=cid,
                            mode=conversation.get("mode", "bot"), assignee=conversation.get("assignee"),
                            team=conversation.get("team")).model_dump())
        for event in dict.fromkeys(events)
    ]
