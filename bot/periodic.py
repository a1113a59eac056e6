"""Background loops: one task from `start()` to `close()`, and those that do a round every few
seconds until the bot stops."""

from __future__ import annotations

import asyncio
import contextlib

from loguru import logger


class Background:
    """Runs `_run()` as one named task from `start()` until `close()` cancels it."""

    name = "background"

    def __init__(self) -> None:
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        raise NotImplementedError

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name=self.name)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None


class Periodic(Background):
    """Runs `tick()` every `interval()` seconds from `start()` (the first an interval after
    it) to `close()`; a failing round is logged and the loop goes on."""

    name = "periodic"

    async def tick(self) -> object:
        raise NotImplementedError

    def interval(self) -> float:
        return 1.0

    async def _run(self) -> None:
        while True:  # the first round an interval after the start, not amid the start-up work
            await asyncio.sleep(self.interval())
            try:
                await self.tick()
            except Exception:
                logger.exception("{} failed; trying again in {:.0f}s", self.name, self.interval())
