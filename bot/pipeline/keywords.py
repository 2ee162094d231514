"""Consent a customer gives or takes back by messaging: SMS keywords and Viber (un)subscriptions.

Carriers require the SMS keywords to work on every number whatever the bot is doing — in the middle
of a flow, or while an agent has the chat — so the turn runs this before the dialogue engine, and a
keyword never reaches the engine. A keyword is the whole message, trimmed, in any case:

- STOP, STOPALL, UNSUBSCRIBE, CANCEL, END, QUIT, СТОП, ОТПИСАТЬСЯ: SMS consent out (service and
  marketing); with `context.stop_revokes_all_marketing` marketing out on every channel too. Confirmed
  once: a STOP while SMS is already out changes nothing and gets no reply — a customer who said stop
  is not texted again, and two auto-responders cannot loop on it.
- START, UNSTOP, СТАРТ: SMS consent in, for service and marketing — the customer asks for this
  number's messages again, which carriers treat as an opt-in to them. Marketing that STOP withdrew
  on other channels stays out until the customer opts in there. Confirmed.
- HELP, ПОМОЩЬ: the help text; consent unchanged.

Viber `subscribed` puts Viber service consent in; `unsubscribed` takes all Viber consent out. Viber
subscribes a customer who writes to the bot without sending `subscribed`, so a message from a customer
who had unsubscribed puts service consent back in (marketing stays out until an explicit opt-in).

The replies are settings (`context.consent_texts`) over the defaults below rather than dialog texts:
they are compliance wording every deployment needs whatever its dialogs directory holds, and they
must go out even when the dialogs are broken. They are answered in Russian when the keyword is
Cyrillic, else in the contact's language.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from bot.context.consent import PURPOSES, Cause, field, record
from bot.context.store import Changes
from bot.dialogue.language import reply_language
from bot.models import CHANNELS, EventKind, InboundEvent, Reply
from bot.settings import ConsentTexts

STOP = frozenset({"stop", "stopall", "unsubscribe", "cancel", "end", "quit", "стоп", "отписаться"})
START = frozenset({"start", "unstop", "старт"})
HELP = frozenset({"help", "помощь"})

# Short on purpose: one GSM-7 segment in English, at most two UCS-2 segments in Russian.
DEFAULT_TEXTS: dict[str, dict[str, str]] = {
    "stopped": {
        "en": "You are unsubscribed and will get no more messages from us here. Reply START to subscribe again.",
        "ru": "Вы отписались и больше не получите от нас сообщений. Подписаться снова: ответьте СТАРТ.",
    },
    "started": {
        "en": "You are subscribed again. Reply STOP to unsubscribe, HELP for help.",
        "ru": "Вы снова подписаны. Отписаться: СТОП, справка: ПОМОЩЬ.",
    },
    "help": {
        "en": "Write your question here and we will answer. Reply STOP to unsubscribe, START to subscribe again.",
        "ru": "Напишите вопрос сюда, и мы ответим. Отписаться: СТОП, подписаться снова: СТАРТ.",
    },
}


@dataclass(frozen=True)
class Handled:
    """The event was about consent: the dialogue engine does not see it. `reply` may be None."""

    reply: Reply | None = None


class ConsentKeywords:
    def __init__(
        self, revoke_all_marketing: bool = True, texts: ConsentTexts | None = None, default_language: str = "en"
    ) -> None:
        self.revoke_all_marketing = revoke_all_marketing
        overrides = (texts or ConsentTexts()).model_dump()
        self.texts = {name: {**defaults, **overrides[name]} for name, defaults in DEFAULT_TEXTS.items()}
        self.default_language = default_language

    def apply(
        self, profile: Mapping[str, str], event: InboundEvent, entry_id: str, changes: Changes, now: float
    ) -> Handled | None:
        """Stage the consent change `event` makes; None when it is not about consent."""
        if event.kind is EventKind.subscribed:
            cause = Cause("subscribed", now, event.provider_id, entry_id)
            record(changes, profile, event.channel, ("service",), "in", cause)
            return Handled()
        if event.kind is EventKind.unsubscribed:
            cause = Cause("unsubscribed", now, event.provider_id, entry_id)
            record(changes, profile, event.channel, PURPOSES, "out", cause)
            return Handled()
        if event.kind is not EventKind.message:
            return None
        if event.channel == "viber" and profile.get(field("viber", "service")) == "out":
            cause = Cause("subscribed", now, event.provider_id, entry_id, detail="wrote again")
            record(changes, profile, "viber", ("service",), "in", cause)
        return self._keyword(profile, event, entry_id, changes, now) if event.channel == "sms" else None

    def _keyword(
        self, profile: Mapping[str, str], event: InboundEvent, entry_id: str, changes: Changes, now: float
    ) -> Handled | None:
        word = (event.text or "").strip()
        keyword = word.casefold()
        cause = Cause("keyword", now, event.provider_id, entry_id, detail=word)
        if keyword in STOP:
            newly_out = record(changes, profile, "sms", PURPOSES, "out", cause)
            if self.revoke_all_marketing:
                for channel in CHANNELS:
                    record(changes, profile, channel, ("marketing",), "out", cause)
            return Handled(self._reply("stopped", profile, word) if newly_out else None)
        if keyword in START:
            record(changes, profile, "sms", PURPOSES, "in", cause)
            return Handled(self._reply("started", profile, word))
        if keyword in HELP:
            return Handled(self._reply("help", profile, word))
        return None

    def _reply(self, name: str, profile: Mapping[str, str], keyword: str) -> Reply:
        texts = self.texts[name]
        language = reply_language(
            keyword, chosen=profile.get("lang_set"), current=profile.get("lang"), default=self.default_language
        )
        return Reply(text=texts.get(language) or texts["en"])
