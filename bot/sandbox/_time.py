"""The sandbox's time: one shift shared by the bot (its clock file) and the emulator's clock.

Moving time forward walks through every moment the bot has something due on the way (a run
waking, a push, a draw, a scheduled SOP), waiting at each until the bot has done it, so that a
day moved at once is lived as the bot would have lived it: the nudge after 24 hours comes before
the next morning's tip, and each in its turn.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from loguru import logger

from bot.sandbox._mind import Mind

SETTLE_SECONDS = 30.0  # the longest wait for the bot to finish what fell due
STEP_MARGIN = timedelta(seconds=1)  # a due moment is stepped just past, so it is surely due
MAX_STEPS = 2000  # due moments walked through in one move, at most
STEP_QUIET = 0.3  # seconds without a change after what fell due was done
ANSWER_QUIET = 1.0  # seconds without a change after an update (a person's action)
SOON = timedelta(seconds=5)  # what falls due this soon is lived before the bot counts as idle


class BotBusy(Exception):
    """The bot did not finish what was due within SETTLE_SECONDS; the message says what."""


class SandboxClock:
    """The shift of the sandbox's time from the real time, kept in the bot's clock file."""

    def __init__(self, path: Path, on_move: Callable[[float], Awaitable[None]]) -> None:
        self.path = path
        self.on_move = on_move  # moves the emulator's clock by the same seconds

    @property
    def shift(self) -> float:
        try:
            return float(self.path.read_text().strip() or 0)
        except (OSError, ValueError):
            return 0.0

    def now(self) -> datetime:
        return datetime.now(UTC) + timedelta(seconds=self.shift)

    async def move(self, seconds: float) -> None:
        """Move time forward by `seconds` (the bot and the emulator together)."""
        if seconds <= 0:
            return
        self._write(self.shift + seconds)
        await self.on_move(seconds)

    def set_shift(self, seconds: float) -> None:
        """Start from this shift (a fresh sandbox or a replay placed at a recorded moment)."""
        self._write(seconds)

    def _write(self, shift: float) -> None:
        # Written whole and renamed: the bot never reads half a number.
        scratch = self.path.with_suffix(".tmp")
        scratch.write_text(f"{shift:.3f}\n")
        os.replace(scratch, self.path)


class TimeMachine:
    """Moves the sandbox's time, stepping through what falls due on the way."""

    def __init__(
        self,
        clock: SandboxClock,
        mind: Mind,
        pending_updates: Callable[[], int],
        version: Callable[[], int],
    ) -> None:
        self.clock = clock
        self.mind = mind
        self.pending_updates = pending_updates  # updates the bot has not fetched yet
        self.version = version  # the emulator's world changes with each thing the bot does
        self._lock = asyncio.Lock()

    async def advance(self, seconds: float) -> int:
        """Move forward by `seconds`; return how many due moments were lived on the way."""
        async with self._lock:
            await self.settle(ANSWER_QUIET)  # what the people did is answered before time moves
            target = self.clock.now() + timedelta(seconds=seconds)
            steps = 0
            while steps < MAX_STEPS:
                due = await self.mind.next_due(self.clock.now())
                if due is None or due + STEP_MARGIN > target:
                    logger.debug("sandbox: nothing due before {} (next: {})", target, due)
                    break
                logger.debug("sandbox: stepping to {} (due)", due + STEP_MARGIN)
                await self._move_to(due + STEP_MARGIN)
                await self.settle()
                steps += 1
            await self._move_to(target)
            await self.settle()
            return steps

    async def to_next_due(self) -> datetime | None:
        """Move to the next moment the bot has something due; None if nothing is planned."""
        await self.settle(ANSWER_QUIET)
        due = await self.mind.next_due(self.clock.now())
        if due is None:
            return None
        await self.advance(max(0.001, (due + STEP_MARGIN - self.clock.now()).total_seconds()))
        return due

    async def settle(self, quiet: float = STEP_QUIET, seconds: float = SETTLE_SECONDS) -> None:
        """Wait until the bot has fetched every update and done everything due by now (living
        at once what falls due in a moment), and then did nothing more for `quiet` seconds: its
        answer to an update is not in its database before it is sent, so a quiet spell after
        the update was fetched is the sign that it has answered."""
        deadline = time.monotonic() + seconds
        while True:
            reason = await self._busy()
            if reason is None and await self._step_if_due_soon():
                reason = "steps due one after another"
            elif reason is None:
                version = self.version()
                await asyncio.sleep(quiet)
                if (
                    self.version() == version
                    and await self._busy() is None
                    and not await self._step_if_due_soon()
                ):
                    return
                reason = "still answering"
            if time.monotonic() > deadline:
                logger.warning("sandbox: the bot is still busy ({}) after {:.0f}s", reason, seconds)
                raise BotBusy(reason)
            await asyncio.sleep(0.05)

    async def _busy(self) -> str | None:
        if self.pending_updates():
            return "updates not fetched"
        return await self.mind.busy(self.clock.now())

    async def _step_if_due_soon(self) -> bool:
        """Live what falls due in a moment (a join gathering company) now; True if there was."""
        now = self.clock.now()
        due = await self.mind.next_due(now)
        if due is None or due - now > SOON:
            return False
        logger.debug("sandbox: stepping to {} (due in a moment)", due + STEP_MARGIN)
        await self._move_to(due + STEP_MARGIN)
        return True

    async def _move_to(self, moment: datetime) -> None:
        await self.clock.move((moment - self.clock.now()).total_seconds())
