"""Every load error names the file and the 1-based line to fix: `path:LINE: what is wrong`."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from bot.dialogue import DialogError, Engine

Write = Callable[[str, str], Path]

# A valid base the broken files below add to; it is a.yaml so it is read first.
BASE = """
    intents:
      greet:
        examples: {en: [hello]}
    flows:
      greeting:
        trigger: greet
        steps:
          - say: hello
    texts:
      hello: {en: Hello}
      what: {en: "Sorry?"}
      human: {en: A human will answer.}
    fallback:
      say: what
      handoff: human
"""


def load_error(tmp_path: Path) -> str:
    with pytest.raises(DialogError) as caught:
        Engine.load(tmp_path)
    return str(caught.value)


@pytest.fixture
def base(write: Write) -> Path:
    return write("a.yaml", BASE)


def test_the_base_loads(base: Path, tmp_path: Path) -> None:
    assert Engine.load(tmp_path) is not None


def test_control_character_is_a_syntax_error(base: Path, write: Write, tmp_path: Path) -> None:
    bad = write("b.yaml", 'texts:\n  bye: {en: "Bye\x07"}\n')
    message = "unacceptable character #x0007: special characters are not allowed"
    assert load_error(tmp_path) == f"{bad}:2: YAML syntax error: {message}"


def test_yaml_syntax_error(base: Path, write: Write, tmp_path: Path) -> None:
    bad = write(
        "b.yaml",
        """
        texts:
          bye: {en: "Bye"
          later: {en: Later}
        """,
    )
    assert load_error(tmp_path) == f"{bad}:3: YAML syntax error: expected ',' or '}}', but got '<scalar>'"


def test_unknown_step_kind(base: Path, write: Write, tmp_path: Path) -> None:
    bad = write(
        "b.yaml",
        """
        flows:
          other:
            steps:
              - say: hello
              - sya: hello
        """,
    )
    expected = "unknown step kind 'sya' (expected one of say, ask, if, set, action, handoff, goto, end)"
    assert load_error(tmp_path) == f"{bad}:5: {expected}"


def test_unknown_key_in_a_step(base: Path, write: Write, tmp_path: Path) -> None:
    bad = write(
        "b.yaml",
        """
        flows:
          other:
            steps:
              - say: hello
                buttonz: []
        """,
    )
    assert load_error(tmp_path) == f"{bad}:5: unknown key 'buttonz' in say step (allowed: say, id, buttons)"


def test_missing_required_key(base: Path, write: Write, tmp_path: Path) -> None:
    bad = write(
        "b.yaml",
        """
        flows:
          other:
            steps:
              - say: hello
              - ask: order_id
                retry: hello
        """,
    )
    assert load_error(tmp_path) == f"{bad}:5: ask step is missing required key 'prompt'"


def test_flow_without_steps_points_at_its_name(base: Path, write: Write, tmp_path: Path) -> None:
    bad = write(
        "b.yaml",
        """
        flows:
          other:
            trigger: greet
        """,
    )
    assert load_error(tmp_path) == f"{bad}:2: flow 'other' is missing required key 'steps'"


def test_text_without_english(base: Path, write: Write, tmp_path: Path) -> None:
    bad = write(
        "b.yaml",
        """
        texts:
          bye:
            ru: Пока
        """,
    )
    assert load_error(tmp_path) == f"{bad}:2: text 'bye' is missing required key 'en'"


@pytest.mark.parametrize(
    ("step", "message"),
    [
        ("say: helo", "unknown text 'helo'"),
        ("goto: nowhere", "unknown flow 'nowhere'"),
        ("action: no_such_action", "unknown action 'no_such_action'"),
        ("handoff: nobody", "unknown text 'nobody'"),
    ],
)
def test_unknown_reference_in_a_step(
    base: Path, write: Write, tmp_path: Path, step: str, message: str
) -> None:
    bad = write("b.yaml", f"flows:\n  other:\n    steps:\n      - say: hello\n      - {step}\n")
    assert load_error(tmp_path) == f"{bad}:5: {message}"


def test_unknown_intent(base: Path, write: Write, tmp_path: Path) -> None:
    bad = write(
        "b.yaml",
        """
        flows:
          other:
            trigger:
              - greet_again
            steps:
              - say: hello
        """,
    )
    assert load_error(tmp_path) == f"{bad}:4: unknown intent 'greet_again'"


def test_unknown_step_or_flow_in_a_branch(base: Path, write: Write, tmp_path: Path) -> None:
    bad = write(
        "b.yaml",
        """
        flows:
          other:
            steps:
              - if: "slots.x == '1'"
                then: greeting
                else: the_end
              - id: finish
                say: hello
        """,
    )
    assert load_error(tmp_path) == f"{bad}:6: unknown step or flow 'the_end'"


def test_unknown_validator(base: Path, write: Write, tmp_path: Path) -> None:
    bad = write(
        "b.yaml",
        """
        flows:
          other:
            steps:
              - ask: order_id
                prompt: hello
                validator: no_such_validator
        """,
    )
    assert load_error(tmp_path) == f"{bad}:6: unknown validator 'no_such_validator'"


def test_unknown_text_in_a_button(base: Path, write: Write, tmp_path: Path) -> None:
    bad = write(
        "b.yaml",
        """
        flows:
          other:
            steps:
              - say: hello
                buttons:
                  - {text: hello, payload: greet}
                  - {text: btn_missing, payload: greet}
        """,
    )
    assert load_error(tmp_path) == f"{bad}:7: unknown text 'btn_missing'"


def test_button_payload_that_starts_nothing(base: Path, write: Write, tmp_path: Path) -> None:
    bad = write(
        "b.yaml",
        """
        flows:
          other:
            steps:
              - say: hello
                buttons:
                  - {title: Go, payload: "flow:nowhere"}
        """,
    )
    assert load_error(tmp_path) == f"{bad}:6: unknown flow 'nowhere'"


def test_template_syntax_error(base: Path, write: Write, tmp_path: Path) -> None:
    bad = write(
        "b.yaml",
        """
        texts:
          bye:
            en: Bye
            ru: "Пока, {{ contact.name }"
        """,
    )
    assert load_error(tmp_path) == f"{bad}:4: template error in text 'bye' (ru): unexpected '}}'"


def test_condition_syntax_error(base: Path, write: Write, tmp_path: Path) -> None:
    bad = write(
        "b.yaml",
        """
        flows:
          other:
            steps:
              - if: "slots.x =="
                then: greeting
        """,
    )
    assert load_error(tmp_path).startswith(f"{bad}:4: template error in condition 'slots.x ==': ")


def test_private_attribute_in_a_template_is_refused(base: Path, write: Write, tmp_path: Path) -> None:
    bad = write(
        "b.yaml",
        """
        texts:
          leak:
            en: "{{ ''.__class__.__mro__ }}"
        """,
    )
    assert load_error(tmp_path) == f"{bad}:3: unsafe attribute '__mro__' in text 'leak' (en)"


def test_duplicate_names_across_files(base: Path, write: Write, tmp_path: Path) -> None:
    bad = write(
        "b.yaml",
        """
        texts:
          bye: {en: Bye}
          hello: {en: Hello again}
        """,
    )
    assert load_error(tmp_path) == f"{bad}:3: text 'hello' is defined twice (first at {base}:10)"


def test_duplicate_flow_across_files(base: Path, write: Write, tmp_path: Path) -> None:
    bad = write("b.yaml", "flows:\n  greeting:\n    steps: [end]\n")
    assert load_error(tmp_path) == f"{bad}:2: flow 'greeting' is defined twice (first at {base}:5)"


def test_duplicate_key_in_one_file(base: Path, write: Write, tmp_path: Path) -> None:
    bad = write("b.yaml", "texts:\n  bye: {en: Bye}\n  bye: {en: Bye again}\n")
    assert load_error(tmp_path) == f"{bad}:3: duplicate key 'bye'"


def test_one_intent_cannot_start_two_flows(base: Path, write: Write, tmp_path: Path) -> None:
    bad = write("b.yaml", "flows:\n  again:\n    trigger: greet\n    steps: [end]\n")
    assert load_error(tmp_path) == f"{bad}:3: intent 'greet' already starts flow 'greeting'"


def test_bad_pattern(base: Path, write: Write, tmp_path: Path) -> None:
    bad = write(
        "b.yaml", "flows:\n  x:\n    steps:\n      - ask: n\n        prompt: hello\n        pattern: '[0-9'\n"
    )
    assert load_error(tmp_path).startswith(f"{bad}:6: bad pattern '[0-9': ")


def test_a_failing_import_is_blamed_on_its_line(base: Path, write: Write, tmp_path: Path) -> None:
    bad = write("b.yaml", "imports:\n  - bot.dialogue.demo_actions\n  - no_such_module_here\n")
    message = "cannot import 'no_such_module_here': No module named 'no_such_module_here'"
    assert load_error(tmp_path) == f"{bad}:3: {message}"


def test_fallback_is_required_once(write: Write, tmp_path: Path) -> None:
    write("a.yaml", "texts:\n  hello: {en: Hello}\n")
    assert load_error(tmp_path) == f"{tmp_path}: no file defines a 'fallback'"
    base = write("a.yaml", BASE)
    bad = write("b.yaml", "fallback:\n  say: hello\n  handoff: hello\n")
    assert load_error(tmp_path) == f"{bad}:1: fallback is defined twice (first at {base}:13)"


def test_scalars_stay_text(base: Path, write: Write, tmp_path: Path) -> None:
    """YAML 1.1 would read `no` as false; a dialog text must stay the word."""
    write("b.yaml", "texts:\n  answer: {en: no, ru: нет}\n")
    engine = Engine.load(tmp_path)
    assert engine is not None  # a boolean here would have failed the "must be text" check
