"""Rasa as the dialogue backend, through a real hub, the Telegram emulator and a Rasa faked at the wire:
Rasa's answers reach the customer rendered for the channel, a button's payload goes back to Rasa,
`action_handoff` queues the conversation and Rasa hears nothing while it is with people, and a Rasa
that is down or hangs leaves the customer with the built-in engine's answers, counted in /metrics."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import pytest
from redis.asyncio import Redis

from bot.crm.outbox import recorded as recorded_events
from bot.models import CHANNELS, Channel
from bot.sandbox.client import SandboxClient, default_user
from tests.conftest import HubFactory
from tests.handoff.test_conversation_api import queued
from tests.pipeline.customer import PARTITIONS, Customer, small_hub
from tests.rasa.fake_rasa import FakeRasa, RunAction, recorded

TOKEN = "rasa-test-token"


@contextlib.asynccontextmanager
async def rasa_hub(hub: HubFactory, fake: FakeRasa, **overrides: Any) -> AsyncIterator[SandboxClient]:
    async with small_hub(hub, rasa__url=fake.url, rasa__token=TOKEN, **overrides) as client:
        fake.action_url = f"{client.http.base_url}/rasa/webhook?token={TOKEN}"
        yield client


def keyboard(reply: dict[str, Any]) -> list[tuple[str, str]]:
    rows = reply["raw"]["reply_markup"]["inline_keyboard"]
    return [(button["text"], button["callback_data"]) for row in rows for button in row]


async def test_rasa_answers_with_text_and_buttons_and_a_button_goes_back_to_rasa(hub: HubFactory) -> None:
    fake = FakeRasa(answers={"hello": recorded("rest_buttons.json"), "/human": recorded("rest_several.json")})
    async with fake.running(), rasa_hub(hub, fake) as client:
        kim = Customer(client, "telegram", "710001")
        await kim.say("hello", name="Kim", language="en")
        [greeting] = await kim.replies(1)
        expected = recorded("rest_buttons.json")[0]
        assert greeting["text"] == expected["text"]
        assert keyboard(greeting) == [(b["title"], b["payload"]) for b in expected["buttons"]]

        sent = fake.received[0]
        assert sent["message"] == "hello" and sent["sender"].startswith(await kim.contact_id())
        assert sent["metadata"]["channel"] == "telegram" and sent["metadata"]["language"] == "en"
        assert sent["metadata"]["contact"]["name"] == "Kim"

        human = next(payload for title, payload in keyboard(greeting) if title == "Talk to a human")
        await kim.say(button=human)
        answered = await kim.replies(len(recorded("rest_several.json")))
        assert [m["text"] for m in answered] == [m["text"] for m in recorded("rest_several.json")]
        assert fake.received[1]["message"] == human
        assert fake.received[1]["sender"] == sent["sender"]  # one Rasa tracker for the conversation


@pytest.mark.parametrize("channel", CHANNELS)
async def test_rasa_answers_on_every_channel(hub: HubFactory, channel: Channel) -> None:
    fake = FakeRasa(answers={"hello": recorded("rest_several.json")})
    async with fake.running(), rasa_hub(hub, fake) as client:
        customer = Customer(client, channel, default_user(channel))
        await customer.say("hello")
        answered = await customer.replies(len(recorded("rest_several.json")))
        assert [m["text"] for m in answered] == [m["text"] for m in recorded("rest_several.json")]
        assert fake.received[0]["metadata"]["channel"] == channel


async def test_on_sms_rasas_buttons_are_numbered_and_a_number_sends_that_buttons_payload(hub: HubFactory) -> None:
    buttons = recorded("rest_buttons.json")[0]["buttons"]
    fake = FakeRasa(answers={"hi": recorded("rest_buttons.json")})
    async with fake.running(), rasa_hub(hub, fake) as client:
        sam = Customer(client, "sms", "+447700900123")
        await sam.say("hi")
        [menu] = await sam.replies(1)
        assert f"2. {buttons[1]['title']}" in menu["text"]
        await sam.say("2")
        for _ in range(100):
            if len(fake.received) == 2:
                break
            await asyncio.sleep(0.05)
        assert fake.received[1]["message"] == buttons[1]["payload"]
        assert fake.received[1]["metadata"]["channel"] == "sms"


async def test_action_handoff_queues_the_conversation_and_rasa_is_not_called_while_people_have_it(
    hub: HubFactory, redis: Redis,
) -> None:
    fake = FakeRasa(answers={"talk to a human": RunAction("action_handoff", {"handoff_reason": "asked for a person"})})
    async with fake.running(), rasa_hub(hub, fake) as client:
        kim = Customer(client, "telegram", "710002")
        await kim.say("talk to a human")
        [conversation] = await queued(client)
        assert conversation["channel"] == "telegram"
        status, answer = fake.action_answers[0]
        assert status == 200
        assert answer["responses"][0]["custom"]["omnihub"]["handoff"]["reason"] == "asked for a person"
        got = (await client.http.get(f"/api/v1/conversations/{conversation['id']}")).json()
        assert got["mode"] == "queued"

        await kim.say("hello? anyone there?")
        await kim.history_until(lambda items: any(i.get("text") == "hello? anyone there?" for i in items))
        await asyncio.sleep(0.3)
        assert [body["message"] for body in fake.received] == ["talk to a human"]

        feed = [e.type for e in await recorded_events(redis, PARTITIONS)]
        assert feed.count("omnihub.message.received") == 2
        assert "omnihub.conversation.handoff_requested" in feed


async def test_action_set_contact_attribute_lands_on_the_profile(hub: HubFactory) -> None:
    fake = FakeRasa(answers={"I am vegan": RunAction("action_set_contact_attribute",
                                                     {"attribute_name": "diet", "attribute_value": "vegan"})})
    async with fake.running(), rasa_hub(hub, fake) as client:
        kim = Customer(client, "telegram", "710003")
        await kim.say("I am vegan")
        cid = await kim.contact_id()
        for _ in range(100):
            if (await client.http.get(f"/api/v1/contacts/{cid}")).json()["attributes"].get("diet") == "vegan":
                break
            await asyncio.sleep(0.05)
        else:
            raise AssertionError("the attribute never reached the profile")


async def test_rasa_down_or_hanging_leaves_the_built_in_engine_answering(hub: HubFactory) -> None:
    fake = FakeRasa()
    async with rasa_hub(hub, fake, rasa__dialogue_timeout_seconds=0.5, rasa__pause_seconds=0.2) as client:
        kim = Customer(client, "telegram", "710004")
        await kim.say("opening hours", language="en")  # nothing listens at the Rasa URL
        [answer] = await kim.replies(1)
        assert answer["text"].startswith("Our store is open")  # the demo dialogs' own answer

        await asyncio.sleep(0.3)  # past the pause: the next turn tries Rasa again
        async with fake.running():
            fake.hang = True
            await kim.say("delivery")
            [answer] = await kim.replies(1, wait=5)
            assert answer["text"].startswith("We deliver nationwide")
            assert [b["message"] for b in fake.received] == ["delivery"]  # it was asked, and did not answer

        metrics = (await client.http.get("/metrics")).text
        assert 'omnihub_rasa_fallbacks_total{mode="dialogue",reason="down"} 1.0' in metrics
        assert 'omnihub_rasa_fallbacks_total{mode="dialogue",reason="timeout"} 1.0' in metrics


async def test_after_a_failure_rasa_is_left_alone_for_a_pause_and_readyz_says_so(hub: HubFactory) -> None:
    fake = FakeRasa()
    async with rasa_hub(hub, fake, rasa__pause_seconds=60) as client:
        assert (await client.http.get("/readyz")).json()["rasa"] == "answering"
        kim = Customer(client, "telegram", "710005")
        await kim.say("opening hours", language="en")  # Rasa is down: refused
        await kim.replies(1)
        async with fake.running():
            await kim.say("delivery")
            [answer] = await kim.replies(1)
            assert answer["text"].startswith("We deliver nationwide")
            assert fake.received == []  # paused: not even asked
        ready = (await client.http.get("/readyz")).json()
        assert ready["status"] == "degraded" and ready["rasa"].startswith("paused after a failure")


async def test_consent_keywords_are_the_hubs_whoever_answers(hub: HubFactory) -> None:
    fake = FakeRasa(answers={"hi": recorded("rest_text.json")})
    async with fake.running(), rasa_hub(hub, fake) as client:
        sam = Customer(client, "sms", "+447700900124")
        await sam.say("hi")
        await sam.replies(1)
        await sam.say("STOP")
        [confirmation] = await sam.replies(1)
        assert confirmation["text"].startswith("You are unsubscribed")
        assert [body["message"] for body in fake.received] == ["hi"]  # STOP never reached Rasa
