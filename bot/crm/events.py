"""The domain events the CRM feed carries: one typed model per event type, sent as CloudEvents 1.0.

Each model is the `data` of its event; `type` names it (`omnihub.<noun>.<verb>`). `CloudEvent.of`
wraps one into the envelope with an id derived from what caused it (`cause`: the inbound entry, the
command, the outbound message, the merge journal) — a replayed cause builds the same id, and the
delivery side can say "this one again" by id alone. Where an event is written so that it exists if
and only if its effect was committed is `bot.crm.outbox`; the catalogue with a JSON Schema per type
is `docs/events.md`, generated from these models (`omnihub events catalogue`).

The models say what happened in the words a CRM uses; they never carry the agents' notes, and a
contact's personal fields only where the CRM needs them to find or create the contact.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any, ClassVar, Literal

import orjson
from pydantic import BaseModel, Field, PrivateAttr

from bot.models import Channel, Frozen, Purpose

SOURCE = "/omnihub"
ID_NAMESPACE = uuid.UUID("6f6d6e69-6875-6265-7665-6e7473000001")  # "omnihubevents", fixed forever


class EventData(Frozen):
    """The `data` of one event type; subclasses set `type` and say in their docstring when it happens."""

    type: ClassVar[str]


class Identity(Frozen):
    channel: Channel
    id: str


class ContactData(Frozen):
    """A contact as the CRM sees it: what it needs to find the person (phone, identities) and segment them."""

    id: str
    name: str | None = None
    phone: str | None = Field(None, description="E.164")
    language: str | None = None
    preferred_channel: Channel | None = None
    identities: list[Identity] = Field(default_factory=list)
    attributes: dict[str, str] = Field(default_factory=dict)
    tags: list[str] = Field(default_factory=list)
    consent: dict[str, dict[str, Literal["in", "out"]]] = Field(
        default_factory=dict, description='channel -> purpose -> "in" | "out" (absent: never said)')


class ContactCreated(EventData):
    """A customer wrote for the first time (or the CRM created the contact)."""

    type = "omnihub.contact.created"
    contact: ContactData


class ContactUpdated(EventData):
    """Profile fields, attributes, tags or identities changed; `changed` names them."""

    type = "omnihub.contact.updated"
    contact: ContactData
    changed: list[str]


class ContactMerged(EventData):
    """Two contacts were found to be one person: `absorbed` lives on as `survivor`."""

    type = "omnihub.contact.merged"
    survivor: str
    absorbed: str
    reason: str | None = None


class ContactUnmerged(EventData):
    """A merge was undone: `absorbed` is a contact of its own again."""

    type = "omnihub.contact.unmerged"
    survivor: str
    absorbed: str


class ContactErased(EventData):
    """The contact was erased for privacy: the CRM should forget them too."""

    type = "omnihub.contact.erased"
    contact_id: str
    absorbed: list[str] = Field(default_factory=list, description="contacts merged into it, erased with it")


class ConsentChanged(EventData):
    """A consent state changed (a keyword, a Viber (un)subscription, the API, an import)."""

    type = "omnihub.consent.changed"
    contact_id: str
    channel: Channel
    purpose: Purpose
    state: Literal["in", "out"]
    source: str


class ConversationStarted(EventData):
    """A customer's first message, or their first after a resolved conversation."""

    type = "omnihub.conversation.started"
    conversation_id: str
    contact_id: str
    channel: Channel


class HandoffRequested(EventData):
    """The conversation left the bot for a team's queue (asked for, by a rule, by an agent or the API)."""

    type = "omnihub.conversation.handoff_requested"
    conversation_id: str
    contact_id: str
    channel: Channel | None = None
    team: str | None = None
    reason: str | None = None


class ConversationAssigned(EventData):
    """An agent has the conversation (the router gave it out, the agent claimed it, a supervisor moved it)."""

    type = "omnihub.conversation.assigned"
    conversation_id: str
    contact_id: str
    agent_id: str
    previous_agent_id: str | None = None
    team: str | None = None


class ConversationTransferred(EventData):
    """An agent gave the conversation to another agent or back to a team's queue."""

    type = "omnihub.conversation.transferred"
    conversation_id: str
    contact_id: str
    from_agent_id: str | None = None
    to_agent_id: str | None = None
    team: str | None = None


class ConversationReturnedToBot(EventData):
    """The people gave the conversation back to the bot (the customer asked to leave the queue, an agent)."""

    type = "omnihub.conversation.returned_to_bot"
    conversation_id: str
    contact_id: str
    reason: str | None = None


class ConversationResolved(EventData):
    """The agent closed the conversation; the customer was asked for a rating."""

    type = "omnihub.conversation.resolved"
    conversation_id: str
    contact_id: str
    agent_id: str
    channel: Channel | None = None


class SlaBreached(EventData):
    """A team's first-response or reply deadline passed."""

    type = "omnihub.conversation.sla_breached"
    conversation_id: str
    contact_id: str
    clock: str = Field(description='"first" (first response) or "reply"')
    team: str | None = None
    agent_id: str | None = None
    due_at: float = Field(description="the deadline, epoch seconds")


class QueueTimedOut(EventData):
    """A conversation waited in the queue longer than its team allows."""

    type = "omnihub.conversation.queue_timeout"
    conversation_id: str
    contact_id: str
    team: str | None = None
    queued_at: float | None = None
    action: str = Field(description='what the team does then: "escalate" or "bot"')
    to_team: str | None = None


class CsatSubmitted(EventData):
    """The customer rated a resolved conversation, 1 to 5."""

    type = "omnihub.csat.submitted"
    conversation_id: str
    contact_id: str
    score: int = Field(ge=1, le=5)
    agent_id: str | None = None


class MessageReceived(EventData):
    """A customer's message reached the hub (`message_id` is its history entry id)."""

    type = "omnihub.message.received"
    message_id: str
    conversation_id: str | None = None
    contact_id: str
    channel: Channel
    text: str | None = None
    payload: str | None = None


class MessageSent(EventData):
    """The provider accepted an outbound message."""

    type = "omnihub.message.sent"
    message_id: str
    contact_id: str
    channel: Channel
    author: str
    text: str | None = None
    agent_id: str | None = None
    campaign_id: str | None = None
    provider_id: str | None = None
    sms_segments: int | None = None
    cost: float | None = None


class MessageStatus(EventData):
    """Base of the provider's receipts: which message (by the provider's id) and on which channel."""

    type: ClassVar[str]
    contact_id: str
    channel: Channel
    provider_id: str
    message_id: str | None = None
    campaign_id: str | None = None


class MessageDelivered(MessageStatus):
    """The provider reports the message delivered to the customer's device."""

    type = "omnihub.message.delivered"


class MessageRead(MessageStatus):
    """The customer read the message (Viber `seen`, WhatsApp `read`)."""

    type = "omnihub.message.read"


class MessageFailed(EventData):
    """An outbound message did not go out or was not delivered (`status`: failed, undelivered, blocked)."""

    type = "omnihub.message.failed"
    message_id: str | None = None
    contact_id: str
    channel: Channel
    status: str
    error: str | None = None
    provider_id: str | None = None
    campaign_id: str | None = None


class ConversionRecorded(EventData):
    """The CRM recorded an order, attributed to the conversation or campaign that led to it."""

    type = "omnihub.conversion.recorded"
    conversion_id: str
    contact_id: str
    name: str
    amount: float
    currency: str
    campaign_id: str | None = None
    conversation_id: str | None = None
    campaign_step: int | None = Field(None, description="the campaign's step the contact was at")
    campaign_channel: Channel | None = None


class CampaignEvent(EventData):
    """Base of a campaign's events about one recipient."""

    type: ClassVar[str]
    campaign_id: str
    contact_id: str
    step: int
    channel: Channel | None = None


class CampaignStepSent(CampaignEvent):
    """A campaign's step went to the sender for this contact (`message_id` is its message)."""

    type = "omnihub.campaign.step_sent"
    message_id: str
    variant: str | None = None


class CampaignStepSkipped(CampaignEvent):
    """A step was not sent to this contact: no consent, no identity, the pressure budget, the end."""

    type = "omnihub.campaign.step_skipped"
    reason: str


class CampaignStepReached(CampaignEvent):
    """The step's message got where the step wanted it (delivered, read, a reply) in time."""

    type = "omnihub.campaign.step_reached"


class CampaignReplied(CampaignEvent):
    """The contact wrote while the campaign's step waited on them."""

    type = "omnihub.campaign.replied"


class CampaignStopped(CampaignEvent):
    """The campaign stopped for this contact (`reason`: replied, converted, opted_out, opted out)."""

    type = "omnihub.campaign.stopped"
    reason: str


class CampaignExhausted(CampaignEvent):
    """The last step did not reach the contact in time: the campaign is over for them."""

    type = "omnihub.campaign.exhausted"


class SubscriptionDisabled(EventData):
    """A webhook subscription was disabled (its receiver answered 410, or failed for days)."""

    type = "omnihub.webhook.disabled"
    subscription_id: str
    reason: str


EVENT_TYPES: dict[str, type[EventData]] = {
    model.type: model for model in (
        ContactCreated, ContactUpdated, ContactMerged, ContactUnmerged, ContactErased, ConsentChanged,
        ConversationStarted, HandoffRequested, ConversationAssigned, ConversationTransferred,
        ConversationReturnedToBot, ConversationResolved, SlaBreached, QueueTimedOut, CsatSubmitted,
        MessageReceived, MessageSent, MessageDelivered, MessageRead, MessageFailed, ConversionRecorded,
        CampaignStepSent, CampaignStepSkipped, CampaignStepReached, CampaignReplied, CampaignStopped,
        CampaignExhausted, SubscriptionDisabled,
    )
}


def event_id(event_type: str, subject: str, cause: str) -> str:
    """The id of the event of `event_type` about `subject` that `cause` made happen: the same cause,
    the same id. The subject is part of it because a cause (a stream entry id) is unique only within
    its partition, and a message id only within its contact."""
    return str(uuid.uuid5(ID_NAMESPACE, f"{event_type}/{subject}/{cause}"))


class CloudEvent(BaseModel):
    """The envelope (CloudEvents 1.0, structured JSON mode); `subject` is the contact id."""

    specversion: Literal["1.0"] = "1.0"
    id: str
    source: str = SOURCE
    type: str
    time: str
    subject: str
    datacontenttype: Literal["application/json"] = "application/json"
    data: dict[str, Any]

    @classmethod
    def of(cls, data: EventData, subject: str, cause: str, at: float | None = None) -> CloudEvent:
        """`cause`: what made it happen, unique per event of a type and subject (an entry id, a message id...)."""
        moment = datetime.fromtimestamp(at, UTC) if at is not None else datetime.now(UTC)
        return cls(id=event_id(data.type, subject, cause), type=data.type,
                   time=moment.isoformat(timespec="milliseconds").replace("+00:00", "Z"), subject=subject,
                   data=data.model_dump(mode="json", exclude_none=True))

    _raw: bytes | None = PrivateAttr(None)

    def body(self) -> bytes:
        """The JSON as it is in the feed (read back unchanged: every sink's delivery sends the same bytes,
        without dumping the model again), or freshly dumped."""
        return self._raw if self._raw is not None else orjson.dumps(self.model_dump())

    @classmethod
    def read(cls, raw: str | bytes) -> CloudEvent:
        event = cls.model_validate_json(raw)
        event._raw = raw.encode() if isinstance(raw, str) else raw
        return event
