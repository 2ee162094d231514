"""One customer event in, the context changes and the replies out — no I/O of its own.

The worker loads a `Snapshot`, calls `TurnHandler.handle`, and saves what comes back in one MULTI.
Keeping this free of Redis makes the rules of a turn readable in one place: learn about the contact,
remember where they wrote from, pick the language to answer in (bot.dialogue.language), answer with the
dialogue backend while the bot has the conversation. The backend's state is stored as it comes, unread.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import orjson

from bot.context.history import HistoryEntry
from bot.context.standings import stop_waiting
from bot.context.store import Changes, Snapshot
from bot.dialogue.backend import DialogueBackend, DialogueRequest
from bot.dialogue.language import reply_language
from bot.handoff.customer_turns import conversation_id, rating, wants_the_bot
from bot.models import Button, Capabilities, Channel, EventKind, InboundEvent, OutboundMessage, Reply
from bot.pipeline.keywords import ConsentKeywords
from bot.rendering import match_option
from bot.settings import HandoffRule

SUPPORTED_LANGUAGES = ("en", "ru")
# `seen:<channel>` is written again only when a minute older: a busy conversation then changes no
# profile field, and so no segment index, on most messages (the WhatsApp window closes at most a
# minute early, never late).
SEEN_PRECISION_SECONDS = 60
Say = Callable[[str, Snapshot], Reply | None]  # a dialog text by name, in the contact's language


@dataclass
class TurnOutcome:
    changes: Changes
    outbound: list[OutboundMessage] = field(default_factory=list)


class TurnHandler:
    def __init__(
        self, backend: DialogueBackend, capabilities: dict[Channel, Capabilities], default_language: str,
        keywords: ConsentKeywords | None = None, say: Say | None = None, rules: Sequence[HandoffRule] = (),
        default_team: str = "support",
    ) -> None:
        """`say`: dialog texts by name (leaving the queue, thanking for a rating); None says nothing.
        `rules`: customers who always go to a person (a tag or an attribute, bot.settings.HandoffRule).
        `default_team`: whose queue a handoff goes to when neither the dialog nor a rule names a team."""
        self.default_team = default_team
        self.rules = tuple(rules)
        self.backend = backend
        self.capabilities = capabilities
        self.default_language = default_language
        self.keywords = keywords or ConsentKeywords(default_language=default_language)
        self.say: Say = say or (lambda name, snapshot: None)

    async def handle(
        self, snapshot: Snapshot, event: InboundEvent, entry_id: str, notice: list[Reply] | None = None
    ) -> TurnOutcome:
        """`notice`: the event was answered already (a link code, a shared phone: bot.context.linking)."""
        now = time.time()
        changes = Changes(conversation={"last": entry_id, "at": f"{now:.3f}"})
        self._learn_contact(snapshot, event, changes, now)
        consent = self.keywords.apply(snapshot.profile, event, entry_id, changes, now)
        if event.kind is not EventKind.message:
            return TurnOutcome(changes)
        if snapshot.campaigns:  # a reply, or a STOP, while a campaign waits on the contact
            opted_out = any(row["state"] == "out" for row in changes.consent)
            stop_waiting(snapshot, changes, "opted_out" if opted_out else "replied")
        changes.conversation.update(ch=event.channel, uid=event.user_id)
        changes.history.append(HistoryEntry.inbound(event, entry_id, now))
        if not snapshot.conversation:
            changes.conversation.update(id=conversation_id(snapshot.cid, entry_id), mode="bot")
            changes.mode = ("", "bot")
        if consent is not None:  # answered here whoever has the conversation (see pipeline.keywords)
            replies = [consent.reply] if consent.reply else []
            outbound = self._outbound(snapshot, event, entry_id, replies, changes, now, keyword_reply=True)
            return TurnOutcome(changes, outbound)
        if notice is not None:  # not something the dialog should see, whoever has the conversation
            return TurnOutcome(changes, self._outbound(snapshot, event, entry_id, notice, changes, now))
        if snapshot.mode == "queued" and wants_the_bot(event):
            return self._back_to_bot(snapshot, event, entry_id, changes, now)
        if snapshot.mode == "resolved":  # the rating, or a new conversation with the bot
            if (score := self._rating(snapshot, event)) is not None:
                return self._rated(snapshot, event, entry_id, changes, now, score)
            self._reopen(snapshot, entry_id, changes)
        elif snapshot.mode != "bot":
            return TurnOutcome(changes)  # a human has it; the console shows the message
        if rule := next((r for r in self.rules if r.matches(snapshot.tags, snapshot.attributes)), None):
            return self._by_rule(snapshot, event, entry_id, changes, now, rule)
        return await self._answer(snapshot, event, entry_id, changes, now)

    def _by_rule(
        self, snapshot: Snapshot, event: InboundEvent, entry_id: str, changes: Changes, now: float, rule: HandoffRule
    ) -> TurnOutcome:
        """Straight to a person, without the bot: the customer is one a rule says people serve."""
        changes.conversation.update(mode="queued", handoff=rule.reason, queued_at=f"{now:.3f}",
                                    team=rule.team or self.default_team)
        changes.mode = (changes.mode[1] if changes.mode else snapshot.mode, "queued")
        replies = [r for r in [self.say("handoff_requested", snapshot)] if r is not None]
        return TurnOutcome(changes, self._outbound(snapshot, event, entry_id, replies, changes, now))

    def _back_to_bot(
        self, snapshot: Snapshot, event: InboundEvent, entry_id: str, changes: Changes, now: float
    ) -> TurnOutcome:
        changes.conversation["mode"] = "bot"
        changes.mode = (snapshot.mode, "bot")
        changes.drop_conversation_fields.extend(["assignee", "queued_at"])
        replies = [r for r in [self.say("back_to_bot", snapshot)] if r is not None]
        return TurnOutcome(changes, self._outbound(snapshot, event, entry_id, replies, changes, now))

    @staticmethod
    def _rating(snapshot: Snapshot, event: InboundEvent) -> int | None:
        return rating(event) if snapshot.conversation.get("csat") == "asked" else None

    def _rated(
        self, snapshot: Snapshot, event: InboundEvent, entry_id: str, changes: Changes, now: float, score: int
    ) -> TurnOutcome:
        """Record the rating on the conversation it rates; the next message starts a new one."""
        changes.conversation["csat"] = str(score)
        changes.profile["csat"] = str(score)  # the latest, for segments and the console
        replies = [r for r in [self.say("csat_thanks", snapshot)] if r is not None]
        return TurnOutcome(changes, self._outbound(snapshot, event, entry_id, replies, changes, now))

    @staticmethod
    def _reopen(snapshot: Snapshot, entry_id: str, changes: Changes) -> None:
        """After a resolved conversation the customer writes again: a new conversation, with the bot."""
        changes.conversation.update(id=conversation_id(snapshot.cid, entry_id), mode="bot")
        changes.mode = (snapshot.mode, "bot")
        changes.drop_conversation_fields.extend(["csat", "team", "handoff", "assigned_at"])

    def _learn_contact(self, snapshot: Snapshot, event: InboundEvent, changes: Changes, now: float) -> None:
        profile = snapshot.profile
        identity = f"i:{event.channel}:{event.user_id}"
        if identity not in profile:
            changes.profile[identity] = f"{now:.0f}"
        if not profile:
            changes.profile["created"] = f"{now:.0f}"
        if event.kind is EventKind.message:
            seen = f"seen:{event.channel}"
            if now - float(profile.get(seen) or 0) >= SEEN_PRECISION_SECONDS:
                changes.profile[seen] = f"{now:.0f}"
            if profile.get("pref") != event.channel:
                changes.profile["pref"] = event.channel
        if event.user_name and not profile.get("name"):
            changes.profile["name"] = event.user_name
        if event.channel in ("whatsapp", "sms") and not profile.get("phone"):
            changes.profile["phone"] = event.user_id

    async def _answer(
        self, snapshot: Snapshot, event: InboundEvent, entry_id: str, changes: Changes, now: float
    ) -> TurnOutcome:
        text, payload = event.text, event.payload
        if event.start_param is not None and payload is None:
            payload = "/start"
        if text and payload is None and "opt" in snapshot.conversation:
            options = [Button.model_validate(o) for o in orjson.loads(snapshot.conversation["opt"])]
            if chosen := match_option(text, options):
                payload = chosen.payload
        profile = snapshot.profile
        hint = event.language if event.language in SUPPORTED_LANGUAGES else None
        language = reply_language(
            text, chosen=profile.get("lang_set"), current=profile.get("lang") or hint, default=self.default_language
        )
        contact = {"id": snapshot.cid, "name": profile.get("name") or event.user_name, "phone": profile.get("phone"),
                   "attributes": snapshot.attributes, "tags": snapshot.tags}
        result = await self.backend.answer(
            DialogueRequest(text, payload, language, event.channel, contact, snapshot.conversation.get("st"),
                            changes.conversation.get("id") or snapshot.conversation.get("id"))
        )
        if result.language != profile.get("lang"):
            changes.profile["lang"] = result.language
        changes.profile.update({f"a:{k}": v for k, v in result.set_attributes.items()})
        if result.state is not None:
            changes.conversation["st"] = result.state
        else:
            changes.drop_conversation_fields.append("st")
        if result.handoff:
            team = result.handoff.team or snapshot.conversation.get("team") or self.default_team
            changes.conversation.update(mode="queued", handoff=result.handoff.reason, queued_at=f"{now:.3f}", team=team)
            changes.mode = (changes.mode[1] if changes.mode else snapshot.mode, "queued")
        outbound = self._outbound(snapshot, event, entry_id, result.replies, changes, now)
        self._offer_options(event.channel, result.replies, changes)
        return TurnOutcome(changes, outbound)

    @staticmethod
    def _outbound(
        snapshot: Snapshot, event: InboundEvent, entry_id: str, replies: list[Reply], changes: Changes, now: float,
        keyword_reply: bool = False,
    ) -> list[OutboundMessage]:
        """The replies to one inbound entry, on its channel, with their history entries staged."""
        outbound = [
            OutboundMessage(
                id=f"{entry_id}-{n}", contact_id=snapshot.cid, channel=event.channel, user_id=event.user_id,
                reply=reply, author="system" if keyword_reply else "bot", keyword_reply=keyword_reply,
            )
            for n, reply in enumerate(replies)
        ]
        changes.history.extend(HistoryEntry.outbound(m, now, entry_id) for m in outbound)
        return outbound

    def _offer_options(self, channel: Channel, replies: list[Reply], changes: Changes) -> None:
        """Remember numbered options on channels without buttons, so "2" can be mapped back."""
        offered = next((r.buttons for r in reversed(replies) if r.buttons), ())
        if offered and not self.capabilities[channel].native_buttons:
            changes.conversation["opt"] = orjson.dumps([b.model_dump() for b in offered]).decode()
        else:
            changes.drop_conversation_fields.append("opt")
