"""Checking in: one check-in per member and day, its points and streak bonus in the ledger.

A check-in, its points and its bonus are written in one transaction. The unique key on
(group, member, day) settles double taps and two messages at once: the second insert does
nothing, and the caller learns that the day had its check-in already, with no points.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from zoneinfo import ZoneInfo

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from bot.checkin.days import Streak, checkin_day, next_streak
from bot.db import CHECKINS, insert_for, writing
from bot.points import Change, apply

SOURCE = "checkin"


@dataclass(frozen=True)
class CheckinRules:
    """How check-ins work in a group (set in the check-in SOP file)."""

    start_hour: int = 4  # a day begins at this hour of the group's wall clock
    points: int = 10  # per check-in
    freezes: int = 0  # missed days per month that do not break a streak
    bonuses: Mapping[int, int] = field(default_factory=dict)  # streak length -> extra points


@dataclass(frozen=True, slots=True)
class CheckedIn:
    """What a check-in came to."""

    day: date
    new: bool  # False: this day had its check-in already (no points)
    streak: int
    points: int  # credited now, bonus included (0 when not new)
    bonus: int  # the streak bonus in `points`
    rank: int  # the member's place among today's check-ins in the group, from 1


class CheckIns:
    """Check-ins of members in groups, over the `checkins` table and the points ledger."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    async def check_in(
        self, chat_id: int, user_id: int, at: datetime, zone: ZoneInfo, rules: CheckinRules
    ) -> CheckedIn:
        day = checkin_day(at, zone, rules.start_hour)
        async with writing(self.engine) as conn:
            last = await _last(conn, chat_id, user_id)
            streak = next_streak(last, day, rules.freezes)
            if streak is None:  # checked in already (or the group moved west)
                return await _already(conn, chat_id, user_id)
            bonus = rules.bonuses.get(streak.length, 0)
            points = rules.points + bonus
            inserted = await conn.execute(
                insert_for(conn, CHECKINS)
                .values(
                    chat_id=chat_id,
                    user_id=user_id,
                    day=day,
                    at=at,
                    streak=streak.length,
                    frozen=streak.frozen_this_month,
                    points=points,
                )
                .on_conflict_do_nothing(index_elements=["chat_id", "user_id", "day"])
                .returning(CHECKINS.c.id)
            )
            checkin_id = inserted.scalar_one_or_none()
            if checkin_id is None:  # a check-in of the same day got in first
                return await _already(conn, chat_id, user_id)
            await apply(
                conn,
                [
                    Change(chat_id, user_id, rules.points, "check-in", SOURCE, at),
                    Change(
                        chat_id, user_id, bonus, f"streak bonus: {streak.length} days", SOURCE, at
                    ),
                ],
            )
            rank = await _rank(conn, chat_id, day, checkin_id)
        return CheckedIn(day, True, streak.length, points, bonus, rank)


async def _last(conn: AsyncConnection, chat_id: int, user_id: int) -> Streak | None:
    row = (
        await conn.execute(
            select(CHECKINS.c.day, CHECKINS.c.streak, CHECKINS.c.frozen)
            .where(CHECKINS.c.chat_id == chat_id, CHECKINS.c.user_id == user_id)
            .order_by(CHECKINS.c.day.desc())
            .limit(1)
        )
    ).first()
    return Streak(row.day, row.streak, row.frozen) if row is not None else None


async def _already(conn: AsyncConnection, chat_id: int, user_id: int) -> CheckedIn:
    """The member's latest check-in: the one of today (or of a later day, after a move west)."""
    row = (
        await conn.execute(
            select(CHECKINS.c.id, CHECKINS.c.day, CHECKINS.c.streak)
            .where(CHECKINS.c.chat_id == chat_id, CHECKINS.c.user_id == user_id)
            .order_by(CHECKINS.c.day.desc())
            .limit(1)
        )
    ).one()
    rank = await _rank(conn, chat_id, row.day, row.id)
    return CheckedIn(row.day, False, row.streak, 0, 0, rank)


async def _rank(conn: AsyncConnection, chat_id: int, day: date, checkin_id: int) -> int:
    """Place of a check-in among its day's in the group (ids grow with time)."""
    earlier = await conn.execute(
        select(func.count())
        .select_from(CHECKINS)
        .where(CHECKINS.c.chat_id == chat_id, CHECKINS.c.day == day, CHECKINS.c.id <= checkin_id)
    )
    return int(earlier.scalar_one())
