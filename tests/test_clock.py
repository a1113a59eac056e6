"""The shifted clock: its time follows the file, and a loop's wait ends when the file moves."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path

from bot.clock import ShiftedClock


async def test_the_shifted_clock_reads_its_file(tmp_path: Path) -> None:
    clock = ShiftedClock(tmp_path / "clock")
    assert abs(clock.now() - datetime.now(UTC)) < timedelta(seconds=1), "no file: no shift"
    (tmp_path / "clock").write_text("86400\n")
    await asyncio.sleep(0.06)  # the file is read again every 0.05 s
    assert abs(clock.now() - datetime.now(UTC) - timedelta(days=1)) < timedelta(seconds=1)


async def test_a_wait_without_limit_ends_when_the_clock_is_moved(tmp_path: Path) -> None:
    clock = ShiftedClock(tmp_path / "clock")
    waiting = asyncio.create_task(clock.wait(asyncio.Event(), None))
    await asyncio.sleep(0.3)
    assert not waiting.done(), "an unmoved clock keeps waiting"
    (tmp_path / "clock").write_text("3600")
    async with asyncio.timeout(1):
        await waiting


async def test_a_move_while_the_loop_looked_ends_its_next_wait_at_once(tmp_path: Path) -> None:
    clock = ShiftedClock(tmp_path / "clock")
    wake = asyncio.Event()
    wake.set()
    await clock.wait(wake, None)  # the loop is woken and goes to look
    wake.clear()
    (tmp_path / "clock").write_text("3600")  # moved while it looks
    await asyncio.sleep(0.06)
    clock.now()  # the look reads the moved time late
    async with asyncio.timeout(0.1):
        await clock.wait(wake, None)


async def test_a_wait_ends_when_woken_or_after_its_seconds(tmp_path: Path) -> None:
    clock = ShiftedClock(tmp_path / "clock")
    wake = asyncio.Event()
    async with asyncio.timeout(1):
        await clock.wait(wake, 0.3)
    waiting = asyncio.create_task(clock.wait(wake, None))
    await asyncio.sleep(0)
    wake.set()
    async with asyncio.timeout(0.1):
        await waiting
