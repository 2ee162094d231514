"""Phone numbers in one shape (E.164), so every way a customer's number reaches us meets in one key.

Twilio sends `whatsapp:+79991234567`, a Telegram shared contact `79991234567` (no plus), a CRM
`8 (999) 123-45-67` or `+7 999 123-45-67`. `phonenumbers` parses them against the configured
default region (`context.default_region`); digits without a plus that do not make a possible
number in that region are tried once more as international, which is how Telegram and Viber
write foreign numbers.
"""

from __future__ import annotations

import phonenumbers

_PREFIXES = ("whatsapp:", "tel:", "sms:")


class BadPhone(ValueError):
    """Not something we can read as a phone number; the message says what was given."""


def normalise(raw: str, region: str) -> str:
    """`raw` as E.164 (`+79991234567`); raises `BadPhone`."""
    text = raw.strip()
    for prefix in _PREFIXES:
        text = text.removeprefix(prefix)
    number = _parse(text, region)
    if number is None and text.isdigit():
        number = _parse(f"+{text}", region)
    if number is None:
        raise BadPhone(f"not a phone number: {raw!r}")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def _parse(text: str, region: str) -> phonenumbers.PhoneNumber | None:
    try:
        number = phonenumbers.parse(text, region)
    except phonenumbers.NumberParseException:
        return None
    return number if phonenumbers.is_possible_number(number) else None
