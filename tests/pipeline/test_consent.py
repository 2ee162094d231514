"""Consent end to end: SMS keywords through the real Twilio webhook, Viber (un)subscriptions, and the
sender refusing what the ledger forbids — with every change and every refusal on record."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from redis.asyncio import Redis

from bot.context import keys
from bot.context.consent import consent_trail
from bot.models import Channel, OutboundMessage, Purpose, Reply
from tests.conftest import HubFactory
from tests.pipeline.customer import Customer, Entry, enqueue, small_hub

STOPPED = "You are unsubscribed and will get no more messages from us here. Reply START to subscribe again."


async def send(
    redis: Redis, customer: Customer, channel: Channel, message_id: str, purpose: Purpose = "marketing"
) -> Entry:
    """Queue a message to the customer as a campaign (or, for service, an agent) does; its history entry
    once the sender has dealt with it."""
    cid = await customer.contact_id()
    author = "campaign" if purpose == "marketing" else "agent"
    message = OutboundMessage(id=message_id, contact_id=cid, channel=channel, user_id=customer.user,
                              reply=Reply(text=f"{message_id}: spring sale!"), purpose=purpose, author=author,
                              campaign_id="spring" if purpose == "marketing" else None)
    await enqueue(redis, message)
    items = await customer.history_until(
        lambda items: any(i["id"] == message_id and i["status"] != "queued" for i in items))
    return next(i for i in items if i["id"] == message_id)


async def opt_in_to_marketing(redis: Redis, customer: Customer, *channels: Channel) -> str:
    """What an import of consents collected elsewhere leaves on the profile."""
    cid = await customer.contact_id()
    await redis.hset(keys.contact(cid), mapping={f"cs:{channel}:marketing": "in" for channel in channels})
    return cid


async def test_stop_is_confirmed_once_and_withdraws_marketing_everywhere(hub: HubFactory, redis: Redis) -> None:
    async with small_hub(hub) as client:
        olga = Customer(client, "sms", "+79991110001")
        await olga.say("hi")
        await olga.replies()
        cid = await opt_in_to_marketing(redis, olga, "sms", "whatsapp")
        assert (await send(redis, olga, "sms", "before-stop"))["status"] == "sent"
        await olga.replies()

        stop = await olga.say("Stop ")
        [confirmation] = await olga.replies()
        assert confirmation["text"] == STOPPED
        await olga.say("STOP")
        await olga.nothing_more()  # confirmed once

        refused = [await send(redis, olga, "sms", "sms-offer"), await send(redis, olga, "whatsapp", "wa-offer"),
                   await send(redis, olga, "sms", "agent-note", purpose="service")]
        assert [(i["status"], i["error"]) for i in refused] == [
            ("blocked", "not sent: sms consent for marketing messages was withdrawn"),
            ("blocked", "not sent: whatsapp consent for marketing messages was withdrawn"),
            ("blocked", "not sent: sms consent for service messages was withdrawn"),
        ]
        await olga.nothing_more(0.5)
        history = await olga.history()
        assert [(i["direction"], i["author"], i["text"]) for i in history[3:6]] == [
            ("in", "customer", "Stop "), ("out", "system", STOPPED), ("in", "customer", "STOP")]

        trail = await consent_trail(redis, cid)
        assert {(row["channel"], row["purpose"], row["state"]) for row in trail} == {
            ("sms", "service", "out"), *((channel, "marketing", "out") for channel in ("telegram", "whatsapp",
                                                                                       "viber", "sms"))}
        assert {(row["source"], row["message_id"], row["detail"], row["entry_id"]) for row in trail} == {
            ("keyword", stop["message_sid"], "Stop", history[3]["id"])}  # one inbound message did all that
        assert all(abs(row["at"] - time.time()) < 60 for row in trail)


async def test_start_opts_back_in_on_sms_only(hub: HubFactory, redis: Redis) -> None:
    async with small_hub(hub) as client:
        pavel = Customer(client, "sms", "+79991110002")
        await pavel.say("СТОП")
        [stopped] = await pavel.replies()
        assert stopped["text"].startswith("Вы отписались")
        await opt_in_to_marketing(redis, pavel, "whatsapp")  # opted in elsewhere since

        await pavel.say("start")
        [started] = await pavel.replies()
        assert started["text"] == "You are subscribed again. Reply STOP to unsubscribe, HELP for help."
        assert (await send(redis, pavel, "sms", "offer"))["status"] == "sent"
        [offer] = await pavel.replies()
        assert offer["text"] == "offer: spring sale!"
        trail = await consent_trail(redis, await pavel.contact_id())
        assert [(r["channel"], r["purpose"], r["state"], r["detail"]) for r in trail if r["channel"] == "sms"] == [
            ("sms", "service", "out", "СТОП"), ("sms", "marketing", "out", "СТОП"),
            ("sms", "service", "in", "start"), ("sms", "marketing", "in", "start")]


async def test_help_is_answered_in_the_customers_language_even_after_stop(hub: HubFactory) -> None:
    async with small_hub(hub) as client:
        rita = Customer(client, "sms", "+79991110003")
        await rita.say("STOP")
        await rita.replies()
        await rita.say("help")
        [english] = await rita.replies()
        assert english["text"].startswith("Write your question here")
        await rita.say("Помощь")
        [russian] = await rita.replies()
        assert russian["text"].startswith("Напишите вопрос сюда")


async def test_stop_is_honoured_while_a_human_has_the_conversation(hub: HubFactory, redis: Redis) -> None:
    async with small_hub(hub) as client:
        sergey = Customer(client, "sms", "+79991110004")
        await sergey.say("talk to a human")
        handoff, place = await sergey.replies(2)
        assert handoff["text"].startswith("Sure — I'm passing the chat") and "queue" in place["text"]
        await sergey.say("UNSUBSCRIBE")
        [confirmation] = await sergey.replies()
        assert confirmation["text"] == STOPPED
        assert await redis.hget(keys.conversation(await sergey.contact_id()), "mode") == "queued"


async def test_stop_can_leave_other_channels_marketing_alone(hub: HubFactory, redis: Redis) -> None:
    async with small_hub(hub, context__stop_revokes_all_marketing=False) as client:
        tanya = Customer(client, "sms", "+79991110005")
        await tanya.say("hi")
        await tanya.replies()
        cid = await opt_in_to_marketing(redis, tanya, "whatsapp")
        await redis.hset(keys.contact(cid), "seen:whatsapp", f"{time.time():.0f}")  # inside the window
        await tanya.say("QUIT")
        await tanya.replies()
        assert (await send(redis, tanya, "sms", "sms-offer"))["status"] == "blocked"
        assert (await send(redis, tanya, "whatsapp", "wa-offer"))["status"] == "sent"


async def test_viber_subscription_and_unsubscription(hub: HubFactory, redis: Redis) -> None:
    async with small_hub(hub) as client:
        vera = Customer(client, "viber", "viber-vera")

        async def viber_event(event: str) -> Any:
            answer = await client.http.post("/emulator/viber/_/inbound", json={"user_id": vera.user, "event": event})
            assert answer.json()["status"] == 200
            return answer.json()["message_token"]

        subscribed = await viber_event("subscribed")
        cid = await vera.contact_id()
        assert await _consent_after(redis, cid, 1) == [("viber", "service", "in", "subscribed", subscribed)]
        assert (await send(redis, vera, "viber", "welcome", purpose="service"))["status"] == "sent"
        await vera.replies()
        offer = await send(redis, vera, "viber", "offer")
        assert (offer["status"], offer["error"]) == ("blocked", "not sent: no opt-in to marketing messages on viber")

        unsubscribed = await viber_event("unsubscribed")
        assert (await _consent_after(redis, cid, 3))[1:] == [
            ("viber", purpose, "out", "unsubscribed", unsubscribed) for purpose in ("service", "marketing")]
        note = await send(redis, vera, "viber", "after", purpose="service")
        assert note["error"] == "not sent: viber consent for service messages was withdrawn"

        await vera.say("hi")  # writing to a Viber bot subscribes again
        [greeting] = await vera.replies()
        assert greeting["text"].startswith("Hi, Sandbox!")
        trail = await consent_trail(redis, cid)
        assert [(r["purpose"], r["state"], r["source"], r.get("detail")) for r in trail[3:]] == [
            ("service", "in", "subscribed", "wrote again")]


async def _consent_after(redis: Redis, cid: str, rows: int) -> list[tuple[Any, ...]]:
    """The trail once it has `rows` rows (the event is processed by the worker after the webhook)."""
    deadline = time.monotonic() + 10
    while len(trail := await consent_trail(redis, cid)) < rows:
        assert time.monotonic() < deadline, trail
        await asyncio.sleep(0.05)
    return [(r["channel"], r["purpose"], r["state"], r["source"], int(r["message_id"])) for r in trail]
