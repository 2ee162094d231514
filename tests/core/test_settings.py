"""One validated settings object: YAML, then environment; a mistake is one line naming the setting."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.settings import ConfigError, load_settings


def test_environment_wins_over_the_file(tmp_path: Path) -> None:
    config = tmp_path / "omnihub.yaml"
    config.write_text("port: 9000\ntelegram: {bot_username: from_file}\n")
    settings = load_settings({"OMNIHUB_CONFIG": str(config), "OMNIHUB_PORT": "9100"})
    assert settings.port == 9100 and settings.telegram.bot_username == "from_file"


def test_no_credentials_means_sandbox() -> None:
    settings = load_settings({})
    assert all(settings.sandbox(c) for c in ("telegram", "whatsapp", "viber", "sms"))
    assert not load_settings({"TELEGRAM_BOT_TOKEN": "1:x"}).sandbox("telegram")


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({"OMNIHUB_PORT": "eighty"}, "bad setting port (env OMNIHUB_PORT): Input should be a valid integer"),
        ({"OMNIHUB_PUBLIC_URL": "hub.example.com"}, "bad setting public_url (env OMNIHUB_PUBLIC_URL)"),
        ({"TWILIO_ACCOUNT_SID": "AC1"}, "bad setting twilio.auth_token (env TWILIO_AUTH_TOKEN)"),
        ({"TWILIO_ACCOUNT_SID": "AC1", "TWILIO_AUTH_TOKEN": "t"}, "bad setting twilio.sms_from (env TWILIO_SMS_FROM)"),
        ({"TELEGRAM_BOT_TOKEN": "1:x", "OMNIHUB_PUBLIC_URL": "https://hub.example.com"},
         "bad setting telegram.webhook_secret (env TELEGRAM_WEBHOOK_SECRET)"),
    ],
)
def test_a_bad_value_is_one_clear_line(environ: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(environ)
    assert str(caught.value).startswith(message) and "\n" not in str(caught.value)


def test_a_broken_file_names_file_and_line(tmp_path: Path) -> None:
    config = tmp_path / "omnihub.yaml"
    config.write_text("port: 8080\npipeline:\n  partitions: [\n")
    with pytest.raises(ConfigError, match=rf"{config}:\d+: not valid YAML"):
        load_settings({"OMNIHUB_CONFIG": str(config)})
    config.write_text("pipeline:\n  partitions: 0\n")
    with pytest.raises(ConfigError, match=r"bad setting pipeline.partitions \(in .*\): Input should be greater"):
        load_settings({"OMNIHUB_CONFIG": str(config)})
