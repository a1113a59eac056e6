"""Check-in days and streaks: day boundaries, daylight saving, time-zone changes, grace."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bot.checkin.days import Streak, checkin_day, next_streak, streak_of

SHANGHAI = ZoneInfo("Asia/Shanghai")
NEW_YORK = ZoneInfo("America/New_York")  # daylight saving 2026: Mar 8 and Nov 1
LOS_ANGELES = ZoneInfo("America/Los_Angeles")


def local(zone: ZoneInfo, year: int, month: int, day: int, hour: int, minute: int) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=zone)


def test_a_late_night_check_in_counts_for_the_evening_before():
    assert checkin_day(local(SHANGHAI, 2026, 11, 24, 1, 30), SHANGHAI, 4) == date(2026, 11, 23)
    assert checkin_day(local(SHANGHAI, 2026, 11, 24, 3, 59), SHANGHAI, 4) == date(2026, 11, 23)
    assert checkin_day(local(SHANGHAI, 2026, 11, 24, 4, 0), SHANGHAI, 4) == date(2026, 11, 24)
    assert checkin_day(local(SHANGHAI, 2026, 11, 24, 0, 0), SHANGHAI) == date(2026, 11, 24)
    # The same instant, seen from UTC: 2026-11-23 20:00 UTC is 04:00 on the 24th in Shanghai.
    assert checkin_day(datetime(2026, 11, 23, 20, tzinfo=UTC), SHANGHAI, 4) == date(2026, 11, 24)


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="start_hour"):
        checkin_day(datetime.now(UTC), SHANGHAI, 24)
    with pytest.raises(ValueError, match="aware"):
        checkin_day(datetime(2026, 1, 1, tzinfo=UTC).replace(tzinfo=None), SHANGHAI)


@pytest.mark.parametrize("start_hour", [0, 4])
def test_days_begin_at_the_same_wall_clock_hour_across_daylight_saving(start_hour: int):
    # Check in every day at the start hour plus ten minutes, across both of 2026's changes.
    for first in (date(2026, 3, 5), date(2026, 10, 29)):
        streak: Streak | None = None
        for n in range(7):
            day = first + timedelta(days=n)
            at = local(NEW_YORK, day.year, day.month, day.day, start_hour, 10)
            assert checkin_day(at, NEW_YORK, start_hour) == day
            just_before = at - timedelta(minutes=11)
            assert checkin_day(just_before, NEW_YORK, start_hour) == day - timedelta(days=1)
            streak = next_streak(streak, checkin_day(at, NEW_YORK, start_hour))
            assert streak is not None
        assert streak is not None and streak.length == 7, "a 23- or 25-hour day breaks nothing"


def test_the_repeated_hour_of_autumn_is_one_day():
    # 2026-11-01 01:30 happens twice in New York; both count for Oct 31 with days from 04:00.
    first = datetime(2026, 11, 1, 5, 30, tzinfo=UTC)  # 01:30 EDT
    second = first + timedelta(hours=1)  # 01:30 EST
    assert checkin_day(first, NEW_YORK, 4) == checkin_day(second, NEW_YORK, 4) == date(2026, 10, 31)
    streak = next_streak(None, checkin_day(first, NEW_YORK, 4))
    assert next_streak(streak, checkin_day(second, NEW_YORK, 4)) is None, "one check-in a day"


def test_a_group_moving_west_gives_no_second_check_in_the_same_day():
    # 23:00 in Shanghai on the 23rd; the group moves to Los Angeles; an hour later it is
    # 08:00 on the 23rd there: that day has had its check-in.
    at = datetime(2026, 11, 23, 15, tzinfo=UTC)
    streak = next_streak(None, checkin_day(at, SHANGHAI, 4))
    later = checkin_day(at + timedelta(hours=1), LOS_ANGELES, 4)
    assert later == date(2026, 11, 23)
    assert next_streak(streak, later) is None


def test_a_group_moving_east_goes_on_with_the_streak():
    # 20:00 in Los Angeles on the 23rd; the group moves to Shanghai, where it is soon the 24th.
    at = datetime(2026, 11, 24, 4, tzinfo=UTC)
    streak = next_streak(next_streak(None, date(2026, 11, 22)), checkin_day(at, LOS_ANGELES, 4))
    assert streak == Streak(date(2026, 11, 23), 2, 0)
    moved = checkin_day(at + timedelta(hours=1), SHANGHAI, 4)
    assert moved == date(2026, 11, 24)
    assert next_streak(streak, moved) == Streak(date(2026, 11, 24), 3, 0)


def test_freezes_cover_missed_days_per_month():
    jan = [date(2026, 1, d) for d in (1, 2, 4, 6)]  # missed the 3rd and the 5th
    assert streak_of(jan, freezes=2) == Streak(date(2026, 1, 6), 4, 2)
    assert streak_of(jan, freezes=1) == Streak(date(2026, 1, 6), 1, 0), "the 5th was one too many"
    assert streak_of([*jan, date(2026, 1, 8)], freezes=2) == Streak(date(2026, 1, 8), 1, 0)
    # Missing Jan 31 and Feb 1 takes one freeze from each month.
    turn = [date(2026, 1, 30), date(2026, 2, 2), date(2026, 2, 4)]
    assert streak_of(turn, freezes=1) == Streak(date(2026, 2, 4), 1, 0)
    assert streak_of(turn[:2], freezes=1) == Streak(date(2026, 2, 2), 2, 1)
    assert streak_of(turn, freezes=2) == Streak(date(2026, 2, 4), 3, 2)
    # A new month has its freezes again.
    assert streak_of([date(2026, 1, 29), date(2026, 1, 31), date(2026, 2, 2)], 1) == Streak(
        date(2026, 2, 2), 3, 1
    )
    with pytest.raises(ValueError):
        next_streak(None, date(2026, 1, 1), freezes=-1)


def simulate(days: set[date], freezes: int) -> int:
    """The streak length by walking every calendar day: the rule, told another way."""
    length, used = 0, dict[tuple[int, int], int]()
    day, last = min(days), max(days)
    while day <= last:
        month = (day.year, day.month)
        if day in days:
            length += 1
        elif length:
            used[month] = used.get(month, 0) + 1
            if used[month] > freezes:
                length, used = 0, {}
        day += timedelta(days=1)
        if length == 0:
            used = {}
    return length


@given(
    st.sets(st.dates(date(2025, 12, 1), date(2026, 3, 31)), min_size=1, max_size=60),
    st.integers(0, 4),
)
def test_streaks_agree_with_a_day_by_day_walk(days: set[date], freezes: int):
    streak = streak_of(list(days), freezes)
    assert streak is not None and streak.day == max(days)
    assert streak.length == simulate(days, freezes)
    assert 1 <= streak.length <= len(days)
    run, day = 0, max(days)
    while day in days:
        run, day = run + 1, day - timedelta(days=1)
    assert streak.length >= run, "days in a row at the end always count"
    # (More grace can still end with a shorter streak: a month's freezes spent on an early gap
    # are missing for a later one, where less grace had started afresh.)


@given(
    st.datetimes(
        datetime(2025, 1, 1, tzinfo=UTC).replace(tzinfo=None),
        datetime(2027, 12, 31, tzinfo=UTC).replace(tzinfo=None),
        timezones=st.just(UTC),
    ),
    st.sampled_from([SHANGHAI, NEW_YORK, LOS_ANGELES, ZoneInfo("Europe/London")]),
    st.integers(0, 23),
)
def test_a_day_changes_only_at_its_start_hour(at: datetime, zone: ZoneInfo, start_hour: int):
    day = checkin_day(at, zone, start_hour)
    wall = at.astimezone(zone)
    assert day in (wall.date(), wall.date() - timedelta(days=1))
    assert (day == wall.date()) == (wall.hour >= start_hour)
