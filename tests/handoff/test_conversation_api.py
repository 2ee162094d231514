"""The fixed agents-and-handoff contract, end to end through a real hub and the Telegram emulator:
a customer asks for a human, an agent claims (409 for a second one), replies, notes, resolves; the
customer rates and has the bot again."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

from redis.asyncio import Redis

from bot.handoff.agents import AgentStore
from bot.handoff.demo import DEMO_EMAIL, DEMO_PASSWORD
from tests.conftest import HubFactory
from tests.pipeline.customer import Customer, small_hub


async def queued(client: Any, wait: float = 10.0) -> list[dict[str, Any]]:
    deadline = asyncio.get_running_loop().time() + wait
    while not (items := (await client.http.get("/api/v1/conversations", params={"mode": "queued"})).json()["items"]):
        assert asyncio.get_running_loop().time() < deadline, "nothing was queued"
        await asyncio.sleep(0.05)
    return list(items)


async def test_handoff_claim_reply_note_resolve_and_rating(hub: HubFactory, redis: Redis) -> None:
    agents = AgentStore(redis)
    anna = await agents.create("anna@example.com", "Anna", "correct horse battery")
    boris = await agents.create("boris@example.com", "Boris", "correct horse battery")
    async with small_hub(hub) as client:
        kim = Customer(client, "telegram", "650001")
        await kim.say("talk to a human")
        told, place = await kim.replies(2)
        assert "colleague" in told["text"] and "number 1 in the queue" in place["text"]
        [conversation] = await queued(client)
        cid = conversation["id"]
        assert (conversation["mode"], conversation["channel"], conversation["assignee"]) == ("queued", "telegram", None)
        await kim.say("hello? anyone?")  # nobody answers while it is queued: not the bot either
        await kim.nothing_more(0.5)

        claims = await asyncio.gather(*(client.http.post(f"/api/v1/conversations/{cid}/assign",
                                                         json={"agent_id": a.id}) for a in (anna, boris)))
        assert sorted(c.status_code for c in claims) == [200, 409]
        winner = anna if claims[0].status_code == 200 else boris
        loser = boris if winner is anna else anna
        got = (await client.http.get(f"/api/v1/conversations/{cid}")).json()
        assert (got["mode"], got["assignee"]) == ("assigned", winner.id)

        refused = await client.http.post(f"/api/v1/conversations/{cid}/messages",
                                         json={"agent_id": loser.id, "text": "me too"})
        assert refused.status_code == 409
        sent = await client.http.post(f"/api/v1/conversations/{cid}/messages",
                                      json={"agent_id": winner.id, "text": "Hi Kim, I'm on it."})
        assert sent.status_code == 202
        [reply] = await kim.replies(1)
        assert reply["text"] == "Hi Kim, I'm on it."
        noted = await client.http.post(f"/api/v1/conversations/{cid}/notes",
                                       json={"agent_id": winner.id, "text": "wants a refund"})
        assert noted.status_code == 201
        await kim.nothing_more(0.5)  # a note never reaches the provider

        resolved = await client.http.post(f"/api/v1/conversations/{cid}/resolve", json={"agent_id": winner.id})
        assert resolved.status_code == 200 and resolved.json()["mode"] == "resolved"
        [question] = await kim.replies(1)
        assert "1" in question["text"] and [b["title"] for b in question["buttons"]] == ["1", "2", "3", "4", "5"]
        await kim.say(button="csat:5")
        [thanks] = await kim.replies(1)
        assert "Thank you" in thanks["text"]
        await kim.say("hi")
        [greeting] = await kim.replies(1)
        assert greeting["text"].startswith("Hi")  # the bot has the customer again

        history = (await client.http.get(f"/api/v1/contacts/{got['contact_id']}/history")).json()["items"]
        assert {i["direction"] for i in history} == {"in", "out"}  # the contract's history: no notes
        with_notes = (await client.http.get(f"/api/v1/contacts/{got['contact_id']}/history",
                                            params={"notes": "true"})).json()["items"]
        assert any(i["text"] == "wants a refund" and i["direction"] == "note" for i in with_notes)
        assert await agents.load(winner.id) == 0  # the slot is free again
        assert (await client.http.get(f"/api/v1/conversations/{cid}")).status_code == 404  # a new one began


async def test_the_customer_can_leave_the_queue(hub: HubFactory) -> None:
    async with small_hub(hub) as client:
        lee = Customer(client, "telegram", "650002")
        await lee.say("talk to a human")
        await lee.replies(2)
        await queued(client)
        await lee.say("back to bot")
        [back] = await lee.replies(1)
        assert "back with me" in back["text"]
        assert (await client.http.get("/api/v1/conversations", params={"mode": "queued"})).json()["items"] == []
        await lee.say("hi")
        [greeting] = await lee.replies(1)
        assert greeting["text"].startswith("Hi")


async def test_unknown_agents_and_conversations_are_refused(hub: HubFactory) -> None:
    async with small_hub(hub) as client:
        assert (await client.http.get("/api/v1/conversations/nope")).status_code == 404
        answer = await client.http.post("/api/v1/conversations/nope/assign", json={"agent_id": "ghost"})
        assert answer.status_code == 404 and "ghost" in answer.json()["detail"]


async def test_outside_business_hours_the_customer_is_told_when_and_still_queued(hub: HubFactory) -> None:
    today = datetime.now(UTC).date()
    week = {day: ["09:00-17:00"] for day in ("mon", "tue", "wed", "thu", "fri", "sat", "sun")}
    closed_today = {"support": {"hours": {"timezone": "UTC", "week": week, "holidays": [today.isoformat()]}}}
    async with small_hub(hub, handoff__teams=closed_today) as client:
        max_ = Customer(client, "telegram", "650003")
        await max_.say("talk to a human")
        _, when = await max_.replies(2)
        tomorrow = (today + timedelta(days=1)).strftime("%a")
        assert f"from {tomorrow} 09:00 (UTC)" in when["text"]
        [conversation] = await queued(client)
        assert conversation["mode"] == "queued"


async def test_a_tagged_customer_goes_straight_to_a_person_of_the_rule_s_team(hub: HubFactory) -> None:
    rules = [{"tag": "vip", "team": "vip", "reason": "vip customer"}]
    teams = {"support": {}, "vip": {}}
    async with small_hub(hub, handoff__rules=rules, handoff__teams=teams) as client:
        zoe = Customer(client, "telegram", "650004")
        await zoe.say("hi")
        [greeting] = await zoe.replies(1)
        assert greeting["text"].startswith("Hi")  # not a VIP yet: the bot answers
        patched = await client.http.patch(f"/api/v1/contacts/{await zoe.contact_id()}", json={"add_tags": ["vip"]})
        assert patched.status_code == 200
        await zoe.say("hi again")
        told, _ = await zoe.replies(2)
        assert "colleague" in told["text"]
        [conversation] = await queued(client)
        assert (conversation["team"], conversation["handoff_reason"]) == ("vip", "vip customer")


async def test_a_sandbox_hub_has_a_demo_agent_who_can_sign_in(hub: HubFactory, redis: Redis) -> None:
    async with small_hub(hub):
        agent = await AgentStore(redis).verify(DEMO_EMAIL, DEMO_PASSWORD)
        assert agent is not None and agent.role == "supervisor"
