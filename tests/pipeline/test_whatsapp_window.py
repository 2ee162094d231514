"""WhatsApp's 24-hour window, enforced by the sender: outside it a free-form message becomes the
configured fallback template, or fails with the reason when there is none."""

from __future__ import annotations

import json
import time

import orjson
from redis.asyncio import Redis

from bot.context import keys
from bot.models import OutboundMessage, Reply, Template
from tests.conftest import HubFactory
from tests.pipeline.customer import Customer, Entry, enqueue, small_hub, statuses

FALLBACK = "HX" + "f" * 32
LONG_TEXT = ("Good news: the blue kettle you asked about is back in stock, and we have kept one for you at the "
             "Tverskaya store until Friday.")


async def away_for_a_day(redis: Redis, customer: Customer) -> str:
    """The customer wrote on WhatsApp, but more than 24 hours ago."""
    await customer.say("hi")
    await customer.replies()
    cid = await customer.contact_id()
    await redis.hset(keys.contact(cid), "seen:whatsapp", f"{time.time() - 25 * 3600:.0f}")
    return cid


async def raw_entry(redis: Redis, cid: str, message_id: str) -> Entry:
    entries = [orjson.loads(raw) for raw in await redis.lrange(keys.history(cid), 0, -1)]
    return next(entry for entry in entries if entry["id"] == message_id)


async def test_outside_the_window_the_fallback_template_goes_instead(hub: HubFactory, redis: Redis) -> None:
    async with small_hub(hub, twilio__whatsapp_fallback_template=FALLBACK) as client:
        ivan = Customer(client, "whatsapp", "+79992220001")
        cid = await away_for_a_day(redis, ivan)
        await enqueue(redis, OutboundMessage(id="agent-1", contact_id=cid, channel="whatsapp", user_id=ivan.user,
                                             reply=Reply(text=LONG_TEXT), author="agent"))
        [sent] = await ivan.replies()
        assert sent["raw"]["ContentSid"] == FALLBACK and "Body" not in sent["raw"]
        preview = json.loads(sent["raw"]["ContentVariables"])["1"]
        assert len(preview) == 100 and LONG_TEXT.startswith(preview.removesuffix("…")) and preview.endswith("…")

        await ivan.history_until(lambda items: statuses(items) == ["read", "read"])
        entry = await raw_entry(redis, cid, "agent-1")
        assert (entry["tx"], entry["tpl"], entry["pid"]) == (LONG_TEXT, FALLBACK, sent["provider_id"])


async def test_inside_the_window_a_message_goes_free_form(hub: HubFactory, redis: Redis) -> None:
    async with small_hub(hub, twilio__whatsapp_fallback_template=FALLBACK) as client:
        lena = Customer(client, "whatsapp", "+79992220002")
        await lena.say("hi")
        await lena.replies()
        cid = await lena.contact_id()
        await enqueue(redis, OutboundMessage(id="agent-1", contact_id=cid, channel="whatsapp", user_id=lena.user,
                                             reply=Reply(text="Still there?"), author="agent"))
        [sent] = await lena.replies()
        assert sent["raw"]["Body"] == "Still there?" and "ContentSid" not in sent["raw"]


async def test_without_a_fallback_template_the_message_fails_with_the_reason(hub: HubFactory, redis: Redis) -> None:
    async with small_hub(hub) as client:
        mila = Customer(client, "whatsapp", "+79992220003")
        cid = await away_for_a_day(redis, mila)
        await enqueue(redis, OutboundMessage(id="agent-1", contact_id=cid, channel="whatsapp", user_id=mila.user,
                                             reply=Reply(text=LONG_TEXT), author="agent"))
        items = await mila.history_until(lambda items: statuses(items)[-1] == "failed")
        assert items[-1]["error"] == ("not sent: outside the WhatsApp 24-hour window, and no "
                                      "twilio.whatsapp_fallback_template is configured")
        await mila.nothing_more(0.5)

        # a message that is an approved template already needs no window
        template = Template(name="HX" + "a" * 32, variables={"1": "Mila"})
        await enqueue(redis, OutboundMessage(id="agent-2", contact_id=cid, channel="whatsapp", user_id=mila.user,
                                             reply=Reply(template=template), author="agent"))
        [sent] = await mila.replies()
        assert sent["raw"]["ContentSid"] == template.name
        assert json.loads(sent["raw"]["ContentVariables"]) == {"1": "Mila"}


async def test_a_contact_who_never_wrote_on_whatsapp_is_outside_the_window(hub: HubFactory, redis: Redis) -> None:
    async with small_hub(hub) as client:
        nina = Customer(client, "sms", "+79992220004")
        await nina.say("hi")
        await nina.replies()
        cid = await nina.contact_id()
        await enqueue(redis, OutboundMessage(id="agent-1", contact_id=cid, channel="whatsapp", user_id=nina.user,
                                             reply=Reply(text="Hello from WhatsApp"), author="agent"))
        items = await nina.history_until(lambda items: statuses(items)[-1] == "failed")
        assert (items[-1]["channel"], items[-1]["error"].split(",")[0]) == (
            "whatsapp", "not sent: outside the WhatsApp 24-hour window")
