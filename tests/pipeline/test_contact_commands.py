"""Contact-addressed commands: an API send and a handoff go through the contact's partition.

They are applied by the partition's worker in order with the customer's own messages, so an API
message never overtakes the bot's answer to the message before it, and a retried call with the same
Idempotency-Key is applied once.
"""

from __future__ import annotations

from tests.conftest import HubFactory
from tests.pipeline.customer import Customer, small_hub


async def test_an_api_message_reaches_the_customer_where_they_wrote_last(hub: HubFactory) -> None:
    async with small_hub(hub) as client:
        ada = Customer(client, "telegram", "640001")
        await ada.say("hello")
        await ada.replies(1)
        cid = await ada.contact_id()
        for _ in range(2):  # the same Idempotency-Key twice: one message
            answer = await client.http.post(f"/api/v1/contacts/{cid}/messages", json={"text": "Your order shipped"},
                                            headers={"Idempotency-Key": "order-42-shipped"})
            assert answer.status_code == 202, answer.text
        [message] = await ada.replies(1)
        assert message["text"] == "Your order shipped"
        await ada.nothing_more()
        items = await ada.history_until(lambda items: items[-1]["status"] == "sent")
        assert [(i["direction"], i["text"]) for i in items][-1] == ("out", "Your order shipped")


async def test_an_api_message_keeps_its_place_behind_the_customers_message(hub: HubFactory) -> None:
    async with small_hub(hub) as client:
        bob = Customer(client, "telegram", "640002")
        await bob.say("hello")
        await bob.replies(1)
        cid = await bob.contact_id()
        await bob.say("hello")  # the API call below is queued after it, so it is answered after it
        assert (await client.http.post(f"/api/v1/contacts/{cid}/messages", json={"text": "P.S."})).status_code == 202
        greeting, ps = await bob.replies(2)
        assert greeting["text"].startswith("Hi") and ps["text"] == "P.S."


async def test_an_api_message_is_refused_when_it_cannot_be_delivered(hub: HubFactory) -> None:
    async with small_hub(hub) as client:
        cleo = Customer(client, "telegram", "640003")
        await cleo.say("hello")
        cid = await cleo.contact_id()
        answer = await client.http.post(f"/api/v1/contacts/{cid}/messages", json={"text": "hi", "channel": "viber"})
        assert answer.status_code == 409 and "no viber identity" in answer.json()["detail"]
        answer = await client.http.post("/api/v1/contacts/nobody/messages", json={"text": "hi"})
        assert answer.status_code == 404


async def test_a_handoff_through_the_api_stops_the_bot(hub: HubFactory) -> None:
    async with small_hub(hub) as client:
        dan = Customer(client, "telegram", "640004")
        await dan.say("hello")
        await dan.replies(1)
        cid = await dan.contact_id()
        answer = await client.http.post(f"/api/v1/contacts/{cid}/handoff", json={"reason": "vip"})
        assert answer.status_code == 202
        [place] = await dan.replies(1)
        assert "number 1 in the queue" in place["text"]
        await dan.say("hello again")  # behind the handoff in the partition: the bot no longer answers
        await dan.history_until(lambda items: items[-1]["text"] == "hello again")
        await dan.nothing_more()
        queued = (await client.http.get("/api/v1/conversations", params={"mode": "queued"})).json()["items"]
        assert [(c["contact_id"], c["handoff_reason"]) for c in queued] == [(cid, "vip")]
