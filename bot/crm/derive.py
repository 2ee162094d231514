"""The one place a turn's or a command's events are built: from what it read and what it changes.

Pure: the worker calls `events_of` with the snapshot the turn started from and the `Changes` it is
about to commit, and stages the result in the same MULTI (`bot.crm.outbox`). Deriving the events
from the changes, rather than having every rule emit its own, means a new rule that hands a
conversation over or records a consent cannot forget its event, and no event claims a change that
was not made. Each event's id is derived from the entry (`cause`), so a replay builds the same ones.

Profile fields a turn writes on every message (`seen:*`, the learned `pref` and `lang`) are not
"updates" a CRM wants; names, phones, identities, attributes, tags, an explicit language or
preferred channel are.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson

from bot.context.history import HistoryEntry
from bot.context.store import Changes, Snapshot
from bot.crm import events as ev
from bot.crm.events import CloudEvent, ContactData, EventData, Identity
from bot.models import CHANNELS, Channel, DeliveryStatus, InboundEvent, OutboundMessage
from bot.pipeline.commands import AnyCommand, RecordConversion

_UPDATE_PREFIXES = ("i:", "a:", "t:")
_UPDATE_FIELDS = frozenset({"name", "phone", "lang_set", "pref_set"})


def contact_data(cid: str, profile: Mapping[str, str]) -> ContactData:
    identities: list[Identity] = []
    attributes: dict[str, str] = {}
    tags: list[str] = []
    consent: dict[str, dict[str, Any]] = {}
    for name, value in profile.items():
        kind, _, rest = name.partition(":")
        if kind == "i":
            channel, _, user_id = rest.partition(":")
            identities.append(Identity.model_validate({"channel": channel, "id": user_id}))
        elif kind == "a":
            attributes[rest] = value
        elif kind == "t":
            tags.append(rest)
        elif kind == "cs":
            channel, _, purpose = rest.partition(":")
            consent.setdefault(channel, {})[purpose] = value
    preferred = profile.get("pref_set") or profile.get("pref")
    return ContactData(
        id=cid, name=profile.get("name"), phone=profile.get("phone"),
        language=profile.get("lang_set") or profile.get("lang"),
        preferred_channel=next((c for c in CHANNELS if c == preferred), None),
        identities=identities, attributes=attributes, tags=sorted(tags), consent=consent,
    )


def events_of(snapshot: Snapshot, changes: Changes, cause: str, command: AnyCommand | None = None
              ) -> list[CloudEvent]:
    """The events of committing `changes` over `snapshot` (for the inbound entry or `command` `cause`)."""
    cid = snapshot.cid
    agent_id = getattr(command, "agent_id", None)
    found: list[EventData] = []
    profile = {k: v for k, v in {**snapshot.profile, **changes.profile}.items() if k not in changes.drop_profile_fields}
    if not snapshot.profile and changes.profile:
        found.append(ev.ContactCreated(contact=contact_data(cid, profile)))
    elif changed := sorted(_updated(snapshot.profile, changes)):
        found.append(ev.ContactUpdated(contact=contact_data(cid, profile), changed=changed))
    found += [ev.ConsentChanged(contact_id=cid, channel=row["channel"], purpose=row["purpose"], state=row["state"],
                                source=row["source"]) for row in changes.consent]
    conversation = {**snapshot.conversation, **changes.conversation}
    conv_id = conversation.get("id", "")
    channel: Channel | None = conversation.get("ch")  # type: ignore[assignment]
    if "id" in changes.conversation and changes.conversation["id"] != snapshot.conversation.get("id"):
        found.append(ev.ConversationStarted(conversation_id=conv_id, contact_id=cid,
                                            channel=channel or "telegram"))
    found += [ev.MessageReceived(message_id=e.id, conversation_id=conv_id or None, contact_id=cid,
                                 channel=e.channel, text=e.text, payload=e.payload)
              for e in changes.history if e.direction == "in"]
    found += _moves(snapshot, changes, conv_id, channel, agent_id)
    if (score := changes.conversation.get("csat", "")).isdigit():
        found.append(ev.CsatSubmitted(conversation_id=conv_id, contact_id=cid, score=int(score),
                                      agent_id=snapshot.conversation.get("resolved_by")))
    found += _campaign_moves(snapshot, changes)
    if isinstance(command, RecordConversion):
        campaign_id = command.campaign_id or snapshot.profile.get("last_campaign")
        standing = orjson.loads(snapshot.campaigns.get(campaign_id or "", "{}"))
        found.append(ev.ConversionRecorded(
            conversion_id=command.id, contact_id=cid, name=command.name, amount=command.amount,
            currency=command.currency, campaign_id=campaign_id, conversation_id=conv_id or None,
            campaign_step=standing.get("step"), campaign_channel=standing.get("channel")))
    return [CloudEvent.of(data, cid, f"{cause}/{n}") for n, data in enumerate(found)]


def _campaign_moves(snapshot: Snapshot, changes: Changes) -> list[EventData]:
    """From how the contact's standing in each campaign changed (bot.campaigns.steps.Standing)."""
    found: list[EventData] = []
    replied = any(e.direction == "in" for e in changes.history)
    for campaign_id, raw in snapshot.campaigns.items():
        before = orjson.loads(raw)
        if replied and before.get("state") == "waiting":
            found.append(ev.CampaignReplied(campaign_id=campaign_id, contact_id=snapshot.cid, step=before["step"],
                                            channel=before.get("channel")))
    for campaign_id, raw in changes.campaigns.items():
        now, before = orjson.loads(raw), orjson.loads(snapshot.campaigns.get(campaign_id, "{}"))
        if (now.get("step"), now.get("state")) == (before.get("step"), before.get("state")):
            continue
        common = {"campaign_id": campaign_id, "contact_id": snapshot.cid, "step": now["step"],
                  "channel": now.get("channel")}
        state = now["state"]
        if state == "waiting":
            found.append(ev.CampaignStepSent(**common, message_id=now["message_id"], variant=now.get("variant")))
        elif state in ("skipped", "passed"):
            found.append(ev.CampaignStepSkipped(**common, reason=now.get("why") or "skipped"))
        elif state == "reached":
            found.append(ev.CampaignStepReached(**common))
        elif state == "stopped":
            found.append(ev.CampaignStopped(**common, reason=now.get("why") or "stopped"))
        elif state == "done":
            found.append(ev.CampaignExhausted(**common))
    return found


def _updated(before: Mapping[str, str], changes: Changes) -> set[str]:
    named = {"lang_set": "language", "pref_set": "preferred_channel"}
    gone = {name for name in changes.drop_profile_fields if name in before}
    changed = {named.get(name, name.partition(":")[0] if name[:2] in _UPDATE_PREFIXES else name)
               for name, value in changes.profile.items()
               if (name in _UPDATE_FIELDS or name.startswith(_UPDATE_PREFIXES)) and before.get(name) != value}
    changed |= {named.get(name, name.partition(":")[0] if name[:2] in _UPDATE_PREFIXES else name) for name in gone}
    return {{"i": "identities", "a": "attributes", "t": "tags"}.get(name, name) for name in changed}


def _moves(snapshot: Snapshot, changes: Changes, conv_id: str, channel: Channel | None,
           agent_id: str | None) -> list[EventData]:
    """Handoff, assignment, transfer, back to the bot, resolve: from the mode and the assignee."""
    cid, before = snapshot.cid, snapshot.conversation
    old, new = changes.mode or (snapshot.mode, snapshot.mode)
    holder, assignee = before.get("assignee"), changes.conversation.get("assignee")
    team = changes.conversation.get("team") or before.get("team")
    reason = changes.conversation.get("handoff")
    if new == "queued" and old == "assigned":
        return [ev.ConversationTransferred(conversation_id=conv_id, contact_id=cid, from_agent_id=holder, team=team)]
    if new == "queued" and old != "queued":
        return [ev.HandoffRequested(conversation_id=conv_id, contact_id=cid, channel=channel, team=team,
                                    reason=reason)]
    if assignee and assignee != holder:
        assigned = ev.ConversationAssigned(conversation_id=conv_id, contact_id=cid, agent_id=assignee,
                                           previous_agent_id=holder, team=team)
        if holder:
            return [ev.ConversationTransferred(conversation_id=conv_id, contact_id=cid, from_agent_id=holder,
                                               to_agent_id=assignee, team=team), assigned]
        return [assigned]
    if new == "bot" and old in ("queued", "assigned"):
        return [ev.ConversationReturnedToBot(conversation_id=conv_id, contact_id=cid, reason=reason)]
    if new == "resolved" and old != "resolved":
        return [ev.ConversationResolved(conversation_id=conv_id, contact_id=cid,
                                        agent_id=agent_id or holder or "", channel=channel)]
    return []


def status_event(cid: str, event: InboundEvent, cause: str, entry: HistoryEntry) -> CloudEvent | None:
    """A provider's receipt of our message `entry` as an event: delivered, read, or failed (sent and
    queued say nothing new)."""
    known = {"contact_id": cid, "channel": event.channel, "provider_id": str(event.status_of),
             "message_id": entry.id, "campaign_id": entry.campaign_id}
    data: EventData
    if event.status is DeliveryStatus.delivered:
        data = ev.MessageDelivered(**known)
    elif event.status is DeliveryStatus.read:
        data = ev.MessageRead(**known)
    elif event.status in (DeliveryStatus.failed, DeliveryStatus.undelivered):
        data = ev.MessageFailed(**known, status=str(event.status), error=event.error)
    else:
        return None
    return CloudEvent.of(data, cid, cause)


def outcome_event(message: OutboundMessage, outcome: Mapping[str, Any]) -> CloudEvent:
    """What the sender recorded for a message (`bot.pipeline.sender`): sent, or failed / blocked."""
    status = str(outcome.get("st", "failed"))
    data: EventData
    if status == "sent":
        data = ev.MessageSent(message_id=message.id, contact_id=message.contact_id, channel=message.channel,
                              author=message.author, text=message.reply.text, agent_id=message.agent_id,
                              campaign_id=message.campaign_id, provider_id=outcome.get("pid") or None,
                              sms_segments=outcome.get("seg"), cost=outcome.get("cost"))
    else:
        data = ev.MessageFailed(message_id=message.id, contact_id=message.contact_id, channel=message.channel,
                                status=status, error=outcome.get("err"), campaign_id=message.campaign_id)
    return CloudEvent.of(data, message.contact_id, message.id)
