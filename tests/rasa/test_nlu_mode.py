"""Rasa as the NLU of our own dialogs: its intents (above the threshold) start our flows, its entities
fill their slots, and when it is down the built-in matcher understands instead — counted in /metrics."""

from __future__ import annotations

import copy
from typing import Any

from bot.dialogue import Engine
from bot.dialogue.backend import DialogueRequest
from bot.dialogue.loader import load_dialogs
from bot.dialogue.nlu import Understood
from bot.settings import load_settings
from tests.conftest import HubFactory
from tests.pipeline.customer import Customer, small_hub
from tests.rasa.fake_rasa import FakeRasa, recorded


def parse(intent: str, confidence: float, **entities: str) -> dict[str, Any]:
    """A recorded real `/model/parse` answer, saying `intent` with `entities` instead."""
    answer = copy.deepcopy(recorded("parse_greet.json"))
    answer["intent"] = {"name": intent, "confidence": confidence}
    answer["entities"] = [{"entity": name, "value": value, "start": 0, "end": len(value), "extractor": "DIETClassifier",
                           "confidence_entity": 0.99} for name, value in entities.items()]
    return answer


async def test_rasa_intents_and_entities_drive_our_flows(hub: HubFactory) -> None:
    fake = FakeRasa(parses={"is parcel 12347 on its way": parse("order_status", 0.93, order_id="12347"),
                            "hmm, deliver me": parse("delivery", 0.31)})
    async with fake.running(), small_hub(hub, rasa__url=fake.url, rasa__mode="nlu") as client:
        kim = Customer(client, "telegram", "720001")
        await kim.say("is parcel 12347 on its way", language="en")
        [status, anything_else] = await kim.replies(2)
        assert status["text"].startswith("We're packing order 12347")  # the ask was skipped: Rasa found the number
        assert anything_else["text"]

        await kim.say("hmm, deliver me")  # Rasa is not sure enough: not understood, though "deliver" is a keyword
        [fallback] = await kim.replies(1)
        assert not fallback["text"].startswith("We deliver nationwide")
        assert fake.parsed == ["is parcel 12347 on its way", "hmm, deliver me"]
        assert fake.received == []  # nlu mode: Rasa's dialogue is never asked


async def test_rasa_down_the_built_in_matcher_understands(hub: HubFactory) -> None:
    fake = FakeRasa()
    async with small_hub(hub, rasa__url=fake.url, rasa__mode="nlu") as client:
        kim = Customer(client, "telegram", "720002")
        await kim.say("opening hours", language="en")
        [answer] = await kim.replies(1)
        assert answer["text"].startswith("Our store is open")
        metrics = (await client.http.get("/metrics")).text
        assert 'omnihub_rasa_fallbacks_total{mode="nlu",reason="down"} 1.0' in metrics


async def test_an_entity_that_fails_validation_is_asked_for_and_an_unknown_intent_is_a_miss() -> None:
    readings = {"order abc": Understood("order_status", {"order_id": "abc"}), "book a table": Understood("book")}

    async def understand(text: str, language: str) -> Understood | None:
        return readings.get(text)

    dialogs = load_dialogs(load_settings({}).dialogs_dir)
    engine, with_rasa = Engine(dialogs), Engine(dialogs, understand)
    contact = {"id": "c1", "attributes": {}, "tags": []}
    asked = await with_rasa.answer(DialogueRequest("order abc", None, "en", "telegram", contact, None))
    assert [r.text for r in asked.replies] == [(await engine.answer(
        DialogueRequest("where is my order", None, "en", "telegram", contact, None))).replies[0].text]
    missed = await with_rasa.answer(DialogueRequest("book a table", None, "en", "telegram", contact, None))
    fallback = await engine.answer(DialogueRequest("qwertyuiop", None, "en", "telegram", contact, None))
    assert [r.text for r in missed.replies] == [r.text for r in fallback.replies]
