"""The global indexes — contacts by conversation mode (`omni:conv:<mode>`) and by tag
(`omni:tag:<tag>`) — kept outside the contact's MULTI, so that on Redis Cluster every MULTI stays on
the contact's slot.

The contact's own hashes are the truth; an index is a *superset* of it. A writer adds the index
entry before the MULTI that makes it true and removes the old entry only after that MULTI, so a crash
in between leaves at most an extra entry, never a missing one; readers confirm every candidate
against the contact's hash (bot.api.conversations, the tag lookup in bot.api.contacts). A mode entry
is removed only if its score is still the one the contact recorded when it entered that mode
(`ms` on the conversation hash): a concurrent writer that re-entered the mode since has written a new
score, so its fresh entry is never taken away.
"""

from __future__ import annotations

from typing import Any

from bot.context import keys

MODES = ("bot", "queued", "assigned", "resolved")
MODE_SINCE = "ms"  # conversation field: the score of the contact's entry in omni:conv:<mode>

_LEAVE = """
local score = redis.call('ZSCORE', KEYS[1], ARGV[1])
if score and (ARGV[2] == '' or tonumber(score) == tonumber(ARGV[2])) then
  return redis.call('ZREM', KEYS[1], ARGV[1])
end
return 0
"""


def enter_mode(pipe: Any, cid: str, mode: str, since: float) -> None:
    pipe.zadd(keys.by_mode(mode), {cid: since})


def leave_mode(pipe: Any, cid: str, mode: str, since: str | None) -> None:
    """Queue: drop `cid` from `mode`'s index if its entry still has the score `since` (any, if None)."""
    pipe.eval(_LEAVE, 1, keys.by_mode(mode), cid, since or "")


def tag(pipe: Any, cid: str, names: Any) -> None:
    for name in names:
        pipe.sadd(keys.tag(name), cid)


def untag(pipe: Any, cids: Any, names: Any) -> None:
    for name in names:
        pipe.srem(keys.tag(name), *cids)
