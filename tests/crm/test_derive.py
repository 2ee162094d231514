"""Which events a turn's changes make, and their ids: the same cause gives the same id (a replay is
recognised), two contacts never share one (stream entry ids repeat across partitions)."""

from __future__ import annotations

from bot.context.history import HistoryEntry
from bot.context.store import Changes, Snapshot
from bot.crm.derive import events_of
from bot.models import EventKind, InboundEvent


def first_message(cid: str, entry_id: str = "1700000000000-0") -> tuple[Snapshot, Changes]:
    event = InboundEvent(kind=EventKind.message, channel="telegram", user_id="42", provider_id="1", text="hi")
    changes = Changes(profile={"created": "1", "i:telegram:42": "1", "name": "Kim"},
                      conversation={"last": entry_id, "id": f"{cid}-{entry_id}", "mode": "bot", "ch": "telegram"},
                      history=[HistoryEntry.inbound(event, entry_id, 1.0)], mode=("", "bot"))
    return Snapshot(cid, {}, {}), changes


def test_a_first_message_makes_a_contact_a_conversation_and_a_received_message() -> None:
    snapshot, changes = first_message("c1")
    events = events_of(snapshot, changes, "1700000000000-0")
    assert [e.type for e in events] == ["omnihub.contact.created", "omnihub.conversation.started",
                                        "omnihub.message.received"]
    assert events[0].data["contact"]["identities"] == [{"channel": "telegram", "id": "42"}]


def test_ids_repeat_for_a_replay_and_differ_between_contacts_with_the_same_entry_id() -> None:
    again = events_of(*first_message("c1"), "1700000000000-0")
    assert [e.id for e in events_of(*first_message("c1"), "1700000000000-0")] == [e.id for e in again]
    other = events_of(*first_message("c2"), "1700000000000-0")
    assert not {e.id for e in again} & {e.id for e in other}


def test_an_update_names_what_changed_and_ignores_what_every_turn_writes() -> None:
    snapshot = Snapshot("c1", {"created": "1", "name": "Kim", "t:vip": "1"}, {"id": "c1-1-0", "mode": "bot"})
    routine = Changes(profile={"seen:telegram": "5", "pref": "telegram", "lang": "en"})
    assert events_of(snapshot, routine, "2-0") == []
    edit = Changes(profile={"name": "Kim Lee", "a:plan": "gold"}, drop_profile_fields=["t:vip"])
    [updated] = events_of(snapshot, edit, "3-0")
    assert updated.type == "omnihub.contact.updated" and updated.data["changed"] == ["attributes", "name", "tags"]
    assert (updated.data["contact"]["tags"], updated.data["contact"]["attributes"]) == ([], {"plan": "gold"})
