"""The demo shop's order lookup: a fake, deterministic status so demos and tests can count on it.

`dialogs/shop.yaml` imports this module, which registers the action and the validator it uses.
"""

from __future__ import annotations

import re

from bot.dialogue.actions import ActionContext, ActionResult, action, validator

# Status by the last digit of the order number: 0–3 on the way, 4–6 delivered, 7–9 being packed.
_STATES = ("in_transit",) * 4 + ("delivered",) * 3 + ("packing",) * 3
_DECORATION = re.compile(r"[\s#№-]+")


@validator("order_number")
def order_number(answer: str) -> str | None:
    """Customers write "#12345" or "№ 12-345"; keep the digits' shape, drop the decoration."""
    return _DECORATION.sub("", answer) or None


@action("lookup_order")
async def lookup_order(ctx: ActionContext) -> ActionResult:
    state = _STATES[int(ctx.slots["order_id"][-1])]
    return ActionResult(slots={"order_state": state}, text_key=f"order_{state}")
