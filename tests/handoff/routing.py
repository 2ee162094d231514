"""Helpers for the routing tests: a hub whose own router stands aside, customers in the queue, and a
router of the test's own that is driven round by round."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis

from bot.context import keys
from bot.context.identity import Identities
from bot.context.store import ContextStore
from bot.handoff.agents import Agent, AgentStore
from bot.handoff.desk import ConversationView, Desk
from bot.handoff.router import Router
from bot.handoff.teams import Teams
from bot.pipeline.ingest import Ingest
from bot.settings import Settings
from tests.conftest import HubFactory, hub_settings
from tests.pipeline.customer import PARTITIONS, Customer, small_hub


@dataclass
class Routing:
    settings: Settings
    desk: Desk
    agents: AgentStore
    teams: Teams
    router: Router
    client: Any

    async def customers(self, count: int, first_user: int = 700_000) -> list[Customer]:
        """`count` customers who asked for a human, queued in the order they asked."""
        waiting = []
        for n in range(count):
            customer = Customer(self.client, "telegram", str(first_user + n))
            await customer.say("talk to a human")
            await self.until(lambda n=n: self._queued_at_least(n + 1))  # type: ignore[misc]
            waiting.append(customer)
        return waiting

    async def _queued_at_least(self, count: int) -> bool:
        return len(await self.desk.queued()) >= count

    async def agent(self, name: str, online: bool = True, **kw: Any) -> Agent:
        agent = await self.agents.create(f"{name.lower()}@example.com", name, "correct horse", **kw)
        if online:
            await self.agents.heartbeat(agent.id)
        return agent

    async def assignee(self, customer: Customer) -> str | None:
        return (await self.view(customer)).assignee

    async def view(self, customer: Customer) -> ConversationView:
        cid = await customer.contact_id()
        conv_id = await self.desk.redis.hget(keys.conversation(cid), "id")
        return await self.desk.get(str(conv_id))

    @staticmethod
    async def until(check: Any, wait: float = 10.0) -> None:
        deadline = asyncio.get_running_loop().time() + wait
        while not await check():
            assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
            await asyncio.sleep(0.02)


@contextlib.asynccontextmanager
async def routing(hub: HubFactory, redis: Redis, redis_url: str, **overrides: Any) -> AsyncIterator[Routing]:
    """A running hub (its workers apply the desk's commands) and a router the test drives round by
    round: it holds the lease for the whole test, so the router the hub runs stays idle."""
    # a long lease for the test's router alone: it renews only within long rounds
    settings = hub_settings(redis_url, pipeline__partitions=PARTITIONS, handoff__router_lease_seconds=600,
                            **overrides)
    desk, agents, teams = parts(redis, settings)
    router = Router(redis, desk, agents, teams, settings.handoff)
    assert await router.lead()
    async with small_hub(hub, **overrides) as client:
        yield Routing(settings, desk, agents, teams, router, client)


def parts(redis: Redis, settings: Settings) -> tuple[Desk, AgentStore, Teams]:
    """What a router works with, built as the hub builds them."""
    store = ContextStore(redis, settings.context.history_cap)
    ingest = Ingest(redis, Identities(redis, store, settings.context.default_region),
                    settings.pipeline.partitions, settings.pipeline.dedupe_ttl_seconds)
    agents = AgentStore(redis, settings.handoff.idle_seconds, settings.handoff.agent_capacity)
    return Desk(redis, store, ingest, agents), agents, Teams(redis, settings.handoff)
