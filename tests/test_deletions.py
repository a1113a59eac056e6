"""Deleting messages when their time comes: each message once, however often it was asked."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.clock import ManualClock
from bot.db import SCHEDULED_DELETIONS
from bot.deletions import Deletions
from bot.delivery import Delivered
from tests.conftest import at
from tests.sop_harness import RecordingOutbox, eventually

GROUP = -1001


class Deleter(RecordingOutbox):
    """The recording outbox, keeping each deletion's source too."""

    def __init__(self) -> None:
        super().__init__(ManualClock(at(0)))
        self.asked: list[tuple[int, int, str]] = []

    async def delete(self, chat_id: int, message_id: int, *, source: str) -> Delivered:
        self.asked.append((chat_id, message_id, source))
        return Delivered(ok=True, message_id=message_id, chat_id=chat_id)


async def scheduled(engine: AsyncEngine) -> list[tuple[int, int]]:
    async with engine.connect() as conn:
        rows = await conn.execute(
            select(SCHEDULED_DELETIONS.c.chat_id, SCHEDULED_DELETIONS.c.message_id)
        )
        return sorted((row.chat_id, row.message_id) for row in rows)


async def test_a_reply_shared_by_several_runs_is_deleted_once(engine: AsyncEngine) -> None:
    clock = ManualClock(at(0))
    deleter = Deleter()
    deletions = Deletions(engine, deleter, clock)
    for run in (1, 2, 3):  # one combined check-in reply answered three runs
        await deletions.schedule(GROUP, 7, at(1), f"sop:checkin:run:{run}")
    await deletions.schedule(GROUP, 7, at(5), "sop:checkin:run:4")  # same message, asked later
    await deletions.schedule(GROUP, 8, at(1), "sop:checkin:run:5")
    await deletions.schedule(GROUP, 9, at(10), "sop:tips:run:6")

    clock.set(at(2))
    assert await deletions.delete_due() == 4
    assert sorted((chat, message) for chat, message, _ in deleter.asked) == [(GROUP, 7), (GROUP, 8)]
    assert await scheduled(engine) == [(GROUP, 9)], "the message is gone: no later try either"

    clock.set(at(10))
    assert await deletions.delete_due() == 1
    assert deleter.asked[-1] == (GROUP, 9, "sop:tips:run:6")
    assert await scheduled(engine) == []
    assert deletions.deleted == 3


async def test_the_loop_looks_again_only_for_a_deletion_due_sooner(engine: AsyncEngine) -> None:
    """Each recorded batch of replies schedules deletions: the loop reads the table again only
    when one is due before what it already waits for."""
    deletions = Deletions(engine, Deleter(), ManualClock(at(0)))
    await deletions.schedule(GROUP, 7, at(10), "sop:checkin:run:1")
    deletions.start()
    try:
        await eventually(lambda: deletions._next == at(10), what="the loop waiting for at(10)")
        deletions.wake(at(20))
        assert not deletions._wake.is_set(), "due later: the loop sleeps on"
        deletions.wake(at(5))
        assert deletions._wake.is_set(), "due sooner: the loop looks again"
        await deletions.schedule(GROUP, 8, at(5), "sop:checkin:run:2")
        await eventually(lambda: deletions._next == at(5), what="the loop waiting for at(5)")
    finally:
        await deletions.close()
