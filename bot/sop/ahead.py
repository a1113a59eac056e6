"""Runs read ahead of their time, each handed on when its time comes.

Reading due runs from the database takes a turn of the driver's thread, and while the event loop
is busy with a stream of updates that turn can take hundreds of milliseconds. So the timer reads
the runs falling due within the next LOOKAHEAD ahead of time and keeps them here, and a loop timer
hands each one on at its `wake_at`: what makes it late is then one turn of the event loop, not a
database read.

Reading changes nothing in the database, so a run held here may be dropped at any moment (an
event ended its wait, a button moved it, it was cancelled): the database row stays the truth, and
a run moved meanwhile is also caught when it is saved.
"""

from __future__ import annotations

import asyncio
import heapq
from collections.abc import Callable, Iterable
from datetime import datetime

from bot.clock import Clock
from bot.sop.runs import Run


class HeldRuns:
    """Runs read ahead, by id; `on_time(runs, now)` gets them when they fall due."""

    def __init__(self, clock: Clock, on_time: Callable[[list[Run], datetime], None]) -> None:
        self.clock = clock
        self.on_time = on_time
        self._runs: dict[int, Run] = {}
        self._queue: list[tuple[datetime, int]] = []  # (wake_at, run id); dropped ones linger
        self._timer: asyncio.TimerHandle | None = None

    def __len__(self) -> int:
        return len(self._runs)

    def __contains__(self, run_id: object) -> bool:
        return run_id in self._runs

    def ids(self) -> set[int]:
        return set(self._runs)

    def hold(self, runs: Iterable[Run]) -> None:
        for run in runs:
            assert run.wake_at is not None
            self._runs[run.id] = run
            heapq.heappush(self._queue, (run.wake_at, run.id))
        self._arm()

    def drop(self, run_ids: Iterable[int]) -> None:
        """Forget these runs (someone else is moving them); the database still has them."""
        for run_id in run_ids:
            self._runs.pop(run_id, None)
        if len(self._queue) > 2 * len(self._runs) + 1000:  # mostly dropped ones: tidy up
            self._queue = [(at, run_id) for at, run_id in self._queue if run_id in self._runs]
            heapq.heapify(self._queue)

    def due(self, now: datetime) -> list[Run]:
        """Take out the runs due at `now`, oldest first."""
        taken: list[Run] = []
        while self._queue and self._queue[0][0] <= now:
            at, run_id = heapq.heappop(self._queue)
            run = self._runs.get(run_id)
            if run is not None and run.wake_at == at:
                del self._runs[run_id]
                taken.append(run)
        return taken

    def clear(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._runs.clear()
        self._queue.clear()

    def _arm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        while self._queue and self._queue[0][1] not in self._runs:
            heapq.heappop(self._queue)
        if not self._queue:
            return
        delay = (self._queue[0][0] - self.clock.now()).total_seconds()
        # A clock that can be moved (tests) is read again at least every max_sleep.
        delay = max(0.0, min(delay, self.clock.max_sleep))
        self._timer = asyncio.get_running_loop().call_later(delay, self._fire)

    def _fire(self) -> None:
        self._timer = None
        now = self.clock.now()
        runs = self.due(now)
        if runs:
            self.on_time(runs, now)
        self._arm()
