"""Business hours as pure functions: several periods a day, past midnight, holidays, DST."""

from __future__ import annotations

from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

import pytest

from bot.handoff.hours import is_open, next_open
from bot.settings import BusinessHours

BERLIN = ZoneInfo("Europe/Berlin")
OFFICE = BusinessHours(timezone="Europe/Berlin", week={
    "mon": ["09:00-13:00", "14:00-18:00"], "tue": ["09:00-13:00", "14:00-18:00"],
    "fri": ["22:00-02:00"],
}, holidays=[date(2027, 1, 5)])  # Tuesday 5 January 2027


def local(*args: int) -> datetime:
    return datetime(*args, tzinfo=BERLIN)  # type: ignore[misc]


def test_around_the_clock_without_a_week() -> None:
    always = BusinessHours()
    assert is_open(always, datetime(2027, 1, 3, 3, 0, tzinfo=UTC))
    now = datetime(2027, 1, 3, 3, 0, tzinfo=UTC)
    assert next_open(always, now) == now


@pytest.mark.parametrize(("moment", "expected"), [
    (local(2027, 1, 4, 8, 59), False),
    (local(2027, 1, 4, 9, 0), True),
    (local(2027, 1, 4, 12, 59), True),
    (local(2027, 1, 4, 13, 0), False),  # lunch: the end of a period is not in it
    (local(2027, 1, 4, 13, 30), False),
    (local(2027, 1, 4, 14, 0), True),
    (local(2027, 1, 4, 18, 0), False),
    (local(2027, 1, 6, 10, 0), False),  # Wednesday: no periods
])
def test_several_periods_a_day(moment: datetime, expected: bool) -> None:
    assert is_open(OFFICE, moment) is expected
    assert is_open(OFFICE, moment.astimezone(UTC)) is expected  # the zone of `now` does not matter


def test_overnight_period_runs_into_the_next_day() -> None:
    assert is_open(OFFICE, local(2027, 1, 8, 23, 30))  # Friday night
    assert is_open(OFFICE, local(2027, 1, 9, 1, 59))  # Saturday small hours: Friday's period
    assert not is_open(OFFICE, local(2027, 1, 9, 2, 0))
    assert not is_open(OFFICE, local(2027, 1, 8, 1, 0))  # Friday small hours: Thursday has none


def test_holiday_cancels_the_periods_starting_that_day() -> None:
    assert not is_open(OFFICE, local(2027, 1, 5, 10, 0))
    assert next_open(OFFICE, local(2027, 1, 5, 10, 0)) == local(2027, 1, 8, 22, 0).astimezone(UTC)


def test_next_open_is_the_next_period_start() -> None:
    assert next_open(OFFICE, local(2027, 1, 4, 13, 15)) == local(2027, 1, 4, 14, 0).astimezone(UTC)
    # Monday evening: Tuesday is a holiday, so Friday night is next
    assert next_open(OFFICE, local(2027, 1, 4, 19, 0)) == local(2027, 1, 8, 22, 0).astimezone(UTC)
    now = local(2027, 1, 4, 10, 0)
    assert next_open(OFFICE, now) == now


def test_wall_clock_hours_across_daylight_saving() -> None:
    # Berlin springs forward on Sunday 28 March 2027 (02:00 -> 03:00) and falls back on 31 October
    daily = BusinessHours(timezone="Europe/Berlin",
                          week={d: ["09:00-17:00"] for d in ("sat", "sun", "mon")})  # type: ignore[misc]
    assert is_open(daily, datetime(2027, 3, 27, 8, 30, tzinfo=UTC))  # 09:30 CET (UTC+1)
    assert not is_open(daily, datetime(2027, 3, 28, 6, 30, tzinfo=UTC))  # 08:30 CEST (UTC+2)
    assert is_open(daily, datetime(2027, 3, 28, 7, 0, tzinfo=UTC))  # 09:00 CEST
    assert next_open(daily, datetime(2027, 3, 28, 6, 0, tzinfo=UTC)) == datetime(2027, 3, 28, 7, 0, tzinfo=UTC)
    assert next_open(daily, datetime(2027, 10, 30, 20, 0, tzinfo=UTC)) == datetime(2027, 10, 31, 8, 0, tzinfo=UTC)


def test_overnight_period_across_the_autumn_change() -> None:
    # Saturday 30 October 2027 22:00 CEST (UTC+2) to Sunday 04:00 CET (UTC+1): seven hours, not six
    night = BusinessHours(timezone="Europe/Berlin", week={"sat": ["22:00-04:00"]})
    assert not is_open(night, datetime(2027, 10, 30, 19, 59, tzinfo=UTC))
    assert is_open(night, datetime(2027, 10, 30, 20, 0, tzinfo=UTC))
    assert is_open(night, datetime(2027, 10, 31, 2, 59, tzinfo=UTC))  # 03:59 CET
    assert not is_open(night, datetime(2027, 10, 31, 3, 0, tzinfo=UTC))  # 04:00 CET


def test_a_team_closed_for_good_has_no_next_opening() -> None:
    hours = BusinessHours(week={"mon": ["09:00-10:00"]},
                          holidays=[date(2027, 1, 4) + (date(2027, 1, 11) - date(2027, 1, 4)) * i for i in range(60)])
    with pytest.raises(ValueError, match="does not open"):
        next_open(hours, datetime(2027, 1, 3, tzinfo=UTC))
