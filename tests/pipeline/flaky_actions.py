"""The `flaky` dialog action: "fail N <tag>" fails the first N tries of that tag, "poison" every try."""

from __future__ import annotations

from collections import Counter

from bot.dialogue import ActionContext, ActionResult, RetryLater, action

TRIES: Counter[str] = Counter()  # tries per tag, in this process (the hub runs in the test's process)


@action("flaky")
async def flaky(ctx: ActionContext) -> ActionResult:
    said = ctx.slots.get("said", "")
    words = said.split()
    if said == "poison":
        raise RetryLater("the CRM is down (always, for this message)")
    if len(words) == 3 and words[0] == "fail" and words[1].isdigit():
        TRIES[words[2]] += 1
        if TRIES[words[2]] <= int(words[1]):
            raise RetryLater(f"try {TRIES[words[2]]} of {words[2]} fails")
    return ActionResult()
