"""Who works on which runs, and the engine's work in the background.

A run being worked on is busy: nobody else moves it until it is released. The timer's claim of
due runs reads the database while others move runs, so runs moved meanwhile are noted for every
claim in progress, which leaves them out (it may have read them as they were before).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Iterable, Iterator

from loguru import logger

from bot.sop.runs import Run


class Leases:
    """The runs in hand (busy), and the runs moved while a claim read."""

    def __init__(self) -> None:
        self.busy: set[int] = set()
        self._reading: list[set[int]] = []  # per claim in progress: runs moved meanwhile
        self._released = asyncio.Event()  # set whenever busy runs are released

    def release(self, runs: Iterable[Run]) -> None:
        run_ids = [run.id for run in runs]
        self.busy.difference_update(run_ids)
        self.note_moved(run_ids)
        self._released.set()

    async def until_idle(self, run_ids: set[int]) -> None:
        """Wait until none of these runs is being worked on."""
        while run_ids & self.busy:
            self._released.clear()
            await self._released.wait()

    def note_moved(self, run_ids: list[int]) -> None:
        """Tell the claims reading right now to leave these runs out (they may read them stale)."""
        for moved in self._reading:
            moved.update(run_ids)

    @contextlib.contextmanager
    def reading(self) -> Iterator[set[int]]:
        """While a claim reads: the runs moved meanwhile gather in the set it is given."""
        moved: set[int] = set()
        self._reading.append(moved)
        try:
            yield moved
        finally:
            self._reading.remove(moved)


class Held:
    """Runs in hand that wait for their message to go, by its push key (`bot.sop.steps._send`)."""

    def __init__(self) -> None:
        self.runs: dict[str, list[Run]] = {}


class Tasks:
    """The engine's work in the background (sends, the steps after them), and whether the
    engine is stopping (then it starts no runs and keeps untried sends for the restart)."""

    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[None]] = set()
        self.stopping = False

    def __len__(self) -> int:
        return len(self._tasks)

    def __iter__(self) -> Iterator[asyncio.Task[None]]:
        return iter(list(self._tasks))  # a copy: tasks end while one looks at them

    def in_hand(self) -> list[asyncio.Task[None]]:
        return list(self._tasks)

    def spawn(self, work: Awaitable[None]) -> asyncio.Task[None]:
        async def guarded() -> None:
            try:
                await work
            except Exception:
                logger.exception("an SOP task failed")

        task = asyncio.create_task(guarded())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def settle(self) -> None:
        """Wait until the work in hand is finished, and the work it set off."""
        while self._tasks:
            await asyncio.wait(list(self._tasks))

    async def wait(self, grace: float) -> None:
        """Wait up to `grace` seconds for the work in hand."""
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=grace)

    async def cancel(self) -> None:
        """Cancel the work still in hand and wait for it to end."""
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
