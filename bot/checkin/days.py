"""Which day a check-in counts for, and how streaks go on from day to day.

A check-in day is a date in the group's time zone that begins at `start_hour` on the wall clock:
with 04:00, a check-in at 01:30 on Tuesday counts for Monday. Going by the wall clock keeps the
start at 04:00 through a daylight-saving change, when that day is 23 or 25 hours long.

Each check-in stores the day it counted for. A group that changes its time zone changes the day
of check-ins to come, never of those made: a day that has already had its check-in, or an
earlier one (after a move west), gets no second.

A streak counts check-in days in a row. A group may allow `freezes` missed days per calendar
month (the month of the missed day) that do not break it; a frozen day does not add to the
streak. A gap with more missed days in some month than that starts the streak again at 1, with
the month's freezes whole again for the new streak.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo


def checkin_day(at: datetime, zone: ZoneInfo, start_hour: int = 0) -> date:
    """The day a check-in at `at` (aware) counts for, in `zone`, days beginning at `start_hour`."""
    if not 0 <= start_hour <= 23:
        raise ValueError(f"start_hour must be 0-23, not {start_hour}")
    if at.tzinfo is None:
        raise ValueError("checkin_day needs an aware datetime")
    wall = at.astimezone(zone).replace(tzinfo=None)
    return (wall - timedelta(hours=start_hour)).date()


@dataclass(frozen=True, slots=True)
class Streak:
    """Where a member's streak stands after a check-in on `day`."""

    day: date
    length: int  # check-in days in the streak, this one included
    frozen_this_month: int  # missed days of `day`'s month that the streak got over


def first_streak(day: date) -> Streak:
    return Streak(day, 1, 0)


def next_streak(last: Streak | None, day: date, freezes: int = 0) -> Streak | None:
    """The streak after a check-in on `day`, given the member's last one; None when `day` has
    had its check-in already (or comes before the last, after a time-zone move west)."""
    if freezes < 0:
        raise ValueError("freezes must be 0 or more")
    if last is None:
        return first_streak(day)
    if day <= last.day:
        return None
    used: dict[tuple[int, int], int] = {(last.day.year, last.day.month): last.frozen_this_month}
    missed = last.day + timedelta(days=1)
    while missed < day:
        month = (missed.year, missed.month)
        used[month] = used.get(month, 0) + 1
        if used[month] > freezes:
            return first_streak(day)
        missed += timedelta(days=1)
    return Streak(day, last.length + 1, used.get((day.year, day.month), 0))


def streak_of(days: list[date], freezes: int = 0) -> Streak | None:
    """The streak after these check-in days (in any order; repeats count once)."""
    streak: Streak | None = None
    for day in sorted(set(days)):
        streak = next_streak(streak, day, freezes) or streak
    return streak
