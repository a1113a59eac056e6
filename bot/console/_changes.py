"""Every change made from the console, recorded: who, when, what, in which group."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import insert, select
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.clock import Clock
from bot.console._access import Viewer
from bot.db import CONSOLE_CHANGES, writing


@dataclass(frozen=True)
class Change:
    at: datetime
    user_id: int
    chat_id: int | None
    area: str
    action: str
    details: dict[str, Any]


class Changes:
    """The console's change log (the table `console_changes`)."""

    def __init__(self, db: AsyncEngine, clock: Clock) -> None:
        self.db = db
        self.clock = clock

    async def record(
        self, viewer: Viewer, area: str, action: str, chat_id: int | None = None, **details: Any
    ) -> None:
        async with writing(self.db) as conn:
            await conn.execute(
                insert(CONSOLE_CHANGES).values(
                    at=self.clock.now(),
                    user_id=viewer.user_id,
                    chat_id=chat_id,
                    area=area,
                    action=action,
                    details={"by": viewer.name, **details},
                )
            )

    async def recent(
        self,
        *,
        chat_ids: list[int] | None = None,
        areas: tuple[str, ...] = (),
        limit: int = 50,
    ) -> list[Change]:
        """The newest changes first: of `chat_ids` (None: all) and `areas` (empty: all)."""
        query = select(CONSOLE_CHANGES).order_by(CONSOLE_CHANGES.c.id.desc()).limit(limit)
        if chat_ids is not None:
            query = query.where(CONSOLE_CHANGES.c.chat_id.in_(chat_ids))
        if areas:
            query = query.where(CONSOLE_CHANGES.c.area.in_(areas))
        async with self.db.connect() as conn:
            rows = (await conn.execute(query)).all()
        return [
            Change(
                at=row.at,
                user_id=int(row.user_id),
                chat_id=None if row.chat_id is None else int(row.chat_id),
                area=row.area,
                action=row.action,
                details=dict(row.details or {}),
            )
            for row in rows
        ]
