"""The history entry model: what is stored (short keys, nothing empty) and that old entries still load."""

from __future__ import annotations

import orjson

from bot.context.history import Delivery, HistoryEntry
from bot.models import Attachment, Button, EventKind, InboundEvent, Location, OutboundMessage, Reply

# as turns.py and sender.py wrote them before the model existed
OLD_OUT = (b'{"id":"1-0-0","ch":"sms","d":"out","at":1700000000.5,"by":"bot","st":"delivered","tx":"Hi",'
           b'"src":"1-0","btn":[{"title":"Hours","payload":"hours"}],"pid":"SM1","seg":1,"enc":"GSM-7","cost":0.0079}')
OLD_IN = (b'{"id":"1-0","ch":"telegram","d":"in","at":1700000000.1,"by":"customer","tx":"hi",'
          b'"att":[{"type":"image","file_id":"F"}],"loc":{"latitude":55.7,"longitude":37.6},"phone":"+79990001122"}')


def test_old_stored_entries_load_and_store_back_the_same() -> None:
    out = HistoryEntry.read(OLD_OUT)
    assert (out.channel, out.direction, out.author, out.status, out.answers, out.provider_id) == (
        "sms", "out", "bot", "delivered", "1-0", "SM1")
    assert (out.buttons, out.sms_segments, out.sms_encoding, out.cost) == (
        (Button(title="Hours", payload="hours"),), 1, "GSM-7", 0.0079)
    inbound = HistoryEntry.read(OLD_IN)
    assert inbound.attachments == (Attachment(type="image", file_id="F"),)
    assert inbound.location == Location(latitude=55.7, longitude=37.6)
    for raw in (OLD_OUT, OLD_IN):
        assert HistoryEntry.read(raw).stored() == orjson.loads(raw)


def test_keys_it_does_not_know_are_ignored_on_reading() -> None:
    assert HistoryEntry.read(b'{"id":"x","ch":"viber","d":"in","at":1,"by":"customer","new":1}').id == "x"


def test_a_queued_reply_and_a_customer_message_store_only_what_they_have() -> None:
    message = OutboundMessage(id="m1", contact_id="c1", channel="telegram", user_id="7", reply=Reply(text="Hi"))
    assert HistoryEntry.outbound(message, 5.0, "1-0").stored() == {
        "id": "m1", "ch": "telegram", "d": "out", "at": 5.0, "by": "bot", "st": "queued", "tx": "Hi", "src": "1-0"}
    event = InboundEvent(kind=EventKind.message, channel="sms", user_id="+7999", provider_id="p", text="ok")
    assert HistoryEntry.inbound(event, "2-0", 6.0).stored() == {
        "id": "2-0", "ch": "sms", "d": "in", "at": 6.0, "by": "customer", "tx": "ok"}


def test_a_keyword_reply_and_a_marketing_message_say_so() -> None:
    stop = OutboundMessage(id="m2", contact_id="c1", channel="sms", user_id="+7999", reply=Reply(text="Bye"),
                           author="system", keyword_reply=True)
    offer = OutboundMessage(id="m3", contact_id="c1", channel="sms", user_id="+7999", reply=Reply(text="Sale"),
                            purpose="marketing", campaign_id="spring", author="campaign")
    assert HistoryEntry.outbound(stop, 1.0).stored()["kw"] is True
    assert {k: HistoryEntry.outbound(offer, 1.0).stored()[k] for k in ("pur", "cmp", "by")} == {
        "pur": "marketing", "cmp": "spring", "by": "campaign"}


def test_a_delivery_is_stored_under_the_keys_the_update_script_matches() -> None:
    assert Delivery(status="failed", error="blocked").stored() == {"st": "failed", "err": "blocked"}
    message = OutboundMessage(id="m4", contact_id="c1", channel="sms", user_id="+7999", reply=Reply(text="Hi"))
    sent = Delivery.model_validate({"st": "sent", "pid": "SM9", "seg": 2})  # as the sender's outcome dicts
    entry = HistoryEntry.outbound(message, 1.0).delivered(sent)
    assert (entry.status, entry.provider_id, entry.sms_segments, entry.stored()["pid"]) == ("sent", "SM9", 2, "SM9")
