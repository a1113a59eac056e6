"""The assembly's stop: each step gets its deadline, and one that hangs does not hold the rest."""

from __future__ import annotations

import asyncio
import contextlib

import pytest
from loguru import logger

from bot import factory


async def test_a_stop_step_that_hangs_is_cut_short_and_named(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(factory.STOPS, "bus", 0.05)
    started, released, ended = asyncio.Event(), asyncio.Event(), asyncio.Event()

    async def hangs() -> None:
        started.set()
        with contextlib.suppress(asyncio.CancelledError):  # as a close awaiting its loop does
            await asyncio.Event().wait()
        await released.wait()  # and then waits on, cut short or not
        ended.set()

    logged: list[str] = []
    sink = logger.add(logged.append, level="ERROR", format="{message}")
    try:
        async with contextlib.AsyncExitStack() as stack:
            factory._on_stop(stack, "bus", hangs)
    finally:
        logger.remove(sink)
    assert started.is_set() and not ended.is_set(), "the stop went on without the step"
    assert logged == ["stopping: bus did not finish within 0 s; cut short\n"]
    released.set()
    await ended.wait()


async def test_steps_after_a_cut_one_still_run(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(factory.STOPS, "bus", 0.05)
    ran: list[str] = []

    async def forever() -> None:
        await asyncio.Event().wait()  # cancelled when cut

    async def close() -> None:
        ran.append("activity log")

    async with contextlib.AsyncExitStack() as stack:
        factory._on_stop(stack, "activity log", close)  # pushed first: runs last
        factory._on_stop(stack, "bus", forever)
    assert ran == ["activity log"]
