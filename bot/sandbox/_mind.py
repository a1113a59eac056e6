"""What the sandboxed bot is thinking, read from its database: runs, points, pushes, what is due.

The bot runs in its own process and owns its database; the sandbox only reads it (SQLite in WAL
mode lets it read beside the bot's writes). The due moments are what the time bar steps through:
runs waking, pushes falling due, lotteries drawing, deletions, and the calendar of scheduled
SOPs that APScheduler keeps in its own file.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import ColumnElement, func, or_, select
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.db import (
    BALANCES,
    CHECKINS,
    GROUPS,
    LOTTERIES,
    MEMBER_TAGS,
    MEMBERS,
    PUSHES,
    SCHEDULED_DELETIONS,
    SOP_RUNS,
    SOP_STEPS,
)
from bot.db._external import SCHEDULER_TABLE

WAKING = ("scheduled", "waiting")  # runs that wake at `wake_at`
BUSY_RUNS = ("running", "sending")  # a step in hand
WAITING_PUSHES = ("pending", "queued", "sending")
RUNS_SHOWN = 12


@dataclass
class Step:
    """One line of a run's journal."""

    step: str
    action: str
    status: str
    variant: str | None
    error: str | None
    at: datetime | None


@dataclass
class RunView:
    """One SOP run and its journal."""

    id: int
    sop: str
    status: str
    position: str
    member: bool
    wake_at: datetime | None
    waits_for: str | None
    error: str | None
    journal: list[Step] = field(default_factory=list)


@dataclass
class PushView:
    """A message the bot will send on its own, and why it waits."""

    id: int
    kind: str
    status: str
    due_at: datetime
    planned_at: datetime
    note: str | None
    text: str


@dataclass
class MemberView:
    """A member's standing: points, streak, tier, tags."""

    points: int = 0
    streak: int = 0
    last_checkin: str | None = None
    tier: str | None = None
    tags: list[str] = field(default_factory=list)
    known: bool = False


@dataclass
class GroupInfo:
    """What the bot knows of a group."""

    title: str | None
    timezone: str | None
    language: str | None


class Mind:
    """Reads the sandboxed bot's database (and its calendar file) for the page and the clock."""

    def __init__(self, engine: AsyncEngine, schedules_file: Path) -> None:
        self.engine = engine
        self.schedules_file = schedules_file

    async def group(self, chat_id: int) -> GroupInfo | None:
        async with self.engine.connect() as conn:
            row = (
                await conn.execute(
                    select(GROUPS.c.title, GROUPS.c.timezone, GROUPS.c.language).where(
                        GROUPS.c.id == chat_id
                    )
                )
            ).first()
        return None if row is None else GroupInfo(row.title, row.timezone, row.language)

    async def member(self, chat_id: int, user_id: int) -> MemberView:
        view = MemberView()
        async with self.engine.connect() as conn:
            tier = (
                await conn.execute(
                    select(MEMBERS.c.tier).where(
                        MEMBERS.c.chat_id == chat_id, MEMBERS.c.user_id == user_id
                    )
                )
            ).first()
            if tier is not None:
                view.known = True
                view.tier = tier.tier
            balance = await conn.scalar(
                select(BALANCES.c.balance).where(
                    BALANCES.c.chat_id == chat_id, BALANCES.c.user_id == user_id
                )
            )
            view.points = int(balance or 0)
            last = (
                await conn.execute(
                    select(CHECKINS.c.day, CHECKINS.c.streak)
                    .where(CHECKINS.c.chat_id == chat_id, CHECKINS.c.user_id == user_id)
                    .order_by(CHECKINS.c.day.desc())
                    .limit(1)
                )
            ).first()
            if last is not None:
                view.streak = int(last.streak)
                view.last_checkin = str(last.day)
            tags = await conn.scalars(
                select(MEMBER_TAGS.c.tag)
                .where(MEMBER_TAGS.c.chat_id == chat_id, MEMBER_TAGS.c.user_id == user_id)
                .order_by(MEMBER_TAGS.c.tag)
            )
            view.tags = list(tags)
        return view

    async def runs(self, chat_id: int, user_id: int | None) -> list[RunView]:
        """The latest runs in the chat of the member (if any) and of the group as a whole."""
        who: ColumnElement[bool] = SOP_RUNS.c.user_id.is_(None)
        if user_id is not None:
            who = or_(who, SOP_RUNS.c.user_id == user_id)
        async with self.engine.connect() as conn:
            rows = (
                await conn.execute(
                    select(SOP_RUNS)
                    .where(SOP_RUNS.c.chat_id == chat_id, who)
                    .order_by(SOP_RUNS.c.id.desc())
                    .limit(RUNS_SHOWN)
                )
            ).all()
            views = {
                row.id: RunView(
                    id=row.id,
                    sop=row.sop_id,
                    status=str(row.status),
                    position=str(row.position),
                    member=row.user_id is not None,
                    wake_at=row.wake_at,
                    waits_for=row.wait_event,
                    error=row.error,
                )
                for row in rows
            }
            if views:
                steps = await conn.execute(
                    select(SOP_STEPS)
                    .where(SOP_STEPS.c.run_id.in_(list(views)))
                    .order_by(SOP_STEPS.c.run_id, SOP_STEPS.c.seq)
                )
                for step in steps:
                    views[step.run_id].journal.append(
                        Step(
                            step.step,
                            step.action,
                            str(step.status),
                            step.variant,
                            step.error,
                            step.started_at,
                        )
                    )
        return list(views.values())

    async def pushes(self, chat_id: int) -> list[PushView]:
        """The messages still to go to the chat, soonest first."""
        async with self.engine.connect() as conn:
            rows = await conn.execute(
                select(PUSHES)
                .where(PUSHES.c.chat_id == chat_id, PUSHES.c.status.in_(WAITING_PUSHES))
                .order_by(PUSHES.c.due_at, PUSHES.c.id)
                .limit(50)
            )
            return [
                PushView(
                    id=row.id,
                    kind=str(row.kind),
                    status=str(row.status),
                    due_at=row.due_at,
                    planned_at=row.planned_at,
                    note=row.note,
                    text=row.text or "",
                )
                for row in rows
            ]

    async def next_due(self, after: datetime) -> datetime | None:
        """The earliest moment after `after` at which the bot has something to do."""
        moments = [m for m in await self._due_moments() if m > after]
        return min(moments, default=None)

    async def busy(self, now: datetime) -> str | None:
        """What the bot still has to do at `now` (a reason), or None when it is all done."""
        async with self.engine.connect() as conn:
            checks: list[tuple[str, Any]] = [
                (
                    "runs due",
                    select(func.count())
                    .select_from(SOP_RUNS)
                    .where(
                        or_(
                            SOP_RUNS.c.status.in_(BUSY_RUNS),
                            SOP_RUNS.c.status.in_(WAKING) & (SOP_RUNS.c.wake_at <= now),
                        )
                    ),
                ),
                (
                    "pushes due",
                    select(func.count())
                    .select_from(PUSHES)
                    .where(PUSHES.c.status.in_(WAITING_PUSHES), PUSHES.c.due_at <= now),
                ),
                (
                    "lotteries to draw",
                    select(func.count())
                    .select_from(LOTTERIES)
                    .where(LOTTERIES.c.status == "open", LOTTERIES.c.draws_at <= now),
                ),
                (
                    "deletions due",
                    select(func.count())
                    .select_from(SCHEDULED_DELETIONS)
                    .where(SCHEDULED_DELETIONS.c.due_at <= now),
                ),
            ]
            for reason, query in checks:
                if await conn.scalar(query):
                    return reason
        if any(moment <= now for moment in self._calendar()):
            return "scheduled SOPs due"
        return None

    async def _due_moments(self) -> list[datetime]:
        async with self.engine.connect() as conn:
            queries = [
                select(func.min(SOP_RUNS.c.wake_at)).where(SOP_RUNS.c.status.in_(WAKING)),
                select(func.min(PUSHES.c.due_at)).where(PUSHES.c.status == "pending"),
                select(func.min(LOTTERIES.c.draws_at)).where(LOTTERIES.c.status == "open"),
                select(func.min(SCHEDULED_DELETIONS.c.due_at)),
            ]
            found = [await conn.scalar(query) for query in queries]
        return [moment for moment in found if moment is not None] + self._calendar()

    def _calendar(self) -> list[datetime]:
        """The next fire times of the scheduled SOPs (APScheduler's job store)."""
        if not self.schedules_file.exists():
            return []
        try:
            with sqlite3.connect(f"file:{self.schedules_file}?mode=ro", uri=True) as db:
                rows = db.execute(
                    f"SELECT next_run_time FROM {SCHEDULER_TABLE} WHERE next_run_time IS NOT NULL"
                ).fetchall()
        except sqlite3.Error:
            return []
        return [datetime.fromtimestamp(float(row[0]), UTC) for row in rows]
