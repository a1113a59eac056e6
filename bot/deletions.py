"""Messages the bot deletes after a delay (kept tidy), stored so a restart does not forget them."""

from __future__ import annotations

import asyncio
import math
from datetime import datetime

from loguru import logger
from sqlalchemy import delete, func, select, tuple_
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.clock import Clock
from bot.db import SCHEDULED_DELETIONS, writing
from bot.outbox import Outbox
from bot.periodic import Background

BATCH = 200


class Deletions(Background):
    """Deletes each message in `scheduled_deletions` when its time comes.

    A deletion that fails (the message is already gone, the bot lost the right) is logged by
    the delivery service and not tried again. A message scheduled several times (one combined
    reply answering several SOP runs) is deleted once, at the earliest time asked.
    """

    name = "deletions"

    def __init__(self, engine: AsyncEngine, deleter: Outbox, clock: Clock) -> None:
        super().__init__()
        self.engine = engine
        self.deleter = deleter
        self.clock = clock
        self.deleted = 0
        self._wake = asyncio.Event()
        self._next: datetime | None = None  # the earliest due time the loop waits for

    async def schedule(self, chat_id: int, message_id: int, due_at: datetime, source: str) -> None:
        async with writing(self.engine) as conn:
            await conn.execute(
                SCHEDULED_DELETIONS.insert().values(
                    chat_id=chat_id, message_id=message_id, due_at=due_at, source=source
                )
            )
        self.wake(due_at)

    def wake(self, due_at: datetime | None = None) -> None:
        """Something new was scheduled (due at `due_at`, if known): look again at what is due
        next, unless the loop already waits for something due no later."""
        if due_at is None or self._next is None or due_at < self._next:
            self._wake.set()

    async def delete_due(self) -> int:
        """Delete every message that is due, each once; return how many due rows were taken."""
        now = self.clock.now()
        async with self.engine.connect() as conn:
            rows = list(
                await conn.execute(
                    select(SCHEDULED_DELETIONS)
                    .where(SCHEDULED_DELETIONS.c.due_at <= now)
                    .order_by(SCHEDULED_DELETIONS.c.due_at)
                    .limit(BATCH)
                )
            )
        if not rows:
            return 0
        messages: dict[tuple[int, int], str] = {}
        for row in rows:
            messages.setdefault((row.chat_id, row.message_id), row.source)
        await asyncio.gather(
            *(
                self.deleter.delete(chat_id, message_id, source=source)
                for (chat_id, message_id), source in messages.items()
            )
        )
        message = tuple_(SCHEDULED_DELETIONS.c.chat_id, SCHEDULED_DELETIONS.c.message_id)
        async with writing(self.engine) as conn:  # with any later time asked: the message is gone
            await conn.execute(delete(SCHEDULED_DELETIONS).where(message.in_(list(messages))))
        self.deleted += len(messages)
        return len(rows)

    async def _run(self) -> None:
        while True:
            self._wake.clear()
            self._next = None  # while it looks, every new deletion wakes it again
            timeout = math.inf  # the clock's wait ends early if it is moved
            try:
                if await self.delete_due() == BATCH:
                    continue
                async with self.engine.connect() as conn:
                    due: datetime | None = (
                        await conn.execute(select(func.min(SCHEDULED_DELETIONS.c.due_at)))
                    ).scalar_one()
                self._next = due
                if due is not None:
                    timeout = min(timeout, max((due - self.clock.now()).total_seconds(), 0.01))
            except Exception:
                logger.exception("deleting messages failed; trying again in 10s")
                timeout = 10.0
            await self.clock.wait(self._wake, None if math.isinf(timeout) else timeout)
