"""Due campaign steps become commands on the contacts' partitions, at the pace the sender can take.

Each partition's lease holder runs one `Scheduler` beside its worker, sender and feed: a due entry of
`omni:cmpdue:{p}` (`<campaign>|<cid>|<step>|send` or `|check`, score = when) is appended to the
contact's inbound stream as a `CampaignStep` command, then removed — only if its score is still the
one read, since the worker may have entered it again meanwhile (a paused campaign asks again later).
A crash between the two appends the same command again, which the append drops: its id carries the
campaign, contact, step, kind and due time. Nothing is marked done before it is done: the worker records the
step with the contact when it applies it, and a step found recorded is not sent again.

Steps are released only while the partition's bulk lane has fewer than `backlog` messages waiting
and its bulk inbound stream (steps and receipts: bot.pipeline.ingest.bulk_lane) fewer than
`INBOUND_BACKLOG` entries: the campaign then goes at the pace the rate limits and the worker let it
go, and its receipts never wait behind a flood of its own steps. The customers' messages have the
live inbound stream to themselves.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import cast

from redis.asyncio import Redis

from bot.campaigns.store import Campaigns
from bot.context import keys
from bot.pipeline.commands import CampaignStep
from bot.pipeline.ingest import Ingest
from bot.pipeline.streams import Backoff, pause, waiting
from bot.redis_server import REDIS_FAILURES

log = logging.getLogger(__name__)
IDLE_SECONDS = 0.25
SWEEP_SECONDS = 30.0
INBOUND_BACKLOG = 100  # entries waiting in the partition's bulk inbound stream before no more steps are released

# KEYS[1] the due zset; ARGV member, score, member, score...: remove each still at the score read
_TAKE_DUE = """
local taken = 0
for i = 1, #ARGV, 2 do
  if tonumber(redis.call('ZSCORE', KEYS[1], ARGV[i])) == tonumber(ARGV[i + 1]) then
    redis.call('ZREM', KEYS[1], ARGV[i])
    taken = taken + 1
  end
end
return taken
"""


class Scheduler:
    def __init__(self, redis: Redis, ingest: Ingest, campaigns: Campaigns, batch: int = 200, backlog: int = 500
                 ) -> None:
        self.redis, self.ingest, self.campaigns, self.batch, self.backlog = redis, ingest, campaigns, batch, backlog
        self._take = redis.register_script(_TAKE_DUE)

    async def run(self, p: int, halt: asyncio.Event) -> None:
        """Partition 0's holder also starts the inactivity journeys, every `SWEEP_SECONDS`."""
        backoff = Backoff()
        swept = 0.0
        while not halt.is_set():
            moved = 0
            try:
                moved = await self.round(p)
                if p == 0 and time.monotonic() - swept > SWEEP_SECONDS:
                    swept = time.monotonic()
                    await self.campaigns.sweep_inactive()
                backoff.reset()
            except REDIS_FAILURES as exc:
                log.warning("campaign scheduler p%s: Redis error (%s)", p, exc)
                await pause(halt, backoff.next_delay())
            await pause(halt, 0 if moved >= self.batch else IDLE_SECONDS)

    async def round(self, p: int) -> int:
        """Release the due steps of partition p that fit the bulk lane; returns how many. What is due
        is asked first: most rounds find nothing, and then cost one command, not three."""
        due = cast(list[tuple[str, float]], await self.redis.zrangebyscore(
            keys.campaign_due(p), "-inf", time.time(), start=0, num=self.batch, withscores=True))
        if not due:
            return 0
        room = self.backlog - await waiting(self.redis, keys.bulk(p))
        if room <= 0 or await waiting(self.redis, keys.inbound_bulk(p)) > INBOUND_BACKLOG:
            return 0  # the worker is behind on the receipts and the steps already released
        due = due[:room]
        commands = []
        for member, score in due:
            campaign_id, cid, step, kind = str(member).split("|")
            command_id = f"cmp:{campaign_id}:{cid}:{step}:{kind}:{int(score * 1000)}"
            commands.append((cid, CampaignStep(id=command_id, campaign_id=campaign_id, step=int(step),
                                               check=kind == "check")))
        await self.ingest.commands(commands)
        await self._take(keys=[keys.campaign_due(p)], args=[x for member, score in due for x in (member, repr(score))])
        return len(due)
