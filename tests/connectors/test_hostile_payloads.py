"""Every webhook parser against garbled payloads: recorded ones with fields replaced by hostile values.

The property is the webhook route's contract: `parse` returns events or raises `BadPayload` (a 400
naming the field) and never anything else (a 500), and every event it returns can be stored and read
back exactly as the worker reads it. An event that fails the round trip would sit pending forever.
"""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bot.models import InboundEvent
from connectors.base import BadPayload
from tests.connectors import test_telegram, test_twilio, test_viber

PAYLOADS = Path(__file__).resolve().parents[1] / "payloads"
BOUNDED = settings(
    max_examples=300, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow]
)
LONG = "x" * 100_000
HOSTILE_JSON: list[Any] = [
    math.nan, math.inf, -math.inf, 1e308, -0.0,
    2**63, 2**63 - 1, -(2**63), -(2**63) - 1, 2**64, 10**30, -(10**4000),
    "", "NaN", "inf", "1e400", "-1", LONG, "\u202e\u0000\uffff",
    None, True, False, 0, -1, 1.5, [], {}, [1, "a"], {"id": 1},
]
# What a number may be replaced by: each one is out of range, not finite or not a number at all.
HOSTILE_NUMBERS: list[Any] = [
    math.nan, math.inf, -math.inf, "NaN", 1e20, 2**63, -(2**63) - 1, 2**64, 10**30, -(10**4000), 91.5, -181,
]
HOSTILE_NUMBER_TEXT = ["nan", "NaN", "inf", "-inf", "1e400", "-1", "11", "91", "-181", "9" * 400, "١", "²"]
HOSTILE_FORM = [
    "", "nan", "NaN", "inf", "-inf", "1e400", "-1", "0", "1", "10", "11", "2", "91", "-181", "9" * 400,
    "١", "²", LONG, "whatsapp:", "whatsapp:+1", "+79991234567", "received", "delivered", "undelivered", "queued",
]


def _recorded(channel: str, suffix: str) -> list[str]:
    return sorted(path.read_text(encoding="utf-8") for path in (PAYLOADS / channel).glob(f"*.{suffix}"))


def _paths(tree: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[tuple[Any, ...], Any]]:
    """Every place in a JSON tree a value sits (dict keys, list indexes) with its value, root excluded."""
    found: list[tuple[tuple[Any, ...], Any]] = []
    children = tree.items() if isinstance(tree, dict) else enumerate(tree) if isinstance(tree, list) else ()
    for key, child in children:
        found.append(((*prefix, key), child))
        found += _paths(child, (*prefix, key))
    return found


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


json_values = st.one_of(
    st.sampled_from(HOSTILE_JSON),
    st.integers(),
    st.floats(),
    st.text(max_size=30),
    st.recursive(st.none() | st.integers() | st.text(max_size=5), lambda kids: st.lists(kids, max_size=3),
                 max_leaves=5),
)


@st.composite
def garbled_json(draw: st.DrawFn, recorded: list[str]) -> bytes:
    """A recorded payload with up to four fields replaced by a hostile value or removed; sometimes junk."""
    if draw(st.integers(0, 19)) == 0:
        return draw(st.binary(max_size=64) | st.text(max_size=64).map(str.encode))
    tree = copy.deepcopy(json.loads(draw(st.sampled_from(recorded))))
    for _ in range(draw(st.integers(1, 4))):
        places = _paths(tree)
        numbers = [place for place in places if _is_number(place[1])]
        at_a_number = bool(numbers) and draw(st.booleans())  # where the fuzzing run found most of its 500s
        if at_a_number:
            places = numbers
        if not places:
            break
        *parents, last = draw(st.sampled_from([path for path, _ in places]))
        holder = tree
        for key in parents:
            holder = holder[key]
        if at_a_number:
            holder[last] = draw(st.sampled_from(HOSTILE_NUMBERS))
        elif isinstance(holder, dict) and draw(st.booleans()):
            del holder[last]
        else:
            holder[last] = copy.deepcopy(draw(json_values))  # later mutations must not edit the constants
    return json.dumps(tree).encode()  # NaN and Infinity as JavaScript writes them, as a fuzzer sends them


@st.composite
def garbled_form(draw: st.DrawFn) -> dict[str, str]:
    form = dict(parse_qsl(draw(st.sampled_from(_recorded("twilio", "txt"))), keep_blank_values=True))
    names = [*sorted(form), "NumMedia", "Latitude", "Longitude", "MediaUrl0", "MessageStatus", "SmsSid"]
    for _ in range(draw(st.integers(1, 4))):
        if draw(st.booleans()):  # the numeric fields, where the fuzzing run found its 500s
            form[draw(st.sampled_from(["NumMedia", "Latitude", "Longitude"]))] = draw(
                st.sampled_from(HOSTILE_NUMBER_TEXT)
            )
            continue
        name = draw(st.sampled_from(names))
        if draw(st.integers(0, 3)) == 0:
            form.pop(name, None)
        else:
            form[name] = draw(st.sampled_from(HOSTILE_FORM) | st.text(max_size=20))
    return form


def assert_events_or_bad_payload(parse: Any, request: Any) -> None:
    try:
        events: list[InboundEvent] = parse(request)
    except BadPayload as refused:
        assert str(refused)  # the 400 says why
        return
    for event in events:  # exactly what ingest writes and the worker reads
        assert InboundEvent.model_validate_json(event.model_dump_json(exclude_defaults=True)) == event


@BOUNDED
@given(garbled_json(_recorded("telegram", "json")))
def test_telegram_parse_refuses_or_round_trips(body: bytes) -> None:
    assert_events_or_bad_payload(test_telegram.make_connector().parse, test_telegram.webhook(body))


@BOUNDED
@given(garbled_json(_recorded("viber", "json")))
def test_viber_parse_refuses_or_round_trips(body: bytes) -> None:
    assert_events_or_bad_payload(test_viber.make_connector().parse, test_viber.signed(body))


@BOUNDED
@given(garbled_form())
def test_twilio_parse_refuses_or_round_trips(form: dict[str, str]) -> None:
    assert_events_or_bad_payload(test_twilio.make_connector().parse, test_twilio.signed(form))
