"""A hub with the Bitrix24 adapter on, against the emulator: a WhatsApp customer's chat, handoff, agent
reply and resolve show up in the portal as one contact, a lead and the transcript; run again from an
empty Redis (our mapping gone), the same number is found in the portal, not added twice."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from redis.asyncio import Redis

from bot.handoff.agents import AgentStore
from bot.sandbox.bitrix24_api import Bitrix24Emulator, create_bitrix24_emulator
from bot.sandbox.emulator_kit import serve
from tests.conftest import HubFactory
from tests.handoff.test_conversation_api import queued
from tests.pipeline.customer import Customer, small_hub

CODE = "hubtestcode"
PHONE = "+79161230099"


async def until(probe: Any, wait: float = 20.0) -> Any:
    deadline = time.monotonic() + wait
    while not (value := probe()):
        assert time.monotonic() < deadline, "the portal never got it"
        await asyncio.sleep(0.1)
    return value


async def chat_to_an_agent_and_back(hub: HubFactory, redis: Redis, url: str, emulator: Bitrix24Emulator,
                                    agent_email: str) -> None:
    comments = len(emulator.comments)
    agent = await AgentStore(redis).create(agent_email, "Olga", "correct horse battery")
    async with small_hub(hub, crm__bitrix24__webhook_url=f"{url}/rest/1/{CODE}/") as client:
        customer = Customer(client, "whatsapp", PHONE)
        await customer.say("позовите оператора")
        await customer.replies(2)
        [conversation] = await queued(client)
        conv = conversation["id"]
        assert (await client.http.post(f"/api/v1/conversations/{conv}/assign", json={"agent_id": agent.id})).is_success
        await client.http.post(f"/api/v1/conversations/{conv}/messages",
                               json={"agent_id": agent.id, "text": "Ольга на связи, чем помочь?"})
        await customer.replies(1)
        assert (await client.http.post(f"/api/v1/conversations/{conv}/resolve",
                                       json={"agent_id": agent.id})).is_success
        await customer.replies(1)
        await until(lambda: len(emulator.comments) > comments)


async def test_the_portal_gets_one_contact_its_leads_and_transcripts_across_two_runs(
        hub: HubFactory, redis: Redis) -> None:
    app = create_bitrix24_emulator("1", CODE)
    emulator = app.state.emulator
    async with serve(app) as url:
        await chat_to_an_agent_and_back(hub, redis, url, emulator, "olga@example.com")
        [contact] = emulator.contacts.values()
        assert [p["VALUE"] for p in contact["PHONE"]] == [PHONE]
        [lead] = emulator.leads.values()
        assert int(lead["CONTACT_ID"]) == int(contact["ID"]) and "whatsapp" in lead["TITLE"].lower()
        [comment] = emulator.comments.values()
        assert int(comment["ENTITY_ID"]) == int(contact["ID"])
        assert "позовите оператора" in comment["COMMENT"] and "Ольга на связи, чем помочь?" in comment["COMMENT"]

        await redis.flushdb()  # a second run that remembers nothing of the first
        await chat_to_an_agent_and_back(hub, redis, url, emulator, "olga2@example.com")
        assert len(emulator.contacts) == 1, "the same number was added to the portal twice"
        assert len(emulator.leads) == 2 and len(emulator.comments) == 2
        assert {int(lead["CONTACT_ID"]) for lead in emulator.leads.values()} == {int(contact["ID"])}
