"""One recipient's next move in a campaign: send step n, or judge whether step n got there — pure.

The scheduler (bot.campaigns.scheduler) turns a due entry into a `CampaignStep` command on the
contact's partition, so the partition's worker applies it between the contact's own messages, with
the one-writer rule and the feed's events like any command. Where the contact stands in each
campaign is a field of `omni:{cid}:cmp` (`Standing`), written in the same MULTI as the history
entry and the message: a step is sent once, and a replayed command finds it sent.

- **send n**: passed, with the reason, when the step's channel has no identity of the contact or no
  consent for the purpose — the cascade goes on with step n+1 at once (an opt-out stops the contact);
  skipped, ending the campaign for the contact, when the campaign ended, the last step cannot go, or
  the contact's pressure budget (marketing messages per day / week, across campaigns) is spent;
  deferred to the end of the quiet hours in the contact's time zone; else the message goes to the
  sender's bulk lane and a check is due `within` seconds later.
- **conversational**: a step's buttons are the dialog's: a button whose payload is `flow:<name>` (or
  an intent) enters that flow when pressed — or, on a channel without buttons, when its number is
  written back, as for the bot's own options.
- **check n**: the message reached `until` (its history entry's status, or a reply after it), or the
  contact replied: done. Otherwise step n+1 is sent now, or the campaign is over for the contact.

A reply, a conversion or an opt-out while a step is waiting stops the contact at once when the
campaign says so (`bot.context.standings.stop_waiting`).
"""

from __future__ import annotations

import contextlib
import functools
import time
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Literal
from zoneinfo import ZoneInfo

import orjson
from jinja2 import Template, TemplateError

from bot.campaigns.model import Campaign, QuietHours, Step
from bot.context import consent
from bot.context.history import HistoryEntry
from bot.context.standings import ACTIVE, Standing
from bot.context.store import STATUS_RANK, Changes, Snapshot
from bot.dialogue.templates import ENV
from bot.models import CHANNELS, Channel, OutboundMessage, Purpose, Reply
from bot.pipeline.commands import CommandRefused, address
from bot.pipeline.reach import best_channel

PRESSURE = "mk"  # profile field: epochs of the marketing messages of the last week, JSON
WEEK = 7 * 86_400
_REACHED = {"sent": 1, "delivered": 2, "read": 3}


@dataclass(frozen=True)
class Reach:
    """What the hub can do for a send: its channels, the fallback order, the WhatsApp template."""

    enabled: Collection[str]
    order: Sequence[Channel]
    whatsapp_template: bool
    default_language: str
    per_day: int
    per_week: int
    numbered: Collection[str] = ()  # channels that show buttons as numbered options (no native buttons)


@dataclass
class StepOutcome:
    changes: Changes
    outbound: list[OutboundMessage] = field(default_factory=list)
    due: list[tuple[str, float]] = field(default_factory=list)  # (scheduler member, epoch)


def due_member(campaign_id: str, cid: str, step: int, kind: Literal["send", "check"]) -> str:
    return f"{campaign_id}|{cid}|{step}|{kind}"


def apply_step(snapshot: Snapshot, campaign: Campaign, step: int, check: bool, entry_id: str,
               history: Sequence[HistoryEntry], reach: Reach, now: float | None = None) -> StepOutcome:
    now = time.time() if now is None else now
    outcome = StepOutcome(Changes(conversation={"last": entry_id}))
    standing = Standing.of(snapshot, campaign.id)
    if campaign.status == "cancelled" or (standing and standing.state not in ACTIVE):
        return outcome
    if campaign.status == "paused":  # ask again in a while; resume sends what waited
        outcome.due.append((due_member(campaign.id, snapshot.cid, step, "check" if check else "send"), now + 5))
        return outcome
    if check:
        if standing is None or standing.step != step:
            return outcome  # an old check, or one for a step never sent
        if standing.state == "waiting" and _reached(campaign.definition.steps[step - 1], standing, history):
            _stand(outcome, campaign, Standing(**{**standing.model_dump(), "state": "reached"}))
            return outcome
        if step == len(campaign.definition.steps):
            _stand(outcome, campaign, Standing(**{**standing.model_dump(), "state": "done", "why": "no step left"}))
            return outcome
        step += 1
    elif standing is not None and standing.step >= step:
        return outcome  # sent already: a replayed or repeated command
    _send(outcome, snapshot, campaign, step, reach, now, standing)
    return outcome


def _reached(step: Step, standing: Standing, history: Sequence[HistoryEntry]) -> bool:
    sent_at = standing.sent_at or 0.0
    if any(e.direction == "in" and e.at > sent_at for e in history):
        return True  # a reply is more than any receipt
    if step.until == "replied":
        return False
    entry = next((e for e in history if e.id == standing.message_id), None)
    rank = STATUS_RANK.get(entry.status or "", 0) if entry else 0
    if entry is None or rank >= STATUS_RANK["failed"]:
        return False
    wanted = _REACHED[step.until]
    if step.until == "read" and standing.channel == "sms":
        wanted = _REACHED["delivered"]  # SMS has no read receipts: judged on delivery
    return rank >= wanted


def _send(outcome: StepOutcome, snapshot: Snapshot, campaign: Campaign, n: int, reach: Reach, now: float,
          before: Standing | None) -> None:
    definition, cid = campaign.definition, snapshot.cid
    used = (before.used or []) if before else []
    variant = before.variant if before else definition.variant_of(campaign.id, cid)
    step, purpose = definition.steps[n - 1], definition.purpose
    skip = Standing(step=n, state="skipped", variant=variant)
    if definition.end_by and now > definition.end_by.timestamp():
        _stand(outcome, campaign, skip.model_copy(update={"why": "the campaign ended"}))
        return
    channel = _channel(snapshot, step, purpose, reach, used)
    if channel is None:
        named = _named(step)
        refused = named is not None and consent.refusal(snapshot.profile, named, purpose)
        opted_out = bool(refused) and "withdrawn" in str(refused)
        why = "opted out" if opted_out else ("no consent" if refused else "no channel reaches the contact")
        state = "stopped" if opted_out else ("passed" if n < len(definition.steps) else "skipped")
        _stand(outcome, campaign, skip.model_copy(update={"state": state, "why": why, "channel": _named(step)}))
        if state == "passed":  # this channel cannot reach them: the cascade's next step, now
            outcome.due.append((due_member(campaign.id, cid, n, "check"), now))
        return
    if purpose == "marketing":
        if (later := _quiet_until(definition.quiet_hours, snapshot, now)) is not None:
            outcome.due.append((due_member(campaign.id, cid, n, "send"), later))
            return
        sent = [t for t in orjson.loads(snapshot.profile.get(PRESSURE, "[]")) if t > now - WEEK]
        if len([t for t in sent if t > now - 86_400]) >= reach.per_day or len(sent) >= reach.per_week:
            _stand(outcome, campaign, skip.model_copy(update={"why": "pressure budget spent", "channel": channel}))
            return
        outcome.changes.profile[PRESSURE] = orjson.dumps([*sent, round(now)]).decode()
    _, user_id = address(snapshot, channel)
    language = snapshot.profile.get("lang_set") or snapshot.profile.get("lang")
    try:
        text = _template(step.text_for(language, reach.default_language, variant)).render(contact=_contact(snapshot))
    except TemplateError as exc:
        _stand(outcome, campaign, skip.model_copy(update={"why": f"template error: {exc}", "channel": channel}))
        return
    message = OutboundMessage(id=f"cmp-{campaign.id}-{n}", contact_id=cid, channel=channel, user_id=user_id,
                              reply=Reply(text=text, buttons=tuple(step.buttons)), purpose=purpose,
                              campaign_id=campaign.id, author="campaign")
    outcome.outbound.append(message)
    outcome.changes.history.append(HistoryEntry.outbound(message, now))
    if step.buttons and channel in reach.numbered:  # "2" on SMS is its second button (as for the bot's own)
        outcome.changes.conversation["opt"] = orjson.dumps([b.model_dump() for b in step.buttons]).decode()
    outcome.changes.profile["last_campaign"] = campaign.id
    _stand(outcome, campaign, Standing(step=n, state="waiting", message_id=message.id, channel=channel, sent_at=now,
                                       used=[*used, channel], variant=variant))
    outcome.due.append((due_member(campaign.id, cid, n, "check"), now + step.within))


@functools.lru_cache(maxsize=256)
def _template(text: str) -> Template:
    """A step's text compiled once per process, not per recipient (compiling is 60× rendering)."""
    return ENV.from_string(text)


def _channel(snapshot: Snapshot, step: Step, purpose: Purpose, reach: Reach, used: list[str]) -> Channel | None:
    named = _named(step)
    if named is None:  # preferred, or the next messenger not used yet
        skip = [*used, "sms"] if step.channel == "next" else []
        return best_channel(snapshot, purpose, reach.order, reach.enabled, reach.whatsapp_template, skip)
    if named not in reach.enabled or not consent.allowed(snapshot.profile, named, purpose):
        return None
    try:
        address(snapshot, named)
    except CommandRefused:
        return None
    return named


def _named(step: Step) -> Channel | None:
    """The step's channel when it names one (not `preferred` or `next`)."""
    return next((c for c in CHANNELS if c == step.channel), None)


def _quiet_until(quiet: QuietHours | None, snapshot: Snapshot, now: float) -> float | None:
    """When the quiet hours the contact is in end, or None if they are not in them."""
    if quiet is None:
        return None
    zone = ZoneInfo(quiet.timezone)
    if wanted := snapshot.profile.get("a:timezone"):
        with contextlib.suppress(KeyError, ValueError):  # an unknown zone: the campaign's
            zone = ZoneInfo(wanted)
    local = datetime.fromtimestamp(now, zone)
    start, end = (datetime.strptime(t, "%H:%M").time() for t in (quiet.start, quiet.end))
    clock = local.time()
    inside = (start <= clock or clock < end) if start > end else (start <= clock < end)
    if not inside:
        return None
    ends = local.replace(hour=end.hour, minute=end.minute, second=0, microsecond=0)
    if ends <= local:
        ends += timedelta(days=1)
    return ends.timestamp()


def _contact(snapshot: Snapshot) -> dict[str, object]:
    profile = snapshot.profile
    return {"id": snapshot.cid, "name": profile.get("name"), "phone": profile.get("phone"),
            "attributes": snapshot.attributes, "tags": snapshot.tags}


def _stand(outcome: StepOutcome, campaign: Campaign, standing: Standing) -> None:
    standing = standing.model_copy(update={"stop_on": list(campaign.definition.stop_on)})
    outcome.changes.campaigns[campaign.id] = standing.stored()
