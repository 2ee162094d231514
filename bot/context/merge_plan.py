"""How two contacts become one: the rules, as a pure function of what was read from Redis.

- **History** and the **consent trail**: the two lists interleaved by `at` (survivor's first on ties),
  each keeping its own order, the newest `cap` kept — one time-ordered history. Each list's own
  order is kept rather than re-sorted because `at` may lose its last digits when a Lua script
  rewrites an entry (cjson keeps 14 significant digits), which would put a reply before its question.
- **Conversation** (dialog state, mode, where replies go): the one with the latest `at` — the flow the
  customer was in last continues. `last` (the survivor's replay marker) always stays the
  survivor's: it names an entry of the survivor's partition stream, and the absorbed one's would make
  the survivor skip its own pending entries.
- **Profile**: identities (`i:`), tags (`t:`), extra phones (`p:`) and absorbed ids (`m:`) are
  unioned; `created` and first-seen times take the earliest, `seen:<channel>` the latest; every other
  field (name, language, phone, preferred channel, attributes) comes from the more recently active
  contact. Consent is the exception: "out" on either side stays "out" — a refusal is never lost to a
  merge. The losing main phone stays as `p:<phone>`, so its index key is still accounted for.
- **Undo**: the absorbed contact's tombstone keeps its original profile and the fields it brought to
  the survivor (`moved`), which is what `unmerge` gives back.

A *fold* is the same merge applied to a tombstone that received late writes (a turn that loaded the
contact before the merge and committed after): those writes are newer than anything, so they
overlay the survivor's, and the tombstone's undo record is kept as it was.
"""

from __future__ import annotations

import heapq
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import orjson

from bot.context.store import LAST_BULK

TOMBSTONE = ("merged_into", "merged_at", "undo")
MERGING = "merging_into"  # the mark of a merge under way (bot.context.journal), never carried over
MODE_SINCE = "ms"  # bot.context.indexes: the survivor's mode entry is re-entered with a fresh score
Op = list[str | int]  # a command whose second item is the 1-based index of the survivor's key (c v h consent dd)
UNION = ("i:", "t:", "p:", "m:")
EARLIEST = ("i:",)


@dataclass(frozen=True)
class Side:
    """One contact as read inside the merge's WATCH."""

    cid: str
    profile: Mapping[str, str]
    conversation: Mapping[str, str]
    history: Sequence[str]  # raw JSON entries, oldest first
    consent: Sequence[str]

    @property
    def merged_into(self) -> str | None:
        return self.profile.get("merged_into")

    @property
    def empty(self) -> bool:
        return not (self.profile or self.conversation or self.history)

    def recency(self) -> float:
        seen = [float(v) for k, v in self.profile.items() if k.startswith("seen:")]
        return max([float(self.conversation.get("at", 0)), *seen])


@dataclass(frozen=True)
class Plan:
    profile: dict[str, str]  # fields to set on the survivor (only those that change)
    conversation: dict[str, str] | None  # None: the survivor's stays
    replace_conversation: bool  # False: overlay (a fold)
    history: list[str] | None  # None: unchanged
    consent: list[str] | None
    mode: tuple[str, str] | None  # (old, new) of the survivor's conversation
    tombstone: dict[str, str]
    tags: list[str]  # the absorbed contact's tags, whose index entries move


def plan(s: Side, a: Side, now: float, history_cap: int, consent_cap: int) -> Plan:
    fold = a.merged_into is not None
    profile = _profile(s, a, fold, now)
    conversation = _conversation(s, a, fold)
    new_mode = (conversation or {}).get("mode")
    old_mode = s.conversation.get("mode", "")
    return Plan(
        profile={k: v for k, v in profile.items() if s.profile.get(k) != v},
        conversation=conversation,
        replace_conversation=not fold,
        history=by_time([s.history, a.history], history_cap) if a.history else None,
        consent=by_time([s.consent, a.consent], consent_cap) if a.consent else None,
        mode=(old_mode, new_mode) if new_mode and new_mode != old_mode else None,
        tombstone={k: a.profile[k] for k in TOMBSTONE if k in a.profile} if fold else _tombstone(s, a, profile, now),
        tags=[k[2:] for k in a.profile if k.startswith("t:")],
    )


def by_time(lists: Sequence[Sequence[str]], cap: int) -> list[str]:
    """Raw JSON entries of time-ordered lists (history entries, consent rows: both have `at`),
    interleaved by `at`; the newest `cap` kept."""
    return list(heapq.merge(*lists, key=lambda e: float(orjson.loads(e)["at"])))[-cap:]


def _profile(s: Side, a: Side, fold: bool, now: float) -> dict[str, str]:
    strays = {k: v for k, v in a.profile.items() if k not in TOMBSTONE and k != MERGING}
    older, newer = (s.profile, strays) if fold or a.recency() > s.recency() else (strays, s.profile)
    merged = {**older, **newer}
    for name in older.keys() & newer.keys():
        pair = (older[name], newer[name])
        if name == "created" or name.startswith(EARLIEST):
            merged[name] = min(pair, key=float)
        elif name.startswith("seen:"):
            merged[name] = max(pair, key=float)
        elif name.startswith("cs:") and "out" in pair:
            merged[name] = "out"
    losing_phone = older.get("phone")
    if losing_phone and losing_phone != merged.get("phone"):
        merged[f"p:{losing_phone}"] = "1"
    merged[f"m:{a.cid}"] = merged.get(f"m:{a.cid}") or f"{now:.0f}"
    return merged


def _conversation(s: Side, a: Side, fold: bool) -> dict[str, str] | None:
    theirs = {k: v for k, v in a.conversation.items() if k not in ("last", LAST_BULK, MODE_SINCE)}
    if not theirs:
        return None
    if fold:
        return theirs
    if s.conversation and _keeps(s.conversation, a.conversation):
        return None
    for lane_last in ("last", LAST_BULK):
        if lane_last in s.conversation:
            theirs[lane_last] = s.conversation[lane_last]
    return theirs


def _keeps(ours: Mapping[str, str], theirs: Mapping[str, str]) -> bool:
    """Whether the survivor's conversation goes on: one a person has (queued or with an agent) wins
    over one with the bot — a customer who links a new chat mid-handoff stays with their agent —
    and otherwise the more recent one."""
    ours_held, theirs_held = (c.get("mode") in ("queued", "assigned") for c in (ours, theirs))
    if ours_held != theirs_held:
        return ours_held
    return float(theirs.get("at", 0)) <= float(ours.get("at", 0))


def _tombstone(s: Side, a: Side, merged: Mapping[str, str], now: float) -> dict[str, str]:
    undo = {
        "profile": {k: v for k, v in a.profile.items() if k != MERGING},
        "moved": sorted(k for k in merged if k.startswith(UNION) and k not in s.profile),
        "phone_before": s.profile.get("phone"),
    }
    return {"merged_into": s.cid, "merged_at": f"{now:.3f}", "undo": orjson.dumps(undo).decode()}


def ops(p: Plan, dedupes: Sequence[tuple[str, float]], dedupe_ttl: int, since: float) -> list[Op]:
    """The plan as commands on the survivor's keys, for one script (bot.context.journal `apply`)."""
    found: list[Op] = []
    if p.profile:
        found.append(["HSET", 1, *_flat(p.profile)])
    if p.conversation is not None:
        conversation = {**p.conversation, MODE_SINCE: repr(since)} if p.replace_conversation else p.conversation
        found += [["DEL", 2]] if p.replace_conversation else []
        found.append(["HSET", 2, *_flat(conversation)])
    for index, entries in ((3, p.history), (4, p.consent)):
        if entries is not None:
            found.append(["DEL", index])
            found += [["RPUSH", index, *entries]] if entries else []
    if dedupes:
        found.append(["ZADD", 5, "GT", *(x for member, score in dedupes for x in (repr(score), member))])
        found.append(["EXPIRE", 5, str(dedupe_ttl)])
    return found


def _flat(mapping: Mapping[str, str]) -> list[str | int]:
    return [x for pair in mapping.items() for x in pair]
