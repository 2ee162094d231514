"""Is a team open now, and when does it open next: pure functions of its `BusinessHours` and a time.

Periods are wall-clock times in the team's zone, so "09:00" is nine in the morning on both sides
of a DST change; every comparison is made in UTC, because Python compares two datetimes of one zone
by their wall clocks and would get the hour around a change wrong. A period belongs to the day it
starts on: a holiday cancels the periods starting that day, and an overnight period started the
evening before still runs into it.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from bot.settings import WEEKDAYS, BusinessHours

LOOKAHEAD_DAYS = 400  # a year of holidays and a bit; past it a team is never open


def _clock(text: str) -> tuple[int, int]:
    hours, minutes = text.split(":")
    return int(hours), int(minutes)


def _at(day: date, hhmm: str, zone: ZoneInfo) -> datetime:
    hours, minutes = _clock(hhmm)
    if hours == 24:
        return datetime.combine(day + timedelta(days=1), time(0, minutes), zone).astimezone(UTC)
    return datetime.combine(day, time(hours, minutes), zone).astimezone(UTC)


def periods_starting(hours: BusinessHours, day: date) -> Iterator[tuple[datetime, datetime]]:
    """The (start, end) in UTC of each period that starts on `day` (a local date) — none on a holiday."""
    if hours.week is None or day in hours.holidays:
        return
    zone = ZoneInfo(hours.timezone)
    for period in hours.week.get(WEEKDAYS[day.weekday()], []):  # type: ignore[call-overload]
        first, last = period.split("-")
        start, end = _at(day, first, zone), _at(day, last, zone)
        if end <= start:  # past midnight: it ends on the next day
            end = _at(day + timedelta(days=1), last, zone)
        yield start, end


def is_open(hours: BusinessHours, now: datetime) -> bool:
    """Whether `now` (aware) falls in one of the team's periods."""
    if hours.week is None:
        return True
    now = now.astimezone(UTC)
    today = now.astimezone(ZoneInfo(hours.timezone)).date()
    return any(start <= now < end
               for day in (today - timedelta(days=1), today)
               for start, end in periods_starting(hours, day))


def next_open(hours: BusinessHours, now: datetime) -> datetime:
    """`now` if the team is open, else the start of its next period (UTC). ValueError if there is none
    within `LOOKAHEAD_DAYS` (every day a holiday)."""
    if is_open(hours, now):
        return now
    now = now.astimezone(UTC)
    today = now.astimezone(ZoneInfo(hours.timezone)).date()
    for offset in range(LOOKAHEAD_DAYS):
        starts = [start for start, _ in periods_starting(hours, today + timedelta(days=offset)) if start > now]
        if starts:
            return min(starts)
    raise ValueError(f"the team does not open within {LOOKAHEAD_DAYS} days")
