"""APScheduler 3 on a clock that can be moved: jobs fall due by the bot's clock, not the wall's.

APScheduler 3 asks `datetime.now()` itself, in two modules: the scheduler's base (next fire
times of added jobs, which jobs are due, how long to sleep) and the executors' base (whether a
run is beyond its misfire grace). It has no clock option, so while a `ClockedScheduler` runs,
the name `datetime` in exactly those two modules is a `datetime` whose `now()` reads the bot's
clock; it is put back when the scheduler shuts down. Nothing else sees it: every other module
keeps its own `datetime`. One clocked scheduler can run at a time (the bot has one).

The system clock needs none of this: `scheduler_on` gives it a plain `AsyncIOScheduler`.

A moved clock is noticed as the bot's loops notice it: the scheduler's sleep until its next job
is cut into naps of at most `clock.max_sleep`, after each of which it reads the clock (no
database query) and looks for due jobs only once the clock has reached that job's time. A
clock moved past several jobs' times then runs them as after downtime: in order of their
times, missed times coalesced, each within its misfire grace or reported missed.
"""

from __future__ import annotations

from datetime import datetime, timedelta, tzinfo
from types import ModuleType
from typing import Any

import apscheduler.executors.base as executors_base  # type: ignore[import-untyped]
import apscheduler.schedulers.base as schedulers_base  # type: ignore[import-untyped]
from apscheduler.events import EVENT_SCHEDULER_SHUTDOWN  # type: ignore[import-untyped]
from apscheduler.schedulers.asyncio import AsyncIOScheduler  # type: ignore[import-untyped]

from bot.clock import Clock, SystemClock

# The modules of APScheduler 3.11 that call `datetime.now()` (schedulers/base.py: add, modify,
# resume and process jobs; executors/base.py: the misfire check of run_job and
# run_coroutine_job). The triggers call it only to default a missing start date.
_ASKS_THE_TIME: tuple[ModuleType, ...] = (schedulers_base, executors_base)


def scheduler_on(clock: Clock, **options: Any) -> AsyncIOScheduler:
    """An AsyncIOScheduler that keeps `clock`'s time: as APScheduler is for the system clock."""
    if isinstance(clock, SystemClock):
        return AsyncIOScheduler(**options)
    return ClockedScheduler(clock, **options)


class ClockedScheduler(AsyncIOScheduler):  # type: ignore[misc]
    """An AsyncIOScheduler whose "now" is `clock.now()`, waking at least every max_sleep."""

    def __init__(self, clock: Clock, **options: Any) -> None:
        self.clock = clock
        self._wake_at: datetime | None = None  # the clock time of the next look for due jobs
        self._following = False
        super().__init__(**options)
        self.add_listener(lambda _event: self._unfollow(), EVENT_SCHEDULER_SHUTDOWN)

    def start(self, paused: bool = False) -> None:
        _follow(self.clock)
        self._following = True
        try:
            super().start(paused)
        except BaseException:
            self._unfollow()
            raise

    def _unfollow(self) -> None:
        if self._following:
            self._following = False
            _restore()

    def _start_timer(self, wait_seconds: float | None) -> None:
        """Look for due jobs when the clock has gone `wait_seconds` on, however it got there."""
        self._stop_timer()
        if wait_seconds is None:
            self._wake_at = None
            return
        self._wake_at = self.clock.now() + timedelta(seconds=wait_seconds)
        self._nap()

    def _nap(self) -> None:
        assert self._wake_at is not None
        left = (self._wake_at - self.clock.now()).total_seconds()
        nap = max(0.0, min(left, self.clock.max_sleep))
        self._timeout = self._eventloop.call_later(nap, self._look)

    def _look(self) -> None:
        """After a nap: wake up (as AsyncIOScheduler's timer does) if the time has come."""
        if self._wake_at is not None and self.clock.now() < self._wake_at:
            self._nap()
            return
        self._stop_timer()
        self._start_timer(self._process_jobs())


def _clock_datetime(clock: Clock) -> type[datetime]:
    class ClockDatetime(datetime):
        """`datetime`, its `now()` read from the bot's clock."""

        @classmethod
        def now(cls, tz: tzinfo | None = None) -> datetime:  # type: ignore[override]
            return clock.now().astimezone(tz)

    return ClockDatetime


def _follow(clock: Clock) -> None:
    """Make APScheduler's modules read the time from `clock` (until `_restore`)."""
    if any(vars(module)["datetime"] is not datetime for module in _ASKS_THE_TIME):
        raise RuntimeError("APScheduler already follows another clock: shut its scheduler down")
    clocked = _clock_datetime(clock)
    for module in _ASKS_THE_TIME:
        vars(module)["datetime"] = clocked


def _restore() -> None:
    """APScheduler's modules read the system time again."""
    for module in _ASKS_THE_TIME:
        vars(module)["datetime"] = datetime
