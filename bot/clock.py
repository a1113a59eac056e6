"""The bot's sense of time: the system clock, or one shifted by a file that tests can move."""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
import weakref
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Protocol

SHIFT_REREAD = 0.05  # seconds between reads of the shift file


class Clock(Protocol):
    """Where the bot reads the time, and how its loops wait for what falls due by it.

    `max_sleep` bounds any wait that is not `wait()` (timers), so a moved clock is noticed.
    """

    max_sleep: float

    def now(self) -> datetime: ...

    async def wait(self, wake: asyncio.Event, seconds: float | None) -> None:
        """Until `wake` is set, `seconds` have passed (None: no limit), or the clock is moved.

        A loop waits here for its next due time or its wake-up, then looks again: by the
        clock's time, a move of which ends the wait without a look for work every max_sleep.
        """
        ...


async def wait_for_wake(wake: asyncio.Event, seconds: float | None) -> None:
    """Until `wake` is set or `seconds` have passed (None: no limit).

    `asyncio.timeout`, not `asyncio.wait_for`: on Python 3.11, `wait_for` can swallow a
    cancellation that arrives as its timeout expires, and a loop waiting here many times a
    second (a manual clock's 10 ms) then never stops when closed.
    """
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(None if seconds is None else max(seconds, 0.0)):
            await wake.wait()


class SystemClock:
    """The real time."""

    max_sleep = math.inf

    def now(self) -> datetime:
        return datetime.now(UTC)

    async def wait(self, wake: asyncio.Event, seconds: float | None) -> None:
        await wait_for_wake(wake, None if seconds is None or math.isinf(seconds) else seconds)


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
        # The shift each waiting loop (known by its wake event) last went to look with.
        self._looked_with: weakref.WeakKeyDictionary[asyncio.Event, timedelta] = (
            weakref.WeakKeyDictionary()
        )

    def now(self) -> datetime:
        return datetime.now(UTC) + self.shift()

    def shift(self) -> timedelta:
        """The shift in the file, read again if the last read is SHIFT_REREAD seconds old."""
        tick = time.monotonic()
        if tick - self._read_at >= SHIFT_REREAD:
            self._read_at = tick
            try:
                text = self.path.read_text().strip()
                self._shift = timedelta(seconds=float(text or 0))
            except (OSError, ValueError):
                self._shift = timedelta(0)
        return self._shift

    async def wait(self, wake: asyncio.Event, seconds: float | None) -> None:
        """Naps of at most max_sleep, each followed by a read of the file (not of any database):
        while idle, the bot's loops look for work only when the clock has moved.

        A move is told from the shift this loop's previous wait ended with (its look began
        then), so a move made while the loop was looking ends this wait too.
        """
        loop = asyncio.get_running_loop()
        end = math.inf if seconds is None else loop.time() + seconds
        shift = self._looked_with.get(wake, self.shift())
        try:
            while not wake.is_set() and self.shift() == shift:
                left = end - loop.time()
                if left <= 0:
                    return
                await wait_for_wake(wake, min(left, self.max_sleep))
        finally:
            self._looked_with[wake] = self.shift()


class ManualClock:
    """A clock that moves only when told to (unit tests and `tidepool simulate`)."""

    max_sleep = 0.01

    def __init__(self, start: datetime) -> None:
        self._now = start

    def now(self) -> datetime:
        return self._now

    async def wait(self, wake: asyncio.Event, seconds: float | None) -> None:
        """At most max_sleep: the caller looks again at the manual time however it moved."""
        limit = min(math.inf if seconds is None else seconds, self.max_sleep)
        await wait_for_wake(wake, None if math.isinf(limit) else limit)

    def advance(self, delta: timedelta) -> None:
        self._now += delta

    def set(self, moment: datetime) -> None:
        self._now = moment


def clock_for(clock_file: Path | None) -> Clock:
    """The system clock, or the shifted clock of a test clock file (CLOCK_FILE)."""
    return ShiftedClock(clock_file) if clock_file else SystemClock()
