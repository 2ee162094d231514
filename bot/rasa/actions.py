"""The Rasa action-server protocol (what `rasa-sdk` serves), and Omnihub's built-in actions.

Rasa posts `{"next_action", "sender_id", "tracker", "domain", "version"}` and expects `{"events",
"responses"}`; an unknown action is a 404 and a refused one a 400, both `{"error", "action_name"}`.
Our `sender_id` is the conversation id, which names the contact (bot.handoff.customer_turns).

The built-in actions change nothing themselves — Rasa calls them in the middle of the customer's turn
— they answer with control messages the turn applies (bot.rasa.messages). Slots they read and write
are the ones `omnihub rasa export` declares; a slot the domain does not declare is not set.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from bot.context.store import Snapshot
from bot.rasa.messages import Control, HandoffControl

ActionAnswer = dict[str, list[dict[str, Any]]]


class ActionRejected(Exception):
    """The action cannot run with this tracker (Rasa's `ActionExecutionRejection`): HTTP 400."""


class Tracker(BaseModel):
    model_config = ConfigDict(extra="ignore")
    sender_id: str | None = None
    slots: dict[str, Any] = Field(default_factory=dict)


class ActionCall(BaseModel):
    model_config = ConfigDict(extra="ignore")
    next_action: str = Field(min_length=1, max_length=200)
    sender_id: str = Field(min_length=1, max_length=200)
    tracker: Tracker = Field(default_factory=Tracker)
    domain: dict[str, Any] = Field(default_factory=dict)
    version: str | None = None

    def slot(self, name: str) -> str | None:
        value = self.tracker.slots.get(name)
        return None if value is None or value == "" else str(value)

    def declared(self) -> frozenset[str]:
        slots = self.domain.get("slots")
        return frozenset(slots) if isinstance(slots, dict) else frozenset()


def slot_set(name: str, value: Any) -> dict[str, Any]:
    return {"event": "slot", "timestamp": None, "name": name, "value": value}


def _reset(call: ActionCall, *names: str) -> list[dict[str, Any]]:
    """Empty the action's input slots, so the next call does not reuse them."""
    return [slot_set(name, None) for name in names if name in call.declared()]


def handoff(call: ActionCall) -> ActionAnswer:
    """`action_handoff`: queue the conversation for an agent, with `handoff_team`/`handoff_reason`."""
    try:
        control = Control(handoff=HandoffControl(team=call.slot("handoff_team"),
                                                 reason=call.slot("handoff_reason") or "requested"))
    except ValidationError as exc:
        raise ActionRejected(f"handoff_team or handoff_reason: {exc.errors()[0]['msg']}") from None
    return {"events": _reset(call, "handoff_team", "handoff_reason"), "responses": [control.message()]}


def set_contact_attribute(call: ActionCall) -> ActionAnswer:
    """`action_set_contact_attribute`: `attribute_name` = `attribute_value` on the contact's profile."""
    name, value = call.slot("attribute_name"), call.slot("attribute_value")
    if name is None or value is None:
        raise ActionRejected("the slots attribute_name and attribute_value must both be set")
    try:
        control = Control(set_attributes={name: value})
    except ValidationError as exc:
        raise ActionRejected(f"attribute {name!r}: {exc.errors()[0]['msg']}") from None
    return {"events": _reset(call, "attribute_name", "attribute_value"), "responses": [control.message()]}


def crm_lookup(call: ActionCall, contact: Snapshot) -> ActionAnswer:
    """`action_crm_lookup`: the contact's profile and CRM attributes into slots — `contact_name`,
    `contact_phone`, `contact_language`, `contact_attributes` (all of them), and each attribute into
    a slot of its own name where the domain declares one."""
    profile = contact.profile
    found: dict[str, Any] = {
        "contact_name": profile.get("name"), "contact_phone": profile.get("phone"),
        "contact_language": profile.get("lang_set") or profile.get("lang"),
        "contact_attributes": dict(contact.attributes), **contact.attributes,
    }
    declared = call.declared()
    return {"events": [slot_set(k, v) for k, v in found.items() if k in declared], "responses": []}


BUILT_IN: Mapping[str, Callable[[ActionCall], ActionAnswer]] = {
    "action_handoff": handoff,
    "action_set_contact_attribute": set_contact_attribute,
}
NEEDS_CONTACT: Mapping[str, Callable[[ActionCall, Snapshot], ActionAnswer]] = {"action_crm_lookup": crm_lookup}
