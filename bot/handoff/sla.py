"""Response-time promises per team: the clocks the router watches (`omni:sla`).

Two clocks per assigned conversation, kept as deadlines in one zset so the router finds every
overdue one with a single range read: `first:<cid>` starts at the assignment (the agent has not
answered yet) and `reply:<cid>` when the customer writes to an agent (`NX`: the oldest unanswered
message counts). An agent's reply stops both (`stop`). Each call is one command on one key, so it is safe on
a Cluster from any client or non-transactional pipeline — but not inside a contact's MULTI, whose
keys live in another slot; queue it next to the mode index (bot.context.indexes), like it a hint the
router checks against the conversation before acting.
"""

from __future__ import annotations

import time
from typing import Any, Literal

from bot.context import keys
from bot.settings import TeamSettings

Clock = Literal["first", "reply"]


def member(clock: Clock, cid: str) -> str:
    return f"{clock}:{cid}"


def parse(entry: str) -> tuple[Clock, str]:
    clock, _, cid = entry.partition(":")
    return ("first" if clock == "first" else "reply"), cid


def assigned(pipe: Any, cid: str, team: TeamSettings, now: float | None = None) -> None:
    """Queue: start the first-response clock (an agent just took the conversation)."""
    due = ((now or time.time()) + team.first_response_sla_seconds) * 1000
    pipe.zadd(keys.SLA, {member("first", cid): due})
    pipe.zrem(keys.SLA, member("reply", cid))


def customer_wrote(pipe: Any, cid: str, team: TeamSettings, now: float | None = None) -> None:
    """Queue: start the reply clock unless it runs already (call it for a conversation with an agent)."""
    due = ((now or time.time()) + team.reply_sla_seconds) * 1000
    pipe.zadd(keys.SLA, {member("reply", cid): due}, nx=True)


def stop(pipe: Any, cid: str) -> None:
    """Queue: stop both clocks — the agent answered, or the conversation left them (resolved, released)."""
    pipe.zrem(keys.SLA, member("first", cid), member("reply", cid))


async def overdue(redis: Any, now: float | None = None, limit: int = 500) -> list[tuple[Clock, str]]:
    """The clocks past their deadline, most overdue first."""
    entries = await redis.zrangebyscore(keys.SLA, "-inf", (now or time.time()) * 1000, start=0, num=limit)
    return [parse(str(e)) for e in entries]
