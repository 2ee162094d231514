"""Live updates: a change made in one process reaches sockets served by another, each socket hears only
what its agent may see, and a socket that falls behind is told to reload instead of being dropped."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from redis.asyncio import Redis
from websockets.asyncio.client import ClientConnection, connect

from bot.console.access import may_see
from bot.console.live import QUEUE_LIMIT, Fanout, Listener
from bot.handoff.live import CONSOLE, Change
from bot.redis_server import EmbeddedRedis
from tests.conftest import HubFactory, hub_settings, running_hub
from tests.console.signin import ConsoleAgent, add_agent, live_url, origin, signed_in
from tests.pipeline.customer import PARTITIONS, Customer, small_hub


async def notice(socket: ClientConnection, wait: float = 10.0) -> dict[str, Any]:
    """The next notice about a conversation (a "reload everything" at subscription is skipped)."""
    async with asyncio.timeout(wait):
        while (message := json.loads(await socket.recv()))["event"] == "resync":
            pass
    return dict(message)


def cookie_of(agent: ConsoleAgent) -> dict[str, str]:
    return {"Cookie": agent.cookie}


async def test_a_change_in_one_process_reaches_a_socket_of_another(hub: HubFactory, redis_url: str) -> None:
    async with small_hub(hub) as worker_side, running_hub(
        hub_settings(redis_url, pipeline__partitions=PARTITIONS), run_workers=False
    ) as api_only:
        await add_agent(worker_side, "hal@example.com", "Hal")
        async with signed_in(api_only, "hal@example.com") as hal, connect(
            live_url(api_only), additional_headers={**cookie_of(hal), "Origin": origin(api_only)}
        ) as socket:
            await Customer(worker_side, "telegram", "730001").say("talk to a human")
            heard = await notice(socket)
            assert heard["mode"] == "queued" and heard["team"] == "support"
            assert heard["contact"] == heard["conversation"].partition("-")[0]


async def test_a_socket_hears_only_what_its_agent_may_see(hub: HubFactory) -> None:
    async with small_hub(hub) as client:
        await add_agent(client, "ida@example.com", "Ida", teams=("billing",))
        await add_agent(client, "jon@example.com", "Jon", teams=("support",))
        async with signed_in(client, "ida@example.com") as ida, signed_in(client, "jon@example.com") as jon, \
                connect(live_url(client), additional_headers={**cookie_of(ida), "Origin": origin(client)}) as billing, \
                connect(live_url(client), additional_headers={**cookie_of(jon), "Origin": origin(client)}) as support:
            await Customer(client, "telegram", "730002").say("talk to a human")
            assert (await notice(support))["team"] == "support"
            with pytest.raises(TimeoutError):
                await notice(billing, wait=1.0)  # another team's queue: not a word of it


class Person:
    def __init__(self, role: str, teams: tuple[str, ...] = ("support",), agent_id: str = "a1") -> None:
        self.id, self.role, self.teams = agent_id, role, teams


def test_a_listener_that_falls_behind_gets_one_resync_for_its_backlog() -> None:
    listener = Listener(Person("agent"))
    change = Change(event="message", conversation="c1-1", contact="c1", mode="queued", team="support")
    for _ in range(QUEUE_LIMIT + 1):  # one more than it holds
        listener.offer(change)
    listener.offer(change)  # what comes after the overflow still comes
    assert listener.inbox.qsize() == 2
    assert listener.inbox.get_nowait() is None and listener.inbox.get_nowait() == change


def test_a_listener_takes_what_its_agent_may_see_and_hears_when_it_goes() -> None:
    listener = Listener(Person("agent", teams=("support",), agent_id="a1"))
    queued = Change(event="mode", conversation="c1-1", contact="c1", mode="queued", team="support")
    elsewhere = Change(event="mode", conversation="c2-1", contact="c2", mode="queued", team="billing")
    taken = Change(event="assigned", conversation="c1-1", contact="c1", mode="assigned", assignee="a2",
                   team="support")
    again = taken.model_copy(update={"event": "message"})
    for notice in (queued, elsewhere, taken, again):
        listener.offer(notice)
    # its team's queue; not billing's; the colleague taking it (so it leaves the list); then no more
    assert [listener.inbox.get_nowait() for _ in range(listener.inbox.qsize())] == [queued, taken]


@pytest.mark.parametrize(("role", "mode", "assignee", "team", "seen"), [
    ("agent", "queued", None, "support", True),  # their team's queue
    ("agent", "queued", None, "billing", False),  # another team's queue
    ("agent", "assigned", "a1", "billing", True),  # theirs, whichever team
    ("agent", "assigned", "a2", "support", False),  # a colleague's
    ("agent", "resolved", None, "support", False),
    ("supervisor", "assigned", "a2", "billing", True),
    ("admin", "queued", None, "billing", True),
    ("marketer", "queued", None, "support", False),  # marketers handle no conversations
])
def test_who_may_see_a_conversation(role: str, mode: str, assignee: str | None, team: str, seen: bool) -> None:
    assert may_see(Person(role), mode, assignee, team) is seen


async def test_the_subscription_outlives_a_redis_restart_and_says_resync() -> None:
    server = EmbeddedRedis()
    redis = Redis.from_url(server.start(), decode_responses=True)
    fanout, listener = Fanout(redis), Listener(Person("supervisor"))
    change = Change(event="message", conversation="c9-1", contact="c9", mode="assigned", assignee="a2")
    try:
        fanout.join(listener)
        async with asyncio.timeout(10):
            assert await listener.inbox.get() is None  # subscribed: reload what you show
        server.stop()
        server.start()  # the same port, empty
        async with asyncio.timeout(20):
            assert await listener.inbox.get() is None  # subscribed again: what was missed, reload it
            assert await redis.publish(CONSOLE, change.model_dump_json()) == 1  # one subscriber: this process
            assert await listener.inbox.get() == change
    finally:
        await fanout.leave(listener)
        await redis.aclose()
        server.stop()
