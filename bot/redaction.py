"""Secrets out of text that is logged or stored.

Telegram puts the bot token in every request URL (`/bot<TOKEN>/sendMessage`), and an HTTP client's
error often quotes the URL. Such a message was logged, stored as a send's failure reason and served
by the history API. `scrub` removes given secrets and anything shaped like a Bot API token path;
`RedactingFilter` does the same to every log record a handler emits.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from bot.settings import Settings

MASK = "[redacted]"
MIN_SECRET = 6  # shorter values would mask ordinary words; real tokens are far longer
_BOT_TOKEN_PATH = re.compile(r"/bot\d+:[A-Za-z0-9_-]+")  # a Bot API URL, whatever token it carries


def scrub(text: str, secrets: Iterable[str] = ()) -> str:
    """`text` without the given secrets and without Telegram bot tokens in URLs."""
    for secret in sorted(set(secrets), key=len, reverse=True):  # longest first: one may contain another
        if len(secret) >= MIN_SECRET:
            text = text.replace(secret, MASK)
    return _BOT_TOKEN_PATH.sub(f"/bot{MASK}", text)


class RedactingFilter(logging.Filter):
    """A handler filter: the record's message, traceback and stack scrubbed before they are written.

    Installed on handlers, not loggers: a logger's filter does not see records propagated from its
    children (aiogram's, uvicorn's), a handler's sees everything it writes.
    """

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        super().__init__()
        self.secrets = tuple(secrets)

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        clean = scrub(message, self.secrets)
        if clean != message:
            record.msg, record.args = clean, None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = scrub(record.exc_text, self.secrets)
        if record.stack_info:
            record.stack_info = scrub(record.stack_info, self.secrets)
        return True


def configured_secrets(settings: Settings) -> list[str]:
    """Every secret the settings hold: channel tokens, webhook secrets, the admin and Rasa tokens."""
    values = (
        settings.telegram.bot_token,
        settings.telegram.webhook_secret,
        settings.twilio.auth_token,
        settings.viber.auth_token,
        settings.admin_token,
        settings.rasa.token,
    )
    return [value.get_secret_value() for value in values if value is not None]
