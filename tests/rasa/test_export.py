"""`omnihub rasa export` on the demo dialogs, read back as Rasa would read the files it wrote."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner, Result

from bot.cli import app

DIALOGS = Path(__file__).resolve().parents[2] / "dialogs"
FILES = ("config.yml", "domain.yml", "data/nlu.yml", "data/rules.yml", "endpoints.yml", "credentials.yml")


def export(out: Path, *args: str, dialogs: Path = DIALOGS) -> Result:
    return CliRunner().invoke(app, ["rasa", "export", "--out", str(out), *args], env={"OMNIHUB_DIALOGS": str(dialogs)})


def load(out: Path, name: str) -> Any:
    return yaml.safe_load((out / name).read_text(encoding="utf-8"))


def examples(nlu: dict[str, Any], intent: str) -> list[str]:
    [entry] = [e for e in nlu["nlu"] if e["intent"] == intent]
    return [line.removeprefix("- ") for line in entry["examples"].splitlines()]


def rules(out: Path) -> dict[str, list[dict[str, str]]]:
    return {rule["rule"]: rule["steps"] for rule in load(out, "data/rules.yml")["rules"]}


@pytest.fixture(scope="module")
def english(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Result]:
    out = tmp_path_factory.mktemp("rasa-en")
    result = export(out, "--language", "en", "--hub-url", "http://hub.test:8080/", "--token", "s3cret")
    assert result.exit_code == 0, result.output
    return out, result


def test_writes_every_file_and_says_so(english: tuple[Path, Result]) -> None:
    out, result = english
    for name in FILES:
        assert f"wrote {out / name}" in result.stdout
    assert load(out, "data/nlu.yml")["version"] == "3.1"


def test_intents_carry_examples_and_the_keywords_of_their_language(english: tuple[Path, Result]) -> None:
    out, _ = english
    nlu = load(out, "data/nlu.yml")
    assert examples(nlu, "order_status") == [
        "where is my order", "order status", "track my order", "has my parcel shipped yet",
        "when will my order arrive", "order", "parcel", "package", "track",
    ]
    assert "human" in examples(nlu, "human")
    assert not [e for entry in nlu["nlu"] for e in entry["examples"].splitlines() if "заказ" in e]
    assert load(out, "domain.yml")["intents"] == [
        "greet", "order_status", "delivery", "hours", "human", "thanks", "bye", "other_channel"]


def test_texts_become_responses_with_slots_in_rasas_braces(english: tuple[Path, Result]) -> None:
    out, _ = english
    responses = load(out, "domain.yml")["responses"]
    assert responses["utter_order_in_transit"] == [
        {"text": "Order {order_id} is on its way 🚚 It should reach you within 2–3 days."}]
    assert responses["utter_goodbye"] == [{"text": "Goodbye! Write any time — I'm always here."}]
    assert len(responses) == len(yaml.safe_load((DIALOGS / "texts.yaml").read_text(encoding="utf-8"))["texts"])


def test_other_jinja_is_rendered_plain_with_a_warning(english: tuple[Path, Result]) -> None:
    out, result = english
    responses = load(out, "domain.yml")["responses"]
    assert responses["utter_you_are_welcome"] == [{"text": "You're welcome! Have a great day."}]
    assert responses["utter_queue_position"][0]["text"].startswith("You're number in the queue.")
    assert "warning: text 'you_are_welcome' uses contact, conditions" in result.stderr
    assert "warning: text 'queue_position' uses conversation" in result.stderr
    assert "text 'goodbye'" not in result.stderr and "text 'order_in_transit'" not in result.stderr


def test_say_buttons_become_intent_payloads(english: tuple[Path, Result]) -> None:
    out, result = english
    [greeting] = load(out, "domain.yml")["responses"]["utter_greeting"]
    assert greeting == {
        "text": "Hi! Welcome to Omnishop. What can I help you with?",
        "buttons": [
            {"title": "Order status", "payload": "/order_status"},
            {"title": "Delivery & hours", "payload": "flow:delivery_and_hours"},
            {"title": "Talk to a human", "payload": "/human"},
        ],
    }
    warning = "warning: button 'Delivery & hours': no intent starts 'flow:delivery_and_hours'"
    assert result.stderr.count(warning) == 1  # on three menus, said once


def test_simple_flows_become_rules_and_the_others_are_named(english: tuple[Path, Result]) -> None:
    out, result = english
    found = rules(out)
    assert found["delivery"] == [{"intent": "delivery"}, {"action": "utter_delivery_info"}]
    assert found["human"] == [
        {"intent": "human"}, {"action": "utter_handoff_requested"}, {"action": "action_handoff"}]
    assert found["fallback"] == [{"intent": "nlu_fallback"}, {"action": "utter_not_understood"}]
    assert set(found) == {"greeting", "delivery", "hours", "human", "thanks", "bye", "fallback"}
    assert "skipped flow 'order_status': its action, ask, if, set steps need the hub's engine" in result.stderr
    assert "skipped flow 'other_channel': its action steps" in result.stderr
    assert "skipped flow 'delivery_and_hours': no intent starts it" in result.stderr


def test_domain_declares_the_hubs_slots_and_actions(english: tuple[Path, Result]) -> None:
    out, _ = english
    domain = load(out, "domain.yml")
    custom = [{"type": "custom"}]
    assert domain["slots"]["handoff_team"] == {"type": "text", "influence_conversation": False, "mappings": custom}
    assert domain["slots"]["contact_attributes"] == {"type": "any", "influence_conversation": False,
                                                     "mappings": custom}
    assert domain["slots"]["order_id"]["type"] == "text"  # a text mentions it, so a custom action can fill it
    assert domain["actions"] == ["action_handoff", "action_set_contact_attribute", "action_crm_lookup"]
    assert domain["session_config"]["session_expiration_time"] > 0


def test_config_and_endpoints_point_rasa_at_the_hub(english: tuple[Path, Result]) -> None:
    out, _ = english
    config = load(out, "config.yml")
    assert (config["language"], config["assistant_id"]) == ("en", "omnihub-en")
    assert {"name": "FallbackClassifier", "threshold": 0.5} in config["pipeline"]
    assert [p["name"] for p in config["policies"]] == ["MemoizationPolicy", "RulePolicy"]
    assert load(out, "endpoints.yml") == {
        "action_endpoint": {"url": "http://hub.test:8080/rasa/webhook", "token": "s3cret"}}
    assert load(out, "credentials.yml") == {"rest": None}


def test_russian(tmp_path: Path) -> None:
    result = export(tmp_path, "--language", "ru")
    assert result.exit_code == 0, result.output
    nlu = load(tmp_path, "data/nlu.yml")
    assert examples(nlu, "greet")[:2] == ["привет", "здравствуйте"]
    assert examples(nlu, "order_status")[-3:] == ["заказ", "посылка", "отследить"]
    domain = load(tmp_path, "domain.yml")
    assert domain["responses"]["utter_goodbye"] == [{"text": "До свидания! Пишите в любое время — я всегда на связи."}]
    [greeting] = domain["responses"]["utter_greeting"]
    assert greeting["text"] == "Здравствуйте! Это Omnishop. Чем могу помочь?"
    assert greeting["buttons"][0] == {"title": "Статус заказа", "payload": "/order_status"}
    assert load(tmp_path, "config.yml")["language"] == "ru"
    assert "token" not in load(tmp_path, "endpoints.yml")["action_endpoint"]


def test_a_flow_with_several_triggers_and_a_handoff_then_more(tmp_path: Path) -> None:
    dialogs = tmp_path / "dialogs"
    dialogs.mkdir()
    (dialogs / "d.yaml").write_text(textwrap.dedent("""\
        intents:
          refund: {examples: {en: [i want a refund]}}
          complaint: {examples: {en: [i want to complain]}}
        flows:
          money:
            trigger: [refund, complaint]
            steps:
              - say: sorry
              - handoff: passing
                team: billing
              - say: never_said
        texts:
          sorry: {en: "Sorry to hear that{{ slots.who | upper }}."}
          passing: {en: Passing you on.}
          never_said: {en: Not said.}
          what: {en: "What?"}
        fallback: {say: what, handoff: passing}
        """), encoding="utf-8")
    result = export(tmp_path / "out", dialogs=dialogs)
    assert result.exit_code == 0, result.output
    steps = [{"action": "utter_sorry"}, {"action": "utter_passing"}, {"action": "action_handoff"}]
    assert rules(tmp_path / "out") == {
        "money (refund)": [{"intent": "refund"}, *steps],
        "money (complaint)": [{"intent": "complaint"}, *steps],
        "fallback": [{"intent": "nlu_fallback"}, {"action": "utter_what"}],
    }
    assert "warning: text 'sorry' uses expressions" in result.stderr


def test_an_unknown_language_is_one_line(tmp_path: Path) -> None:
    result = export(tmp_path / "out", "--language", "de")
    assert result.exit_code == 2
    assert result.stderr == "omnihub: unknown language 'de': the dialogs have en, ru\n"
    assert not (tmp_path / "out").exists()


def test_an_unwritable_out_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "taken").write_text("a file, not a directory", encoding="utf-8")
    result = export(tmp_path / "taken" / "project")
    assert result.exit_code == 2
    assert result.stderr.startswith(f"omnihub: cannot write the Rasa project to {tmp_path / 'taken' / 'project'}: ")
    assert result.stderr.count("\n") == 1
