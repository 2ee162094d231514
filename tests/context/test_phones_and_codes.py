"""Phone normalisation, and one-time link codes on a real Redis: valid, expired, reused, guessed."""

from __future__ import annotations

import asyncio

import pytest
from redis.asyncio import Redis

from bot.context import keys
from bot.context.links import LinkCodes, as_code, new_code
from bot.context.phones import BadPhone, normalise


@pytest.mark.parametrize(
    "raw", ["89991234567", "+7 999 123-45-67", "whatsapp:+79991234567", "79991234567", "8 (999) 123 45 67"]
)
def test_every_spelling_of_a_russian_number_meets(raw: str) -> None:
    assert normalise(raw, "RU") == "+79991234567"


def test_foreign_numbers_without_a_plus_are_read_as_international() -> None:
    assert normalise("380501234567", "RU") == "+380501234567"  # how Telegram shares a Ukrainian number
    assert normalise("+1 415 555 2671", "RU") == "+14155552671"


@pytest.mark.parametrize("raw", ["", "abc", "123", "+7", "call me"])
def test_what_is_not_a_number_is_refused(raw: str) -> None:
    with pytest.raises(BadPhone, match="not a phone number"):
        normalise(raw, "RU")


def test_codes_mix_letters_and_digits_so_words_and_order_numbers_are_never_codes() -> None:
    assert all(as_code(new_code()) for _ in range(200))
    assert as_code(" k7m2qa ") == "K7M2QA"
    for text in ("104582", "HELLO!", "PLEASE", "K7M2Q", "K7M2QA1", "K0M2QA", None, ""):
        assert as_code(text) is None, text


async def test_a_code_works_once_and_names_its_contact(redis: Redis) -> None:
    codes = LinkCodes(redis)
    code = await codes.issue("c-ann")
    assert await redis.hget(keys.contact("c-ann"), "lc") == code
    first = await codes.redeem(code, "whatsapp", "+79990000001")
    assert (first.status, first.contact) == ("ok", "c-ann")
    assert (await codes.redeem(code, "viber", "v-1")).status == "used"
    assert "c-ann" not in str(await redis.get(keys.link_code(code)))  # a used code names nobody


async def test_two_identities_racing_for_one_code_cannot_both_win(redis: Redis) -> None:
    codes = LinkCodes(redis)
    code = await codes.issue("c-ann")
    results = await asyncio.gather(*(codes.redeem(code, "telegram", str(n)) for n in range(20)))
    assert sorted(r.status for r in results) == ["ok"] + ["used"] * 19


async def test_an_expired_code_says_so_and_a_new_code_retires_the_old_one(redis: Redis) -> None:
    codes = LinkCodes(redis, ttl=0)
    code = await codes.issue("c-ann")
    await asyncio.sleep(0.01)
    assert (await codes.redeem(code, "sms", "+79990000001")).status == "expired"

    live = LinkCodes(redis)
    old, new = await live.issue("c-bob"), await live.issue("c-bob")
    assert (await live.redeem(old, "sms", "+79990000002")).status == "unknown"
    assert (await live.redeem(new, "sms", "+79990000002")).status == "ok"


async def test_five_wrong_codes_lock_that_identity_only_for_the_window(redis: Redis) -> None:
    codes = LinkCodes(redis, max_tries=5, window=1)
    good = await codes.issue("c-ann")
    for n in range(5):
        assert (await codes.redeem(f"ZZZZZ{n + 2}", "telegram", "666")).status == "unknown"
    assert (await codes.redeem(good, "telegram", "666")).status == "locked"  # even the right one
    assert 0 < await redis.ttl(keys.link_tries("telegram", "666")) <= 1
    await asyncio.sleep(1.1)
    assert (await codes.redeem(good, "telegram", "666")).status == "ok"
