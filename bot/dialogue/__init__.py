"""Dialogue engine: dialogs are YAML data (`dialogs/*.yaml`, format in `dialogs/README.md`);
`Engine.respond` answers one customer turn and leaves persistence to the caller.
"""

from bot.dialogue.actions import ActionContext, ActionResult, RetryLater, action, validator
from bot.dialogue.engine import Engine
from bot.dialogue.errors import DialogError
from bot.dialogue.turn import DialogState, Turn, TurnResult

__all__ = [
    "ActionContext",
    "ActionResult",
    "DialogError",
    "DialogState",
    "Engine",
    "RetryLater",
    "Turn",
    "TurnResult",
    "action",
    "validator",
]
