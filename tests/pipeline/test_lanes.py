"""The partition's two inbound lanes: a customer's message is answered ahead of a campaign's receipts
and steps, and an entry of one lane is never mistaken for a replay because the other lane went further."""

from __future__ import annotations

import asyncio
from urllib.parse import urlencode

import httpx
from redis.asyncio import Redis
from twilio.request_validator import RequestValidator

from bot.context import keys
from bot.pipeline.streams import waiting
from bot.sandbox import emulators as sandbox
from tests.campaigns.test_campaigns import tagged
from tests.campaigns.test_cascade import launch
from tests.conftest import HubFactory, hub_settings, running_hub
from tests.pipeline.customer import PARTITIONS, Customer, small_hub

RECEIPTS = 2000


async def post_receipts(http: httpx.AsyncClient, phone: str, count: int) -> None:
    """Delivery callbacks for SMS we sent `phone`, signed as Twilio signs them."""
    url = f"{str(http.base_url).rstrip('/')}/webhooks/twilio"
    validator = RequestValidator(sandbox.TWILIO_TOKEN)

    async def one(n: int) -> None:
        form = {"MessageSid": f"SM{n:032x}", "AccountSid": sandbox.TWILIO_SID, "MessageStatus": "delivered",
                "To": phone, "From": sandbox.TWILIO_SMS_FROM}
        answer = await http.post("/webhooks/twilio", content=urlencode(form).encode(), headers={
            "content-type": "application/x-www-form-urlencoded",
            "x-twilio-signature": validator.compute_signature(url, form)})
        assert answer.status_code == 200, answer.text

    for start in range(0, count, 50):
        await asyncio.gather(*(one(n) for n in range(start, min(count, start + 50))))


async def bulk_waiting(redis: Redis) -> int:
    """Entries of the bulk inbound lanes not yet done."""
    return sum([await waiting(redis, keys.inbound_bulk(p)) for p in range(PARTITIONS)])


async def test_a_customer_is_answered_ahead_of_a_backlog_of_receipts(hub: HubFactory, redis_url: str,
                                                                      redis: Redis) -> None:
    settings = hub_settings(redis_url, pipeline__partitions=PARTITIONS)
    async with running_hub(settings, run_workers=False) as api_only:  # webhooks accepted, nothing worked yet
        phone = "+79990004411"
        await Customer(api_only, "sms", phone).say("hi")  # the phone is a contact's now
        await post_receipts(api_only.http, phone, RECEIPTS)
        await Customer(api_only, "telegram", "760001").say("hello")
        assert await bulk_waiting(redis) == RECEIPTS
        async with small_hub(hub) as workers:
            await Customer(workers, "telegram", "760001").replies(1)
            # before the lanes, the message waited behind every receipt appended before it
            assert await bulk_waiting(redis) > RECEIPTS // 2


async def test_a_campaign_step_is_applied_though_the_live_lane_went_further(hub: HubFactory, redis: Redis) -> None:
    async with small_hub(hub) as client:
        customer, cid = await tagged(client, "telegram", "760002", "lanes")
        # the live lane has applied an entry newer than any the bulk lane will carry (as when a
        # customer's message overtakes the campaign's step); the step must still be applied
        await redis.hset(keys.conversation(cid), "last", "99999999999999-0")
        await launch(client, {"name": "lanes", "purpose": "service", "audience": {"tags": ["lanes"]},
                              "steps": [{"channel": "preferred", "text": "Your parcel is here", "until": "sent",
                                         "within": 1}]})
        [message] = await customer.replies(1)
        assert message["text"] == "Your parcel is here"
