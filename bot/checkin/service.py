"""Checking in: one check-in per member and day, its points and streak bonus in the ledger.

A check-in, its points and its bonus are written in one transaction. The unique key on
(group, member, day) settles double taps and two messages at once: the second insert does
nothing, and the caller learns that the day had its check-in already, with no points.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Row, func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from bot.checkin.days import Streak, checkin_day, next_streak
from bot.db import CHECKINS, insert_for
from bot.points import Change, apply, balance
from bot.sop.format import CheckinAction

SOURCE = "checkin"


@dataclass(frozen=True)
class CheckinRules:
    """How check-ins work in a group (set in the check-in SOP file)."""

    start_hour: int = 4  # a day begins at this hour of the group's wall clock
    points: int = 10  # per check-in
    freezes: int = 0  # missed days per month that do not break a streak
    bonuses: Mapping[int, int] = field(default_factory=dict)  # streak length -> extra points


def checkin_rules(action: CheckinAction) -> CheckinRules:
    """The rules of a `checkin` step of an SOP file."""
    return CheckinRules(
        start_hour=action.day_start_hour,
        points=action.points,
        freezes=action.freezes_per_month,
        bonuses=dict(action.milestones),
    )


@dataclass(frozen=True, slots=True)
class CheckedIn:
    """What a check-in came to."""

    day: date
    new: bool  # False: this day had its check-in already (no points)
    streak: int
    points: int  # credited now, bonus included (0 when not new)
    bonus: int  # the streak bonus in `points`
    rank: int  # the member's place among today's check-ins in the group, from 1
    balance: int  # the member's points in the group afterwards

    def as_variables(self) -> dict[str, Any]:
        """The `checkin` variable of SOP texts."""
        return {
            "new": self.new,
            "day": self.day.isoformat(),
            "streak": self.streak,
            "points": self.points,
            "bonus": self.bonus,
            "rank": self.rank,
            "balance": self.balance,
        }


async def check_in(
    conn: AsyncConnection,
    chat_id: int,
    user_id: int,
    at: datetime,
    zone: ZoneInfo,
    rules: CheckinRules,
    run_id: int | None = None,
) -> CheckedIn:
    """Check a member in within the caller's write transaction (`run_id`: the SOP run asking)."""
    day = checkin_day(at, zone, rules.start_hour)
    last = await _latest(conn, chat_id, user_id)
    before = Streak(last.day, last.streak, last.frozen) if last is not None else None
    streak = next_streak(before, day, rules.freezes)
    if streak is None:  # checked in already (or the group moved west)
        assert last is not None
        return await _already(conn, chat_id, user_id, last)
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
            run_id=run_id,
        )
        .on_conflict_do_nothing(index_elements=["chat_id", "user_id", "day"])
        .returning(CHECKINS.c.id)
    )
    checkin_id = inserted.scalar_one_or_none()
    if checkin_id is None:  # a check-in of the same day got in first
        winner = await _latest(conn, chat_id, user_id)
        assert winner is not None
        return await _already(conn, chat_id, user_id, winner)
    await apply(
        conn,
        [
            Change(chat_id, user_id, rules.points, "check-in", SOURCE, at),
            Change(chat_id, user_id, bonus, f"streak bonus: {streak.length} days", SOURCE, at),
        ],
    )
    rank = await _rank(conn, chat_id, day, checkin_id)
    total = await balance(conn, chat_id, user_id)
    return CheckedIn(day, True, streak.length, points, bonus, rank, total)


async def _latest(
    conn: AsyncConnection, chat_id: int, user_id: int
) -> Row[Any, Any, Any, Any] | None:
    """The member's latest check-in in the group (id, day, streak, frozen), if any."""
    found = await conn.execute(
        select(CHECKINS.c.id, CHECKINS.c.day, CHECKINS.c.streak, CHECKINS.c.frozen)
        .where(CHECKINS.c.chat_id == chat_id, CHECKINS.c.user_id == user_id)
        .order_by(CHECKINS.c.day.desc())
        .limit(1)
    )
    return found.first()


async def _already(
    conn: AsyncConnection, chat_id: int, user_id: int, latest: Row[Any, Any, Any, Any]
) -> CheckedIn:
    """No new check-in: the latest stands (today's, or a later day's after a move west)."""
    rank = await _rank(conn, chat_id, latest.day, latest.id)
    total = await balance(conn, chat_id, user_id)
    return CheckedIn(latest.day, False, latest.streak, 0, 0, rank, total)


async def _rank(conn: AsyncConnection, chat_id: int, day: date, checkin_id: int) -> int:
    """Place of a check-in among its day's in the group (ids grow with time)."""
    earlier = await conn.execute(
        select(func.count())
        .select_from(CHECKINS)
        .where(CHECKINS.c.chat_id == chat_id, CHECKINS.c.day == day, CHECKINS.c.id <= checkin_id)
    )
    return int(earlier.scalar_one())
