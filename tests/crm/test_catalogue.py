"""docs/events.md is what the event models make, and the feed has every type DESIGN.md promises."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

from standardwebhooks import Webhook

from bot.crm import catalogue
from bot.crm.events import EVENT_TYPES, CloudEvent, MessageReceived
from bot.crm.subscriptions import Subscription, new_secret
from bot.crm.webhooks import sign

ROOT = Path(__file__).resolve().parents[2]
PROMISED = [  # DESIGN.md, "CRM feed" (omnihub.campaign.step_sent comes with campaigns)
    "omnihub.contact.created", "omnihub.contact.merged", "omnihub.consent.changed", "omnihub.message.received",
    "omnihub.message.sent", "omnihub.message.delivered", "omnihub.message.read", "omnihub.message.failed",
    "omnihub.conversation.handoff_requested", "omnihub.conversation.assigned", "omnihub.conversation.resolved",
    "omnihub.csat.submitted", "omnihub.conversion.recorded",
]


def test_docs_events_md_is_what_the_models_make() -> None:
    stale = catalogue.difference(ROOT / "docs" / "events.md")
    assert stale is None, f"{stale} — run `omnihub events catalogue`"


def test_every_promised_type_is_in_the_feed_and_the_catalogue() -> None:
    missing = [t for t in PROMISED if t not in EVENT_TYPES]
    assert missing == [], missing
    text = catalogue.render()
    headings = re.findall(r"^### (\S+)$", text, re.MULTILINE)
    assert headings == [*EVENT_TYPES, "omnihub.webhook.test"]  # each once, in the models' order


def test_each_section_carries_its_models_schema_and_when_it_happens() -> None:
    text = catalogue.render()
    for event_type, model in EVENT_TYPES.items():
        section = text.split(f"### {event_type}\n", 1)[1].split("\n### ", 1)[0]
        assert (model.__doc__ or "").split("\n")[0] in section, event_type
        schema = json.loads(section.split("```json\n", 1)[1].split("\n```", 1)[0])
        assert schema == model.model_json_schema(), event_type
        for name in model.model_fields:
            assert f"| `{name}` |" in section, (event_type, name)


def test_the_verification_example_verifies_what_the_feed_signs() -> None:
    """The intro's recipe (standardwebhooks' Webhook.verify) accepts a body signed as deliveries are."""
    assert "webhook.verify(body, headers)" in catalogue.render()
    sub = Subscription(id="wh_1", url="http://127.0.0.1/hook", secret=new_secret(), created_at=0)
    event = CloudEvent.of(MessageReceived(message_id="1-0", contact_id="c1", channel="sms", text="hi"), "c1", "1-0")
    body, now = event.body(), int(time.time())
    headers = {"webhook-id": event.id, "webhook-timestamp": str(now),
               "webhook-signature": sign(sub.keys(now), event.id, now, body)}
    assert Webhook(sub.secret).verify(body, headers)["data"]["text"] == "hi"

