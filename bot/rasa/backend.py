"""Rasa as a dialogue backend (`dialogue` mode) or as the NLU of our own dialogs (`nlu` mode).

Both keep the built-in engine behind them: a turn Rasa does not answer (down, slow, broken, silent)
is answered by our dialogs, so the customer never meets silence. Handoff, consent keywords, the CRM
feed and campaigns live in the pipeline around the backend and work the same either way; while an
agent has the conversation the pipeline does not call the backend, so Rasa is not called at all.
"""

from __future__ import annotations

from typing import Any

from bot.dialogue.backend import DialogueAnswer, DialogueBackend, DialogueRequest
from bot.dialogue.engine import Engine
from bot.dialogue.loader import Dialogs
from bot.dialogue.nlu import Understood
from bot.rasa.client import RasaClient, RasaUnavailable
from bot.rasa.messages import read_answer
from bot.settings import RasaSettings


class RasaDialogue:
    """A turn goes to Rasa's REST channel with our conversation id as the sender, so Rasa keeps its
    tracker per conversation, and a customer who switches channel stays in the same Rasa dialogue."""

    def __init__(self, client: RasaClient, fallback: DialogueBackend) -> None:
        self.client = client
        self.fallback = fallback

    async def answer(self, request: DialogueRequest) -> DialogueAnswer:
        message = request.payload or request.text
        if message is None or request.conversation is None:  # a sticker, a photo: nothing Rasa reads
            return await self.fallback.answer(request)
        try:
            messages = await self.client.talk(request.conversation, message, metadata(request))
        except RasaUnavailable:
            return await self.fallback.answer(request)
        turn = read_answer(messages, request.channel)
        if not (turn.replies or turn.handoff or turn.set_attributes):  # what a failed action leaves
            await self.client.failed("error", "Rasa answered the turn with no message")
            return await self.fallback.answer(request)
        # the state is None: Rasa keeps its own, and the engine starts afresh if it must answer again
        return DialogueAnswer(turn.replies, None, request.language, turn.set_attributes, turn.handoff)


class RasaUnderstanding:
    """`Understand` for the engine: Rasa's intent when it is sure enough, its entities as slots."""

    def __init__(self, client: RasaClient, threshold: float) -> None:
        self.client = client
        self.threshold = threshold

    async def __call__(self, text: str, language: str) -> Understood | None:
        try:
            parsed = await self.client.parse(text)
        except RasaUnavailable:
            return None  # no opinion: the built-in matcher decides
        intent = parsed.intent
        if intent is None or intent.name in (None, "nlu_fallback") or intent.confidence < self.threshold:
            return Understood(None)
        return Understood(intent.name, {e.entity: str(e.value) for e in parsed.entities})


def metadata(request: DialogueRequest) -> dict[str, Any]:
    """What Rasa's trackers and a team's own actions see of the customer (`tracker.latest_message.metadata`)."""
    contact = request.contact
    return {"channel": request.channel, "language": request.language,
            "contact": {"id": contact.get("id"), "name": contact.get("name"), "phone": contact.get("phone"),
                        "attributes": dict(contact.get("attributes") or {}), "tags": list(contact.get("tags") or [])}}


def dialogue_backend(settings: RasaSettings, dialogs: Dialogs, client: RasaClient | None) -> DialogueBackend:
    """The backend the settings ask for: the built-in engine alone without a Rasa server."""
    if client is None:
        return Engine(dialogs)
    if settings.mode == "nlu":
        return Engine(dialogs, RasaUnderstanding(client, settings.threshold))
    return RasaDialogue(client, Engine(dialogs))
