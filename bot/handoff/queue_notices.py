"""What a customer is told on entering the queue: their place in it, or — outside the team's business
hours — when the team answers. Queued as a `Tell` command behind the handoff that caused it, so the
customer reads it after "I'm passing you to a colleague", on the channel they wrote from."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from redis.asyncio import Redis

from bot.context import keys
from bot.handoff.hours import is_open, next_open
from bot.handoff.teams import Teams
from bot.pipeline.commands import Tell
from bot.pipeline.ingest import Ingest


class QueueNotices:
    def __init__(self, redis: Redis, teams: Teams, ingest: Ingest) -> None:
        self.redis = redis
        self.teams = teams
        self.ingest = ingest

    async def entered(self, cid: str, conversation_id: str, team_name: str | None, entry_id: str) -> None:
        """`entry_id`: the entry that queued it; the notice's id derives from it, so a replay tells once."""
        team = await self.teams.get(team_name or "")
        now = datetime.now(UTC)
        if team is not None and not is_open(team.hours, now):
            opens = next_open(team.hours, now).astimezone(ZoneInfo(team.hours.timezone))
            notice = Tell(id=f"q-{entry_id}", text_key="outside_hours",
                          variables={"opens": opens.strftime("%a %H:%M") + f" ({team.hours.timezone})"})
        else:
            rank = await self.redis.zrank(keys.by_mode("queued"), cid)
            position = rank + 1 if isinstance(rank, int) else 1
            notice = Tell(id=f"q-{entry_id}", text_key="queue_position", variables={"position": str(position)})
        await self.ingest.command(notice, cid)
