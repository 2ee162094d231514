"""Campaigns in Redis: the definition and status (`omni:campaign:<id>`), a list by creation
(`omni:campaigns`), and the due steps of each partition (`omni:cmpdue:{p}`, bot.campaigns.scheduler).

Starting a campaign plans it: the audience is evaluated once from the segment indexes and every
recipient's step 1 is entered as due (ZADD NX: planning twice plans nobody twice). From then on the
work is the partitions': each due entry becomes a command on the contact's partition, and where the
contact stands is kept with the contact (`omni:{cid}:cmp`), not here. Workers read a campaign through
`cached` (a second old at most): pause, resume and cancel reach every worker within a second.
"""

from __future__ import annotations

import secrets
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Iterable

from redis.asyncio import Redis

from bot.campaigns.model import Campaign, CampaignIn, Status
from bot.campaigns.segments import Segment, evaluate
from bot.campaigns.steps import due_member
from bot.context import keys

CACHE_SECONDS = 1.0
PLAN_CHUNK = 2000


async def audience(redis: Redis, segment: Segment) -> AsyncIterator[list[str]]:
    """A segment's contacts a page at a time, evaluated once from the indexes (raises SegmentError)."""
    result = await evaluate(redis, segment)
    try:
        for start in range(0, result.count, PLAN_CHUNK):
            yield await result.page(redis, start, PLAN_CHUNK)
    finally:
        await redis.delete(result.key)


class CampaignError(Exception):
    """A campaign call that cannot be done now (`status`: the HTTP answer)."""

    def __init__(self, message: str, status: int = 409) -> None:
        super().__init__(message)
        self.status = status


class Campaigns:
    def __init__(self, redis: Redis, partitions: int) -> None:
        self.redis = redis
        self.partitions = partitions
        self._cache: dict[str, tuple[float, Campaign | None]] = {}
        self._journeys_cache: tuple[float, list[Campaign]] = (0.0, [])

    async def create(self, definition: CampaignIn) -> Campaign:
        campaign = Campaign(id="cmp" + secrets.token_hex(6), definition=definition)
        await self._save(campaign)
        await self.redis.zadd(keys.CAMPAIGNS, {campaign.id: campaign.created_at})
        return campaign

    async def get(self, campaign_id: str) -> Campaign | None:
        raw = await self.redis.get(keys.campaign(campaign_id))
        return Campaign.model_validate_json(raw) if raw else None

    async def cached(self, campaign_id: str) -> Campaign | None:
        at, found = self._cache.get(campaign_id, (0.0, None))
        if time.monotonic() - at > CACHE_SECONDS:
            found = await self.get(campaign_id)
            self._cache[campaign_id] = (time.monotonic(), found)
        return found

    async def all(self, limit: int = 100) -> list[Campaign]:
        ids = await self.redis.zrevrange(keys.CAMPAIGNS, 0, limit - 1)
        found = [await self.get(str(i)) for i in ids]
        return [c for c in found if c is not None]

    async def start(self, campaign_id: str, audience: AsyncIterator[list[str]]) -> Campaign:
        """Plan every recipient's first step (at `start_at`, or now) and set the campaign running."""
        campaign = await self._found(campaign_id)
        if campaign.status != "draft":
            raise CampaignError(f"the campaign is {campaign.status}, not a draft")
        when = campaign.definition.start_at.timestamp() if campaign.definition.start_at else time.time()
        # a journey plans nobody: it waits for its trigger (and its audience is never evaluated)
        planned = 0 if campaign.definition.trigger else await self._plan(campaign.id, audience, when)
        started = campaign.model_copy(update={"status": "running", "started_at": time.time(), "recipients": planned})
        await self._save(started)
        return started

    async def _plan(self, campaign_id: str, audience: AsyncIterator[list[str]], when: float) -> int:
        """Every recipient's step 1 due at `when`, a page of the audience per round trip; how many."""
        planned = 0
        async for page in audience:
            by_partition: dict[int, dict[str, float]] = defaultdict(dict)
            for cid in page:
                by_partition[keys.partition_of(cid, self.partitions)][due_member(campaign_id, cid, 1, "send")] = when
            async with self.redis.pipeline(transaction=False) as pipe:
                for p, members in by_partition.items():
                    pipe.zadd(keys.campaign_due(p), members, nx=True)
                await pipe.execute()
            planned += len(page)
        return planned

    async def set_status(self, campaign_id: str, status: Status) -> Campaign:
        campaign = await self._found(campaign_id)
        allowed: dict[Status, tuple[Status, ...]] = {
            "paused": ("running",), "running": ("paused",), "cancelled": ("draft", "running", "paused"),
            "done": ("running",)}
        if campaign.status not in allowed.get(status, ()):
            raise CampaignError(f"a {campaign.status} campaign cannot become {status}")
        changed = campaign.model_copy(update={"status": status, **(
            {"finished_at": time.time()} if status in ("done", "cancelled") else {})})
        await self._save(changed)
        return changed

    async def triggered(self, cid: str, event: str | None = None, conversion: bool = False,
                        tags: Iterable[str] = ()) -> list[str]:
        """Start, for contact `cid`, every running journey whose trigger this is; returns their ids.
        Once per contact and journey: a contact it was started for already is left alone."""
        tags = set(tags)
        started = []
        for campaign in await self._journeys():
            trigger = campaign.definition.trigger
            assert trigger is not None
            if ((event and trigger.event == event) or (conversion and trigger.conversion) or (trigger.tag in tags)) \
                    and await self._begin(campaign, cid):
                started.append(campaign.id)
        return started

    async def sweep_inactive(self, page: int = 1000) -> int:
        """Start the inactivity journeys for the contacts who wrote last longer ago than their trigger
        says (the `seen` index); once per contact. Returns how many were started."""
        started = 0
        for campaign in await self._journeys():
            trigger = campaign.definition.trigger
            if trigger is None or trigger.inactive_days is None:
                continue
            cut = time.time() - trigger.inactive_days * 86_400
            offset = 0
            while ids := await self.redis.zrangebyscore(keys.ranked("seen"), "-inf", cut, start=offset, num=page):
                for cid in ids:
                    started += await self._begin(campaign, str(cid))
                offset += len(ids)
        return started

    async def _begin(self, campaign: Campaign, cid: str) -> bool:
        """Step 1 of a journey due now for `cid`, unless it was started for them before."""
        if not await self.redis.hsetnx(keys.campaign_seen(campaign.id), f"{cid}|started", f"{time.time():.3f}"):
            return False
        member = due_member(campaign.id, cid, 1, "send")
        await self.redis.zadd(keys.campaign_due(keys.partition_of(cid, self.partitions)), {member: time.time()},
                              nx=True)
        await self.redis.hincrby(keys.campaign_stats(campaign.id), "audience", 1)
        return True

    async def _journeys(self) -> list[Campaign]:
        """The running journeys (a second old at most: triggers come with every conversion and tag)."""
        at, found = self._journeys_cache
        if time.monotonic() - at > CACHE_SECONDS:
            found = [c for c in await self.all(500) if c.definition.trigger and c.status == "running"]
            self._journeys_cache = (time.monotonic(), found)
        return found

    async def settled(self, campaign: Campaign) -> tuple[Campaign, int | None]:
        """The campaign and its due steps; a running one with none left is done (marked so now) —
        not a journey, which waits for its next trigger."""
        if campaign.status not in ("running", "paused"):
            return campaign, None
        pending = await self.pending(campaign.id)
        if pending == 0 and campaign.status == "running" and not campaign.definition.trigger:
            campaign = await self.set_status(campaign.id, "done")
        return campaign, pending

    async def pending(self, campaign_id: str) -> int:
        """Due entries of the campaign still waiting (for progress: 0 when every recipient is settled)."""
        count = 0
        for p in range(self.partitions):
            async for _ in self.redis.zscan_iter(keys.campaign_due(p), match=f"{campaign_id}|*", count=1000):
                count += 1
        return count

    async def _found(self, campaign_id: str) -> Campaign:
        campaign = await self.get(campaign_id)
        if campaign is None:
            raise CampaignError(f"no campaign {campaign_id!r}", 404)
        return campaign

    async def _save(self, campaign: Campaign) -> None:
        await self.redis.set(keys.campaign(campaign.id), campaign.model_dump_json())
        self._cache.pop(campaign.id, None)
        self._journeys_cache = (0.0, [])
