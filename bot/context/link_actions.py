"""The dialog action `offer_links`: a link code and a deep link per other channel ("continue in WhatsApp").

Actions get an `ActionContext` — slots, contact, language, channel — and no Redis, on purpose: they
are foreign code and say what to change through their result. Issuing a code must write to Redis,
so the worker's identity step binds a `LinkOffer` for the contact whose turn is about to run
(`bind`), and this action reads it from a context variable. The binding is per task and per turn,
so an action can only ever issue a code for the contact it is answering; outside the worker (a
dialog test) there is no binding and the action fails like any broken action (the engine hands
the chat to a human).

The action sets the slots `link_code` and `link_list` ("Telegram: https://t.me/…" lines); the dialog
says them with its own text (`link_offer` in dialogs/texts.yaml).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from contextvars import ContextVar
from dataclasses import dataclass

from bot.context.links import LinkCodes
from bot.dialogue.actions import ActionContext, ActionResult, action
from bot.models import Channel

LABELS = {"telegram": "Telegram", "whatsapp": "WhatsApp", "viber": "Viber", "sms": "SMS"}


@dataclass(frozen=True)
class LinkOffer:
    codes: LinkCodes
    cid: str
    deep_links: Mapping[Channel, Callable[[str], str]]  # channel -> connector.deep_link


_OFFER: ContextVar[LinkOffer] = ContextVar("link_offer")


def bind(offer: LinkOffer) -> None:
    """Let `offer_links` issue codes for `offer.cid` in the current task, until bound again."""
    _OFFER.set(offer)


@action("offer_links")
async def offer_links(ctx: ActionContext) -> ActionResult:
    try:
        offer = _OFFER.get()
    except LookupError:
        raise RuntimeError("offer_links runs in the hub's worker, which binds a LinkOffer") from None
    code = await offer.codes.issue(offer.cid)
    lines = [f"{LABELS.get(ch, ch)}: {link(code)}" for ch, link in offer.deep_links.items() if ch != ctx.channel]
    return ActionResult(slots={"link_code": code, "link_list": "\n".join(lines)})
