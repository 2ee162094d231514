"""Canned responses: short texts an agent inserts into the reply box, with the contact's details filled in.

They are templates in the dialogs' own sandboxed Jinja (`bot.dialogue.templates`), compiled once at
import with the same unsafe-attribute check as dialog texts, and rendered for one contact on the server
so the agent sees exactly what the customer will read before sending it.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from jinja2 import Template

from bot.dialogue.errors import Where
from bot.dialogue.templates import compile_template

CANNED: dict[str, str] = {
    "Greeting": "Hi{% if contact.name %}, {{ contact.name }}{% endif %}! I'm looking into this for you now.",
    "Order number": "Could you send me your order number, please?",
    "One moment": "Thanks for waiting{% if contact.name %}, {{ contact.name }}{% endif %}. One more moment, please.",
    "Anything else": "Is there anything else I can help you with?",
    "Goodbye": "Thank you{% if contact.name %}, {{ contact.name }}{% endif %}! Have a great day.",
}
_COMPILED: dict[str, Template] = {
    title: compile_template(text, Where(Path(__file__), 1), f"canned response {title!r}")
    for title, text in CANNED.items()
}


def canned_for(contact: Mapping[str, Any]) -> list[dict[str, str]]:
    """Every canned response rendered for `contact` (`{"name", "attributes", "tags", ...}`)."""
    return [{"title": title, "text": template.render(contact=contact)} for title, template in _COMPILED.items()]
