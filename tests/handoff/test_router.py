"""The router against a real hub: least-loaded online agents, round-robin, oldest first, agents who
leave, SLA breaches and queue timeouts — and the desk's 409 when two claim one conversation."""

from __future__ import annotations

import asyncio
import contextlib
import time

import pytest
from redis.asyncio import Redis

from bot.context import keys
from bot.crm.outbox import recorded
from bot.handoff.desk import DeskError
from bot.handoff.router import Router
from bot.redis_server import free_port
from bot.settings import TeamSettings
from tests.conftest import HubFactory, hub_settings
from tests.handoff.routing import PARTITIONS, parts, routing


async def events_of(redis: Redis, kind: str) -> list[dict[str, object]]:
    return [e.model_dump() for e in await recorded(redis, PARTITIONS, kind)]


async def test_least_loaded_online_agents_in_turn(hub: HubFactory, redis: Redis, redis_url: str) -> None:
    async with routing(hub, redis, redis_url) as r:
        ada, bob, cy = await r.agent("Ada"), await r.agent("Bob"), await r.agent("Cy")
        away = await r.agent("Dee", online=False)
        elsewhere = await r.agent("Eve", teams=("sales",))
        customers = await r.customers(6)
        report = await r.router.round()
        assert len(report.assigned) == 6
        order = [pick.agent_id for pick in report.assigned]
        assert order[:3] == sorted(order[:3]) == sorted([ada.id, bob.id, cy.id])  # equals take turns
        assert order[3:] == order[:3]  # and round again, in the same turn order
        holders = [await r.assignee(c) for c in customers]
        assert sorted(holders) == sorted([ada.id, bob.id, cy.id] * 2)
        assert away.id not in holders and elsewhere.id not in holders
        assert {await r.agents.load(a.id) for a in (ada, bob, cy)} == {2}


async def test_an_agent_who_leaves_gives_the_chats_back(hub: HubFactory, redis: Redis, redis_url: str) -> None:
    async with routing(hub, redis, redis_url) as r:
        ada = await r.agent("Ada")
        customers = await r.customers(2)
        await r.router.round()
        assert [await r.assignee(c) for c in customers] == [ada.id, ada.id]
        await r.agents.set_offline(ada.id)
        report = await r.router.round()
        assert len(report.released) == 2 and report.assigned == []  # nobody else is online: queued again
        assert [(await r.view(c)).mode for c in customers] == ["queued", "queued"]
        assert await r.agents.load(ada.id) == 0
        bob = await r.agent("Bob")
        await redis.zadd(keys.AGENTS_SEEN, {ada.id: time.time() - r.settings.handoff.idle_seconds - 1})  # idle
        await r.router.round()
        assert [await r.assignee(c) for c in customers] == [bob.id, bob.id]  # never the absent agent


async def test_the_oldest_waiting_chat_gets_the_freed_place(hub: HubFactory, redis: Redis, redis_url: str) -> None:
    async with routing(hub, redis, redis_url) as r:
        ada = await r.agent("Ada", capacity=1)
        first, second, third = await r.customers(3)
        await r.router.round()
        assert [await r.assignee(c) for c in (first, second, third)] == [ada.id, None, None]
        await r.desk.resolve((await r.view(first)).id, ada.id)
        await r.router.round()
        assert [await r.assignee(c) for c in (second, third)] == [ada.id, None]


async def test_first_response_sla_breach_is_recorded_and_rerouted(
        hub: HubFactory, redis: Redis, redis_url: str) -> None:
    async with routing(hub, redis, redis_url) as r:
        ada, bob = await r.agent("Ada"), await r.agent("Bob")
        late, answered = await r.customers(2)
        await r.router.round()
        late_view, answered_view = await r.view(late), await r.view(answered)
        await r.desk.reply(answered_view.id, str(answered_view.assignee), "Hello, I'm here.")
        sla = r.settings.handoff.teams["support"].first_response_sla_seconds
        report = await r.router.round(now=time.time() + sla + 1)
        assert report.breached == [late_view.id]
        [event] = await events_of(redis, "omnihub.conversation.sla_breached")
        assert event["subject"] == late_view.contact_id
        assert event["data"] == {**event["data"], "clock": "first", "agent_id": late_view.assignee}  # type: ignore[dict-item]
        moved = await r.view(late)
        assert moved.mode == "assigned" and moved.assignee == ({ada.id, bob.id} - {late_view.assignee}).pop()
        assert (await r.view(answered)).assignee == answered_view.assignee  # kept its promise: left alone


async def test_a_reply_clock_started_by_the_customer(hub: HubFactory, redis: Redis, redis_url: str) -> None:
    async with routing(hub, redis, redis_url) as r:
        await r.agent("Ada")
        [kim] = await r.customers(1)
        await r.router.round()
        view = await r.view(kim)
        stop = asyncio.Event()
        listening = asyncio.create_task(r.router.listen(stop))
        await asyncio.wait_for(r.router.listening.wait(), 10)
        await r.desk.reply(view.id, str(view.assignee), "Hi Kim")
        await kim.replies(3)  # "a colleague will answer", the queue position, the agent's reply
        await kim.say("still there?")
        await kim.history_until(lambda items: items[-1].get("text") == "still there?")
        await r.until(lambda: heard(r.router, view.contact_id))
        wrote = time.time()
        team = r.settings.handoff.teams["support"]
        assert (await r.router.round(now=wrote + team.reply_sla_seconds - 5)).breached == []
        report = await r.router.round(now=wrote + team.reply_sla_seconds + 5)
        assert report.breached == [view.id]
        [event] = await events_of(redis, "omnihub.conversation.sla_breached")
        assert event["data"]["clock"] == "reply"  # type: ignore[index]
        stop.set()
        listening.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await listening


async def heard(router: Router, cid: str) -> bool:
    return cid in router.promises.wrote


async def test_queue_timeout_hands_back_to_the_bot(hub: HubFactory, redis: Redis, redis_url: str) -> None:
    async with routing(hub, redis, redis_url) as r:
        [kim] = await r.customers(1)
        await kim.replies(2)
        view = await r.view(kim)
        timeout = r.settings.handoff.teams["support"].queue_timeout_seconds
        assert (await r.router.round(now=time.time() + timeout - 5)).timed_out == []
        report = await r.router.round(now=time.time() + timeout + 5)
        assert report.timed_out == [view.id]
        [told] = await kim.replies(1)
        assert "no colleague is free" in told["text"]
        [event] = await events_of(redis, "omnihub.conversation.queue_timeout")
        assert event["data"]["action"] == "bot"  # type: ignore[index]
        assert (await r.view(kim)).mode == "bot"


async def test_queue_timeout_escalates(hub: HubFactory, redis: Redis, redis_url: str) -> None:
    async with routing(hub, redis, redis_url) as r:
        await r.teams.add("support", TeamSettings(on_timeout="escalate", escalate_to="supervisors",
                                                  queue_timeout_seconds=60))
        await r.teams.add("supervisors", TeamSettings())
        boss = await r.agent("Boss", online=False, teams=("supervisors",))
        [kim] = await r.customers(1)
        await kim.replies(2)
        report = await r.router.round(now=time.time() + 61)
        assert len(report.timed_out) == 1
        [told] = await kim.replies(1)
        assert "senior colleague" in told["text"]
        view = await r.view(kim)
        assert (view.mode, view.team) == ("queued", "supervisors")
        await r.agents.heartbeat(boss.id)
        await r.router.round()
        assert await r.assignee(kim) == boss.id


async def test_two_agents_claim_one_conversation(hub: HubFactory, redis: Redis, redis_url: str) -> None:
    async with routing(hub, redis, redis_url) as r:
        ada, bob = await r.agent("Ada"), await r.agent("Bob")
        [kim] = await r.customers(1)
        conv_id = (await r.view(kim)).id
        results = await asyncio.gather(r.desk.assign(conv_id, ada.id), r.desk.assign(conv_id, bob.id),
                                       return_exceptions=True)
        refused = [x for x in results if isinstance(x, DeskError)]
        assert len(refused) == 1 and refused[0].status == 409
        winner = await r.assignee(kim)
        assert sorted([await r.agents.load(ada.id), await r.agents.load(bob.id)]) == [0, 1]
        assert await r.agents.load(str(winner)) == 1  # the loser's reservation was given back


async def test_capacity_holds_under_fifty_concurrent_claims(hub: HubFactory, redis: Redis, redis_url: str) -> None:
    async with routing(hub, redis, redis_url) as r:
        ada = await r.agent("Ada", capacity=3)
        ids = [(await r.view(c)).id for c in await r.customers(10)]
        claims = [r.desk.assign(ids[n % len(ids)], ada.id) for n in range(50)]
        await asyncio.gather(*claims, return_exceptions=True)
        held = await r.desk.assigned(ada.id)
        assert len(held) == 3 and await r.agents.load(ada.id) == 3
        assert len(await r.desk.queued()) == 7


async def test_one_router_at_a_time(redis: Redis, redis_url: str) -> None:
    settings = hub_settings(redis_url)
    routers = [Router(redis, *parts(redis, settings), settings.handoff) for _ in range(2)]
    assert [await router.lead() for router in routers] == [True, False]
    assert [await router.lead() for router in routers] == [True, False]  # renewed, still the first
    assert await routers[0].still_leading()  # renewed a moment ago: no need to ask Redis
    await redis.delete(keys.ROUTER_LEASE)  # the first stalled past its lease, and another took over
    assert await routers[1].lead()
    routers[0].renewed_at -= settings.handoff.router_lease_seconds  # a long round: time to renew
    assert not await routers[0].still_leading() and not routers[0].leading


async def test_router_outlives_an_absent_redis(redis_url: str, caplog: pytest.LogCaptureFixture) -> None:
    settings = hub_settings(redis_url)
    nowhere = Redis.from_url(f"redis://127.0.0.1:{free_port()}/0", decode_responses=True,
                             socket_connect_timeout=0.1)
    router = Router(nowhere, *parts(nowhere, settings), settings.handoff)
    stop = asyncio.Event()
    task = asyncio.create_task(router.run(stop))
    deadline = asyncio.get_running_loop().time() + 10
    while caplog.text.count("routing round failed") < 2:  # it fails round after round, and goes on
        assert not task.done() and asyncio.get_running_loop().time() < deadline
        await asyncio.sleep(0.02)
    stop.set()
    await asyncio.wait_for(task, 5)
    await nowhere.aclose()


async def test_a_claim_by_hand_gets_an_sla_clock_too(hub: HubFactory, redis: Redis, redis_url: str) -> None:
    async with routing(hub, redis, redis_url) as r:
        ada = await r.agent("Ada")
        [kim] = await r.customers(1)
        view = await r.desk.assign((await r.view(kim)).id, ada.id)  # from the console, not the router
        await r.router.round()
        sla = r.settings.handoff.teams["support"].first_response_sla_seconds
        assert (await r.router.round(now=time.time() + sla - 5)).breached == []
        assert (await r.router.round(now=time.time() + sla + 5)).breached == [view.id]


async def test_an_agent_who_never_reported_presence_keeps_a_claim(
        hub: HubFactory, redis: Redis, redis_url: str) -> None:
    async with routing(hub, redis, redis_url) as r:
        api_only = await r.agent("Api", online=False)  # works through the API, never heartbeats
        [kim] = await r.customers(1)
        await r.desk.assign((await r.view(kim)).id, api_only.id)
        report = await r.router.round()
        assert report.released == [] and await r.assignee(kim) == api_only.id
        await r.agents.disable(api_only.id)  # but a disabled agent gives everything back
        assert len((await r.router.round()).released) == 1


async def test_a_leaked_place_is_freed_but_not_a_claim_in_flight(
        hub: HubFactory, redis: Redis, redis_url: str) -> None:
    async with routing(hub, redis, redis_url) as r:
        ada = await r.agent("Ada", capacity=2)
        old = (time.time() - 60) * 1000  # older than any claim still waiting for its worker
        await redis.zadd(keys.agent_load(ada.id), {"c-lost-answer": old, "c-in-flight": time.time() * 1000})
        await r.router.round()
        assert await r.agents.conversations(ada.id) == ["c-in-flight"]
