"""Contact-addressed commands: what the API, agents, campaigns and the CRM do *to* a contact.

A command travels like a customer message: appended to the contact's partition stream (idempotent by
its id) and applied by the partition's worker, in order with the customer's own messages. So there
is still exactly one writer per contact — an agent's reply and the customer's next message cannot
race, an assignment and a handoff cannot either, and nothing needs WATCH against the worker. `apply`
is a pure function of what was read; the worker does the I/O and hands the outcome back to whoever
waits for it (`bot.handoff.desk`).

Conversation fields the desk commands keep (on `omni:{cid}:v`): `mode`, `assignee`, `team`,
`handoff` (why it left the bot), `queued_at`, `assigned_at`, `csat` ("asked" after a resolve).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Annotated, Literal

from pydantic import Field, TypeAdapter

from bot.context import consent
from bot.context.history import HistoryEntry
from bot.context.standings import stop_waiting
from bot.context.store import Changes, Snapshot
from bot.models import Button, Channel, Frozen, OutboundMessage, Purpose, Reply
from bot.pipeline.turns import Say, TurnOutcome

Mode = Literal["bot", "queued", "assigned", "resolved"]


class SendText(Frozen):
    """Say something to the contact on the channel they last wrote from (or the one named)."""

    kind: Literal["send"] = "send"
    id: str
    text: str = Field(min_length=1, max_length=4096)
    buttons: tuple[Button, ...] = ()
    channel: Channel | None = None
    author: Literal["agent", "campaign", "system"] = "system"
    agent_id: str | None = None
    purpose: Purpose = "service"
    campaign_id: str | None = None


class SetMode(Frozen):
    """Move the conversation between the bot and the people (handoff to a team's queue, back to the bot)."""

    kind: Literal["mode"] = "mode"
    id: str
    mode: Mode
    reason: str | None = Field(default=None, max_length=500)
    team: str | None = Field(default=None, max_length=100)
    notice: str | None = None  # a dialog text to say to the customer with it


class Assign(Frozen):
    """Give a queued (or assigned) conversation to an agent; refused if another agent holds it."""

    kind: Literal["assign"] = "assign"
    id: str
    agent_id: str
    take_over: bool = False  # a supervisor reassigning a conversation someone holds


class Note(Frozen):
    """An agent's internal note: in the history, never sent."""

    kind: Literal["note"] = "note"
    id: str
    agent_id: str
    text: str = Field(min_length=1, max_length=4096)


class Resolve(Frozen):
    """The agent is done: the customer is asked for a rating, and the bot has them again after it."""

    kind: Literal["resolve"] = "resolve"
    id: str
    agent_id: str


class ConsentSet(Frozen):
    channel: Channel
    purpose: Purpose
    state: Literal["in", "out"]


class UpdateContact(Frozen):
    """What a CRM or the API writes onto a contact: profile fields (None removes one), tags, consent."""

    kind: Literal["update"] = "update"
    id: str
    fields: dict[str, str | None] = Field(default_factory=dict)  # name, lang_set, pref_set, a:<attribute>
    add_tags: tuple[str, ...] = ()
    remove_tags: tuple[str, ...] = ()
    consent: tuple[ConsentSet, ...] = ()
    source: Literal["api", "import"] = "api"
    create: bool = False  # an upsert: a contact the CRM knows and who never wrote yet


class RecordConversion(Frozen):
    """An order the CRM reports: onto the contact's totals (recency, frequency, monetary) and into the feed."""

    kind: Literal["conversion"] = "conversion"
    id: str
    name: str = Field(min_length=1, max_length=200)
    amount: float = Field(ge=0)
    currency: str = Field(pattern=r"^[A-Z]{3}$")
    campaign_id: str | None = Field(default=None, max_length=100)


class CampaignStep(Frozen):
    """Send a campaign's step to the contact, or (`check`) judge whether the step sent got there
    (bot.campaigns.steps; the worker applies it, it needs the campaign and the recent history)."""

    kind: Literal["campaign"] = "campaign"
    id: str
    campaign_id: str
    step: int = Field(ge=1, le=10)
    check: bool = False


class Tell(Frozen):
    """Say a dialog text to the customer (queue position, a timeout, opening hours)."""

    kind: Literal["tell"] = "tell"
    id: str
    text_key: str
    variables: dict[str, str] = Field(default_factory=dict)  # `{{ conversation.<name> }}` in the text


AnyCommand = SendText | SetMode | Assign | Note | Resolve | Tell | UpdateContact | RecordConversion | CampaignStep
Command = Annotated[AnyCommand, Field(discriminator="kind")]
COMMAND: TypeAdapter[AnyCommand] = TypeAdapter(Command)


class CommandRefused(Exception):
    """A command that cannot be applied to this contact as it is now (the reason says why)."""


@dataclass
class CommandOutcome(TurnOutcome):
    refusal: str | None = None  # why it was not applied (the desk answers 409 with it)
    events: list[str] = field(default_factory=list)  # what a console should refresh: "mode", "assigned", …


def apply(snapshot: Snapshot, command: Command, entry_id: str, say: Say, default_team: str) -> CommandOutcome:
    """The changes and the outbound messages of one command; `entry_id` is its stream entry;
    `default_team` takes a handoff that names no team."""
    outcome = CommandOutcome(Changes(conversation={"last": entry_id}))
    now = f"{time.time():.3f}"
    conversation, changes = snapshot.conversation, outcome.changes
    if isinstance(command, SendText | Tell):
        reply = Reply(text=command.text, buttons=command.buttons) if isinstance(command, SendText) \
            else say(command.text_key, _with(snapshot, command.variables))
        if reply is not None:
            _send(outcome, snapshot, command, reply, entry_id)
        return outcome
    if isinstance(command, UpdateContact):
        _update(snapshot, command, entry_id, changes)
        return outcome
    if isinstance(command, RecordConversion):
        _convert(snapshot, command, changes)
        return outcome
    if isinstance(command, Note):
        entry = HistoryEntry(id=command.id, channel=conversation.get("ch", "telegram"), direction="note",
                             at=time.time(), author="agent", text=command.text, agent_id=command.agent_id)
        changes.history.append(entry)
        outcome.events.append("note")
        return outcome
    if isinstance(command, SetMode):
        _move(outcome, snapshot, command.mode)
        if command.mode == "queued":
            changes.conversation.update(team=command.team or conversation.get("team") or default_team,
                                        queued_at=now, handoff=command.reason or "requested")
            changes.drop_conversation_fields.append("assignee")
        elif command.mode == "bot":
            changes.drop_conversation_fields.extend(["assignee", "queued_at"])
        if command.notice and (reply := say(command.notice, snapshot)) is not None:
            _send(outcome, snapshot, command, reply, entry_id)
        return outcome
    if isinstance(command, Assign):
        holder = conversation.get("assignee")
        if snapshot.mode not in ("queued", "assigned"):
            outcome.refusal = f"the conversation is not waiting for an agent (it is {snapshot.mode})"
        elif holder and holder != command.agent_id and not command.take_over:
            outcome.refusal = f"agent {holder} holds the conversation"
        else:
            _move(outcome, snapshot, "assigned")
            changes.conversation.update(assignee=command.agent_id, assigned_at=now)
            outcome.events.append("assigned")
        return outcome
    assert isinstance(command, Resolve), f"{command.kind} is applied by the worker"
    holder = conversation.get("assignee")
    if snapshot.mode != "assigned" or holder != command.agent_id:
        outcome.refusal = "only the agent the conversation is assigned to can resolve it"
        return outcome
    _move(outcome, snapshot, "resolved")
    changes.conversation.update(csat="asked", resolved_by=command.agent_id)
    changes.drop_conversation_fields.extend(["assignee", "queued_at"])
    if (question := say("csat_question", snapshot)) is not None:
        _send(outcome, snapshot, command, question, entry_id)
    return outcome


def _update(snapshot: Snapshot, command: UpdateContact, entry_id: str, changes: Changes) -> None:
    now = time.time()
    if not snapshot.profile:
        changes.profile["created"] = f"{now:.0f}"
    for name, value in command.fields.items():
        if value is None:
            changes.drop_profile_fields.append(name)
        else:
            changes.profile[name] = value
    changes.profile.update({f"t:{tag}": f"{now:.0f}" for tag in command.add_tags if f"t:{tag}" not in snapshot.profile})
    changes.drop_profile_fields.extend(f"t:{tag}" for tag in command.remove_tags if f"t:{tag}" in snapshot.profile)
    cause = consent.Cause(source=command.source, at=now, entry_id=entry_id)
    for row in command.consent:
        consent.record(changes, snapshot.profile, row.channel, [row.purpose], row.state, cause)


def _convert(snapshot: Snapshot, command: RecordConversion, changes: Changes) -> None:
    """The totals segments read (count, sum, last) and what the feed says; the campaign named, or the
    one whose message the contact got last (`last_campaign`, set when a campaign message goes out)."""
    profile = snapshot.profile
    changes.profile.update({
        "cv:n": str(int(profile.get("cv:n", "0")) + 1),
        "cv:sum": repr(round(float(profile.get("cv:sum", "0")) + command.amount, 2)),
        "cv:last": f"{time.time():.0f}",
    })
    stop_waiting(snapshot, changes, "converted")


def _with(snapshot: Snapshot, variables: dict[str, str]) -> Snapshot:
    """The snapshot as a text sees it, with a command's variables among the conversation's fields."""
    return Snapshot(snapshot.cid, snapshot.profile, {**snapshot.conversation, **variables})


def _move(outcome: CommandOutcome, snapshot: Snapshot, mode: Mode) -> None:
    if snapshot.mode != mode:
        outcome.changes.conversation["mode"] = mode
        outcome.changes.mode = (snapshot.mode if snapshot.conversation else "", mode)
        outcome.events.append("mode")


def _send(outcome: CommandOutcome, snapshot: Snapshot, command: Command, reply: Reply, entry_id: str) -> None:
    """Queue `reply` to the contact. A notice to someone who never wrote is skipped; an explicit send
    to nowhere is refused (the API checks that before it queues one)."""
    named = command.channel if isinstance(command, SendText) else None
    try:
        channel, user_id = address(snapshot, named)
    except CommandRefused:
        if isinstance(command, SendText):
            raise
        return
    author = command.author if isinstance(command, SendText) else "system"
    message = OutboundMessage(
        id=f"{command.id}" if isinstance(command, SendText) else f"{command.id}-say",
        contact_id=snapshot.cid, channel=channel, user_id=user_id, reply=reply, author=author,
        agent_id=command.agent_id if isinstance(command, SendText) else None,
        purpose=command.purpose if isinstance(command, SendText) else "service",
        campaign_id=command.campaign_id if isinstance(command, SendText) else None,
    )
    outcome.changes.history.append(HistoryEntry.outbound(message, time.time(), entry_id))
    outcome.outbound.append(message)
    outcome.events.append("message")


def address(snapshot: Snapshot, channel: Channel | None) -> tuple[Channel, str]:
    """Where a message to this contact goes: the named channel's identity, else where they wrote last."""
    if channel is None:
        last, user_id = snapshot.conversation.get("ch"), snapshot.conversation.get("uid")
        if last and user_id:
            return last, user_id  # type: ignore[return-value]
        raise CommandRefused("the contact has not written on any channel yet")
    for identity in snapshot.identities:
        if identity["channel"] == channel:
            return channel, identity["id"]
    if channel in ("sms", "whatsapp") and snapshot.profile.get("phone"):
        return channel, snapshot.profile["phone"]
    raise CommandRefused(f"the contact has no {channel} identity")
