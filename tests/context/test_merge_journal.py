"""The journaled merge: a merger that dies between any two steps leaves a journal that the sweeper
replays to the very result of an uninterrupted merge; a turn that commits on the absorbed contact
in the middle of a merge is not lost."""

from __future__ import annotations

from typing import Any

import pytest

from bot.context import keys
from bot.context.history import HistoryEntry
from bot.context.journal import Journal
from bot.context.store import Changes
from tests.context.conftest import Parts
from tests.context.leftovers import FEED_PREFIXES, values
from tests.context.test_merge import two_contacts

VOLATILE_FIELDS = ("merged_at=", "m:tg=", "ms=", "tg=")  # "tg=": the journal id applied to wa
STOPS = ("begin", "apply", "seal", "indexes")


async def state(parts: Parts) -> dict[str, Any]:
    """Every key and its values, without the clock's digits (merge times, mode scores, event ids)."""
    found: dict[str, Any] = {}
    async for key in parts.redis.scan_iter(count=1000):
        if key.startswith(FEED_PREFIXES):  # how many events, whatever their ids
            prefix = next(p for p in FEED_PREFIXES if key.startswith(p))
            found[prefix] = found.get(prefix, 0) + len(await values(parts.redis, key))
            continue
        kept = [v for v in await values(parts.redis, key) if not v.startswith(VOLATILE_FIELDS)]
        found[key] = sorted(v.split('"merged_at"')[0] for v in kept)
    return found


async def merge_until(parts: Parts, stop: str) -> Journal:
    """The steps of `Merger.merge` up to `stop`, then nothing: the merger died there."""
    merger = parts.merger
    journal = await merger._begin("merge", "wa", "tg", "test", ())
    if stop == "begin":
        return journal
    a = await merger.steps.read("tg", copy=True)
    tombstone = await merger._apply_merge(journal, a)
    if stop == "apply":
        return journal
    await merger.steps.seal(journal, tombstone, restore=False)
    if stop == "seal":
        return journal
    await merger._indexes(journal, {k: v for k, v in a.profile.items() if not k.startswith("merg")}, "tg", "wa", None)
    return journal


def late_turn() -> Changes:
    """What a turn on the absorbed contact writes: an attribute and one message."""
    return Changes(profile={"a:color": "red"}, history=[HistoryEntry(
        id="late", channel="telegram", direction="in", at=40.0, author="customer", text="late")])


async def test_an_uninterrupted_merge_leaves_no_journal(parts: Parts) -> None:
    await two_contacts(parts)
    await parts.merger.merge("wa", "tg", "test")
    assert not await parts.redis.exists(keys.journal("tg"), keys.JOURNALS, *(
        keys.journal_copy("tg", part) for part in ("c", "v", "h", "consent", "dd")))
    assert await parts.merger.sweep(older_than=0) == 0


@pytest.mark.parametrize("stop", STOPS)
async def test_a_merge_cut_short_after_any_step_is_finished_by_the_sweeper(parts: Parts, stop: str) -> None:
    await two_contacts(parts)
    await parts.merger.merge("wa", "tg", "test")
    expected = await state(parts)
    await parts.redis.flushdb()

    await two_contacts(parts)
    await merge_until(parts, stop)
    assert await parts.redis.exists(keys.journal("tg"))
    assert await parts.identities.live("tg") == "wa"  # meanwhile tg's events go to the survivor
    assert await parts.merger.sweep(older_than=60) == 0  # a fresh journal may still be finished by its merger
    assert await parts.merger.sweep(older_than=0) == 1
    assert await state(parts) == expected


async def test_a_turn_committed_on_the_absorbed_contact_during_the_merge_is_folded(parts: Parts) -> None:
    await two_contacts(parts)
    journal = await merge_until(parts, "begin")
    late = late_turn()
    existed, merged_into = await parts.store.commit("tg", late)  # loaded before `begin`, commits after it
    assert (existed, merged_into) == (True, "wa")
    await parts.merger.replay(journal)

    assert await parts.redis.hget(keys.contact("wa"), "a:color") == "red"
    _, history = await parts.store.history("wa", 0, 100)
    assert [e.text for e in history][-1] == "late" and len(history) == 5
    assert set(await parts.redis.hgetall(keys.contact("tg"))) == {"merged_into", "merged_at", "undo"}
    assert not await parts.redis.exists(keys.history("tg"), keys.journal("tg"))


@pytest.mark.parametrize("stop", STOPS)
async def test_a_turn_committed_after_any_step_is_folded_by_the_worker_that_wrote_it(parts: Parts, stop: str) -> None:
    """The worker's fold (its `settle`) may run while the merger is still between its steps: after
    `seal` the tombstone's strays are no longer counted by the merger, so the worker must fold them."""
    await two_contacts(parts)
    journal = await merge_until(parts, stop)
    late = late_turn()
    _, merged_into = await parts.store.commit("tg", late)
    assert merged_into == "wa"
    await parts.merger.fold("tg")  # what the worker's settle does
    await parts.merger.replay(journal)  # the merger, going on with its steps

    assert await parts.redis.hget(keys.contact("wa"), "a:color") == "red"
    _, history = await parts.store.history("wa", 0, 100)
    assert [e.text for e in history].count("late") == 1 and len(history) == 5
    assert set(await parts.redis.hgetall(keys.contact("tg"))) == {"merged_into", "merged_at", "undo"}
    assert not await parts.redis.exists(keys.history("tg"), keys.journal("tg"))
