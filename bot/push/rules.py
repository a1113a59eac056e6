"""The rules that keep pushes from spamming: quiet hours, the daily cap's day, reminder times.

Times are aware datetimes in UTC; each rule reads the wall clock of the group's time zone.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta, tzinfo

from bot.sop.format import format_duration, parse_duration

_WINDOW = re.compile(r"^\s*([01]?\d|2[0-3]):([0-5]\d)\s*-\s*([01]?\d|2[0-3]):([0-5]\d)\s*$")
OFF = ("off", "none", "0")
AT_START = ("start", "0", "0s", "0m")


@dataclass(frozen=True, slots=True)
class QuietHours:
    """A daily window of the group's wall clock in which nothing is pushed; may wrap midnight."""

    start: time
    end: time

    @classmethod
    def parse(cls, text: str) -> QuietHours | None:
        """`22:00-08:00` → the window; `off` → None; anything else → ValueError."""
        if text.strip().lower() in OFF:
            return None
        match = _WINDOW.match(text)
        if match is None:
            raise ValueError(f"{text!r} is not a window of quiet hours; write it like 22:00-08:00")
        start = time(int(match[1]), int(match[2]))
        end = time(int(match[3]), int(match[4]))
        if start == end:
            raise ValueError("quiet hours must start and end at different times")
        return cls(start, end)

    def __str__(self) -> str:
        return f"{self.start:%H:%M}-{self.end:%H:%M}"

    def until(self, moment: datetime, zone: tzinfo) -> datetime | None:
        """When the quiet hours around `moment` end (UTC), or None if it is not quiet then."""
        local = moment.astimezone(zone)
        now = local.time().replace(tzinfo=None)
        day = local.date()
        if self.start < self.end:
            if not self.start <= now < self.end:
                return None
        elif self.end <= now < self.start:
            return None
        elif now >= self.start:
            day += timedelta(days=1)
        return datetime.combine(day, self.end, tzinfo=zone).astimezone(UTC)


def day_start(moment: datetime, zone: tzinfo) -> datetime:
    """Midnight of `moment`'s day on the group's wall clock, in UTC."""
    local = moment.astimezone(zone)
    return datetime.combine(local.date(), time(0), tzinfo=zone).astimezone(UTC)


def next_day(moment: datetime, zone: tzinfo) -> datetime:
    """Midnight after `moment` on the group's wall clock, in UTC."""
    local = moment.astimezone(zone)
    return datetime.combine(local.date() + timedelta(days=1), time(0), tzinfo=zone).astimezone(UTC)


def parse_before(value: str) -> timedelta:
    """A reminder's time before the start: `1d`, `1h`, `10m`, or `start` (0)."""
    if value.strip().lower() in AT_START:
        return timedelta(0)
    return parse_duration(value)


def before_text(delta: timedelta) -> str:
    """The inverse of parse_before, as stored: `1d`, `10m`, `0s`."""
    return format_duration(delta)


def reminder_at(starts_at: datetime, zone: tzinfo, before: timedelta) -> datetime:
    """When a reminder `before` the start goes: whole days on the wall clock, the rest in time.

    A live at 20:00 has its "1 day before" reminder at 20:00 the day before, even when a
    daylight-saving change makes that day 23 or 25 hours long.
    """
    days = timedelta(days=before.days)
    wall = starts_at.astimezone(zone).replace(tzinfo=None) - days
    return wall.replace(tzinfo=zone).astimezone(UTC) - (before - days)
