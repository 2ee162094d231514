"""Dialogue engine: dialogs are YAML data (`dialogs/*.yaml`, format in `dialogs/README.md`);
`Engine.respond` answers one customer turn and leaves persistence to the caller.
"""

from bot.dialogue.actions import ActionContext, ActionResult, action, validator
from bot.dialogue.engine import DialogState, Engine, Turn, TurnResult
from bot.dialogue.errors import DialogError

__all__ = [
    "ActionContext",
    "ActionResult",
    "DialogError",
    "DialogState",
    "Engine",
    "Turn",
    "TurnResult",
    "action",
    "validator",
]
