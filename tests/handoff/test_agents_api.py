"""`/api/v1/agents` on a real hub: the contract's create (201, 409, 422), list with load and presence,
disable, presence — behind the bearer key."""

from __future__ import annotations

import asyncio

from redis.asyncio import Redis

from bot.context import keys
from tests.conftest import HubFactory
from tests.pipeline.customer import Customer, small_hub

TOKEN = "admin-secret-for-agents"
ADA = {"email": "ada@example.com", "name": "Ada", "password": "correct horse", "role": "supervisor",
       "teams": ["support"]}


async def test_create_list_disable_and_presence(hub: HubFactory, redis: Redis) -> None:
    async with hub(run_workers=False, admin_token=TOKEN) as client:
        http, auth = client.http, {"Authorization": f"Bearer {TOKEN}"}
        assert (await http.post("/api/v1/agents", json=ADA)).status_code == 401
        created = await http.post("/api/v1/agents", json=ADA, headers=auth)
        assert created.status_code == 201, created.text
        ada = created.json()
        assert ada["id"] and (ada["email"], ada["role"], ada["teams"], ada["capacity"]) == (
            "ada@example.com", "supervisor", ["support"], 5)
        assert (ada["load"], ada["online"], ada["disabled"]) == (0, False, False)
        assert not any("password" in k or k == "pw" for k in ada) and "$argon2" not in created.text

        again = await http.post("/api/v1/agents", json={**ADA, "email": "ADA@example.com"}, headers=auth)
        assert again.status_code == 409 and "exists" in again.json()["detail"]
        for bad in ({**ADA, "email": "nope"}, {**ADA, "role": "boss"}, {**ADA, "password": "short"},
                    {k: v for k, v in ADA.items() if k != "name"}, {**ADA, "pw": "x"}):
            assert (await http.post("/api/v1/agents", json=bad, headers=auth)).status_code == 422, bad

        online = await http.post(f"/api/v1/agents/{ada['id']}/presence", json={"online": True}, headers=auth)
        assert online.status_code == 200 and online.json()["online"] is True
        await redis.zadd(keys.agent_load(ada["id"]), {"c-1": 1})
        [listed] = [a for a in (await http.get("/api/v1/agents", headers=auth)).json()["items"]
                    if a["id"] == ada["id"]]  # a sandbox hub also has its demo agent
        assert (listed["id"], listed["load"], listed["online"]) == (ada["id"], 1, True)
        offline = await http.post(f"/api/v1/agents/{ada['id']}/presence", json={"online": False}, headers=auth)
        assert offline.json()["online"] is False

        disabled = await http.post(f"/api/v1/agents/{ada['id']}/disable", headers=auth)
        assert disabled.status_code == 200 and disabled.json()["disabled"] is True
        shown = await http.get(f"/api/v1/agents/{ada['id']}", headers=auth)
        assert shown.json()["disabled"] is True
        refused = await http.post(f"/api/v1/agents/{ada['id']}/presence", json={"online": True}, headers=auth)
        assert refused.status_code == 409
        for path in ("/api/v1/agents/ghost", "/api/v1/agents/ghost/disable"):
            method = http.get if path.endswith("ghost") else http.post
            assert (await method(path, headers=auth)).status_code == 404


async def test_the_hubs_router_gives_a_new_chat_to_the_online_agent(hub: HubFactory) -> None:
    async with small_hub(hub) as client:
        http = client.http
        ada = (await http.post("/api/v1/agents", json=ADA)).json()
        bob = (await http.post("/api/v1/agents", json={**ADA, "email": "bob@example.com", "name": "Bob"})).json()
        assert (await http.post(f"/api/v1/agents/{ada['id']}/presence", json={"online": True})).status_code == 200
        kim = Customer(client, "telegram", "660001")
        await kim.say("talk to a human")
        deadline = asyncio.get_running_loop().time() + 10
        while not (items := (await http.get("/api/v1/conversations", params={"mode": "assigned"})).json()["items"]):
            assert asyncio.get_running_loop().time() < deadline, "the router never assigned the chat"
            await asyncio.sleep(0.05)
        [conversation] = items
        assert conversation["assignee"] == ada["id"]  # online; Bob never said he was
        shown = (await http.get(f"/api/v1/agents/{ada['id']}")).json()
        assert (shown["load"], bob["load"]) == (1, 0)
