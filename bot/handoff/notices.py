"""Dialog texts the hub says on its own (leaving the queue, the rating question), by name, in the
contact's language — what commands and people-mode turns use instead of the dialogue engine."""

from __future__ import annotations

import logging
from collections.abc import Mapping

from bot.context.store import Snapshot
from bot.dialogue.spec import Text
from bot.handoff.customer_turns import RATING_PAYLOAD
from bot.models import Button, Reply

log = logging.getLogger(__name__)
RATING_BUTTONS = tuple(Button(title=str(n), payload=f"{RATING_PAYLOAD}{n}") for n in range(1, 6))
# the buttons offered with a text, when it has some (the queue notice names its keyword instead: a
# button would stay on a Viber keyboard, and reads oddly as a numbered option on SMS)
_BUTTONS: dict[str, tuple[Button, ...]] = {"csat_question": RATING_BUTTONS}


class Notices:
    def __init__(self, texts: Mapping[str, Text], default_language: str) -> None:
        self.texts = texts
        self.default_language = default_language

    def __call__(self, name: str, snapshot: Snapshot) -> Reply | None:
        """The text `name` for this contact; None when the dialogs have no such text (or it fails)."""
        text = self.texts.get(name)
        if text is None:
            return None
        profile = snapshot.profile
        language = profile.get("lang_set") or profile.get("lang") or self.default_language
        context = {"contact": {"name": profile.get("name"), "attributes": snapshot.attributes},
                   "channel": snapshot.conversation.get("ch"), "conversation": dict(snapshot.conversation)}
        try:
            return Reply(text=text.render(language, context), buttons=_BUTTONS.get(name, ()))
        except Exception:  # a broken text must not stop the command that asked for it
            log.exception("text %r failed to render", name)
            return None
