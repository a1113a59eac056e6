"""The bot's sense of time: the system clock, or one shifted by a file that tests can move."""

from __future__ import annotations

import math
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Protocol

SHIFT_REREAD = 0.05  # seconds between reads of the shift file


class Clock(Protocol):
    """Where the bot reads the time. `max_sleep` bounds any wait, so a moved clock is noticed."""

    max_sleep: float

    def now(self) -> datetime: ...


class SystemClock:
    """The real time."""

    max_sleep = math.inf

    def now(self) -> datetime:
        return datetime.now(UTC)


class ShiftedClock:
    """The real time plus the number of seconds written in a file (for end-to-end tests).

    A test writes `86400` into the file and the bot lives one day later, as the emulator's
    clock does when moved by the same amount. A missing or empty file means no shift.
    """

    max_sleep = 0.2

    def __init__(self, path: Path) -> None:
        self.path = path
        self._shift = timedelta(0)
        self._read_at = -math.inf

    def now(self) -> datetime:
        tick = time.monotonic()
        if tick - self._read_at >= SHIFT_REREAD:
            self._read_at = tick
            try:
                text = self.path.read_text().strip()
                self._shift = timedelta(seconds=float(text or 0))
            except (OSError, ValueError):
                self._shift = timedelta(0)
        return datetime.now(UTC) + self._shift


class ManualClock:
    """A clock that moves only when told to (unit tests and `tidepool simulate`)."""

    max_sleep = 0.01

    def __init__(self, start: datetime) -> None:
        self._now = start

    def now(self) -> datetime:
        return self._now

    def advance(self, delta: timedelta) -> None:
        self._now += delta

    def set(self, moment: datetime) -> None:
        self._now = moment


def clock_for(clock_file: Path | None) -> Clock:
    """The system clock, or the shifted clock of a test clock file (CLOCK_FILE)."""
    return ShiftedClock(clock_file) if clock_file else SystemClock()
