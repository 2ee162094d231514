"""Contact lifecycle events (`contact.merged`, `contact.unmerged`, `contact.erased`) for the CRM feed.

They go to one Redis stream, `omni:events`, as CloudEvents 1.0 JSON in the field `e`, queued on the
same MULTI as the change they describe: an event exists if and only if its change was committed.
One stream rather than the per-partition ones because a merge spans two contacts, usually of two
partitions. Data carries contact ids only — never names, phones or identities — so the feed keeps
nothing personal after an erase (ids are random). Capped at about `MAXLEN` entries.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any, Literal

import orjson

from bot.context import keys

MAXLEN = 100_000
SOURCE = "omnihub"
EventType = Literal["contact.merged", "contact.unmerged", "contact.erased",
                    "conversation.sla_breached", "conversation.queue_timeout"]


def cloud_event(kind: EventType, subject: str, data: dict[str, Any]) -> dict[str, Any]:
    return {
        "specversion": "1.0",
        "id": uuid.uuid4().hex,
        "source": SOURCE,
        "type": kind,
        "time": datetime.now(UTC).isoformat(),
        "subject": subject,
        "datacontenttype": "application/json",
        "data": data,
    }


def stage_event(pipe: Any, kind: EventType, subject: str, data: dict[str, Any]) -> dict[str, Any]:
    """Queue the event on `pipe` (a MULTI the caller executes); returns the event."""
    event = cloud_event(kind, subject, data)
    pipe.xadd(keys.EVENTS, {"e": orjson.dumps(event)}, maxlen=MAXLEN, approximate=True)
    return event
