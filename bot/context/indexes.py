"""The global indexes — contacts by conversation mode (`omni:conv:<mode>`), and the segment indexes
(`omni:{ix}:...`, see bot.context.keys): by tag, channel identity, consent state, language,
attribute value, and sorted by last seen, created and conversion totals — kept outside the
contact's MULTI, so that on Redis Cluster every MULTI stays on the contact's slot.

The contact's own hashes are the truth; an index is a *superset* of it. A writer adds the index
entry before the MULTI that makes it true and removes the old entry only after that MULTI, so a crash
in between leaves at most an extra entry, never a missing one; readers confirm every candidate
against the contact's hash (bot.api.conversations, the tag lookup in bot.api.contacts). A mode entry
is removed only if its score is still the one the contact recorded when it entered that mode
(`ms` on the conversation hash): a concurrent writer that re-entered the mode since has written a new
score, so its fresh entry is never taken away.

The segment indexes follow the same rule, driven by the profile fields a write sets and drops
(`entries`, `left`): what a write puts a contact in is entered before its MULTI; what it takes the
contact out of is left after it. Most entries only need the new fields: a tag, an identity, a
consent state (which also says which state set to leave), a date. Language and attribute values
replace an old value the writer may not know, so the MULTI reads those few fields (HMGET, before
its writes) and the old value's entry is left after it. What is left only on erase or merge, and
so may stay as an extra entry meanwhile: a channel whose identity or phone was removed, and a
range score that went down (the campaign step re-checks every recipient against the profile).
One writer per contact (the partition's worker) keeps an "after" from taking away a concurrent
writer's fresh entry, as for tags.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
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


CHANNELS = ("telegram", "whatsapp", "viber", "sms")
PURPOSES = ("service", "marketing")
CONSENT_STATES = ("in", "out")
SCORES = ("seen", "created", "cv:last", "cv:n", "cv:sum")
ATTRIBUTE_CAP = 100  # characters of an attribute value indexed; a longer value's entry is a superset


@dataclass
class Entries:
    """The index entries some profile fields put a contact in: set keys, and scores by zset name."""

    sets: set[str] = field(default_factory=set)
    scores: dict[str, float] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return bool(self.sets or self.scores)


def entries(profile: Mapping[str, str]) -> Entries:
    """What `profile` (a whole profile, or the fields one write sets) puts a contact in.

    A channel identity is an `i:<channel>:` field; a phone also counts as `sms` (any number takes an
    SMS), not as `whatsapp` (a number is no WhatsApp account until it writes from one)."""
    found = Entries({keys.EVERYONE} if profile else set())
    for name, value in profile.items():
        if name.startswith("t:"):
            found.sets.add(keys.tag(name[2:]))
        elif name.startswith("i:"):
            found.sets.add(keys.with_channel(name[2:].partition(":")[0]))
        elif name == "phone":
            found.sets.add(keys.with_channel("sms"))
        elif name.startswith("cs:") and value in CONSENT_STATES:
            channel, _, purpose = name[3:].partition(":")
            found.sets.add(keys.with_consent(channel, purpose, value))
        elif name.startswith("a:"):
            found.sets.add(keys.with_attribute(name[2:], value[:ATTRIBUTE_CAP]))
        elif name.startswith("seen:"):
            found.scores["seen"] = max(found.scores.get("seen", 0.0), float(value))
        elif name in SCORES:
            found.scores[name] = float(value)
    if language := profile.get("lang_set") or profile.get("lang"):
        found.sets.add(keys.with_language(language))
    return found


def replaced(written: Iterable[str]) -> list[str]:
    """The fields whose old values a write of `written` (set or dropped) must read in its MULTI."""
    written = set(written)
    names = {name for name in written if name.startswith("a:")}
    if written & {"lang", "lang_set"}:
        names |= {"lang", "lang_set"}
    return sorted(names)


def left(old: Mapping[str, str | None], written: Mapping[str, str], dropped: Collection[str]
         ) -> tuple[set[str], set[str]]:
    """(the set keys a contact leaves, those it joins) after a write that set `written` and dropped
    `dropped`; `old`: the values of `replaced(...)` as the write's MULTI read them (None: absent).
    A contact joins a key only after the MULTI when the write could not know it before: dropping a
    chosen language (`lang_set`) reveals the detected one."""
    before = {k: v for k, v in old.items() if v is not None}
    overwritten = {k: v for k, v in written.items() if k in old}
    after = {**before, **overwritten}
    for name in dropped:
        after.pop(name, None)
    now = entries(after).sets
    gone = (entries(before).sets | entries(overwritten).sets) - now
    revealed = now - entries(before).sets - entries(overwritten).sets - {keys.EVERYONE}
    for name in dropped:
        if name.startswith("t:"):
            gone.add(keys.tag(name[2:]))
        elif name.startswith("cs:"):
            channel, _, purpose = name[3:].partition(":")
            gone |= {keys.with_consent(channel, purpose, state) for state in CONSENT_STATES}
    for name, value in written.items():
        if name.startswith("cs:") and value in CONSENT_STATES:
            channel, _, purpose = name[3:].partition(":")
            gone.add(keys.with_consent(channel, purpose, "out" if value == "in" else "in"))
    gone.discard(keys.EVERYONE)
    return gone, revealed


def enter(pipe: Any, cid: str, found: Entries) -> None:
    """Queue `cid`'s entry in `found`; the last-seen score only moves forward (ZADD GT)."""
    for key in found.sets:
        pipe.sadd(key, cid)
    for name, score in found.scores.items():
        pipe.zadd(keys.ranked(name), {cid: score}, gt=name == "seen")


def leave(pipe: Any, cids: Collection[str], set_keys: Iterable[str]) -> None:
    for key in set_keys:
        pipe.srem(key, *cids)


def forget(pipe: Any, cids: Collection[str], profiles: Iterable[Mapping[str, str]]) -> None:
    """Queue: `cids` out of every segment index — the fixed ones, and those the profiles name (tags,
    languages, attribute values). Erase and merge call it for contacts that are gone."""
    fixed = {keys.EVERYONE, *(keys.with_channel(c) for c in CHANNELS)}
    fixed |= {keys.with_consent(c, p, s) for c in CHANNELS for p in PURPOSES for s in CONSENT_STATES}
    for profile in profiles:
        fixed |= entries(profile).sets
    leave(pipe, cids, sorted(fixed))
    for name in SCORES:
        pipe.zrem(keys.ranked(name), *cids)
