"""Checking in: one check-in per member and day, its points and streak bonus in the ledger.

A check-in, its points and its bonus are written in one transaction. The unique key on
(group, member, day) settles double taps and two messages at once: the second insert does
nothing, and the caller learns that the day had its check-in already, with no points.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Row, func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from bot.checkin.days import Streak, checkin_day, next_streak
from bot.db import CHECKINS, insert_for
from bot.db.pairs import pairs_in
from bot.points import Change, apply, balances_of
from bot.sop.format import CheckinAction

SOURCE = "checkin"
CHUNK = 400  # members (or group days) per IN (...) list


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
    [done] = await check_in_all(
        conn, [Arrival(chat_id, user_id, run_id)], at, {chat_id: zone}, rules
    )
    return done


@dataclass(frozen=True, slots=True)
class Arrival:
    """A member checking in (for an SOP run, or none)."""

    chat_id: int
    user_id: int
    run_id: int | None = None


async def check_in_all(
    conn: AsyncConnection,
    arrivals: Sequence[Arrival],
    at: datetime,
    zones: Mapping[int, ZoneInfo],
    rules: CheckinRules,
) -> list[CheckedIn]:
    """Check these members in at `at` within the caller's write transaction, each in its
    group's time zone; what each came to, in order. A few statements for all of them (a
    hundred check-ins in a busy minute are one batch), not a few for each; a member twice in
    the list checks in once, the second time being told "already"."""
    keys = list(dict.fromkeys((one.chat_id, one.user_id) for one in arrivals))
    latest = await _latest(conn, keys)
    new: dict[tuple[int, int], dict[str, Any]] = {}  # the check-ins to insert, by member
    for one in arrivals:
        key = (one.chat_id, one.user_id)
        if key in new:
            continue
        last = latest.get(key)
        day = checkin_day(at, zones[one.chat_id], rules.start_hour)
        before = Streak(last.day, last.streak, last.frozen) if last is not None else None
        streak = next_streak(before, day, rules.freezes)
        if streak is None:  # checked in already (or the group moved west)
            continue
        new[key] = {
            "chat_id": one.chat_id,
            "user_id": one.user_id,
            "day": day,
            "at": at,
            "streak": streak.length,
            "frozen": streak.frozen_this_month,
            "points": rules.points + rules.bonuses.get(streak.length, 0),
            "run_id": one.run_id,
        }
    made: dict[tuple[int, int], int] = {}  # the new check-ins' ids
    if new:
        inserted = await conn.execute(
            insert_for(conn, CHECKINS)
            .on_conflict_do_nothing(index_elements=["chat_id", "user_id", "day"])
            .returning(CHECKINS.c.id, CHECKINS.c.chat_id, CHECKINS.c.user_id),
            list(new.values()),
        )
        made = {(chat, user): checkin_id for checkin_id, chat, user in inserted}
    lost = [key for key in new if key not in made]  # a check-in of the same day got in first
    if lost:
        latest.update(await _latest(conn, lost))
        for key in lost:
            del new[key]
    changes = []
    for (chat_id, user_id), made_row in new.items():
        bonus, length = made_row["points"] - rules.points, made_row["streak"]
        changes += [
            Change(chat_id, user_id, rules.points, "check-in", SOURCE, at),
            Change(chat_id, user_id, bonus, f"streak bonus: {length} days", SOURCE, at),
        ]
    await apply(conn, changes)
    counted = {key: (row["day"], made[key]) for key, row in new.items()}
    for key, last in latest.items():
        counted.setdefault(key, (last.day, last.id))
    ranks = await _ranks(conn, counted)
    totals = await balances_of(conn, keys)
    results: list[CheckedIn] = []
    told: set[tuple[int, int]] = set()  # members told of their new check-in already
    for one in arrivals:
        key = (one.chat_id, one.user_id)
        rank, total = ranks[key], totals.get(key, 0)
        row = new.get(key)
        if row is not None and key not in told:
            told.add(key)
            bonus = row["points"] - rules.points
            results.append(
                CheckedIn(row["day"], True, row["streak"], row["points"], bonus, rank, total)
            )
        elif row is not None:
            results.append(CheckedIn(row["day"], False, row["streak"], 0, 0, rank, total))
        else:
            last = latest[key]
            results.append(CheckedIn(last.day, False, last.streak, 0, 0, rank, total))
    return results


async def _latest(
    conn: AsyncConnection, keys: Sequence[tuple[int, int]]
) -> dict[tuple[int, int], Row[Any, Any, Any, Any, Any, Any]]:
    """Each member's latest check-in in the group (id, chat, member, day, streak, frozen)."""
    found: dict[tuple[int, int], Row[Any, Any, Any, Any, Any, Any]] = {}
    other = CHECKINS.alias("other")
    last_day = (
        select(func.max(other.c.day))
        .where(other.c.chat_id == CHECKINS.c.chat_id, other.c.user_id == CHECKINS.c.user_id)
        .scalar_subquery()
    )
    for start in range(0, len(keys), CHUNK):
        rows = await conn.execute(
            select(
                CHECKINS.c.id,
                CHECKINS.c.chat_id,
                CHECKINS.c.user_id,
                CHECKINS.c.day,
                CHECKINS.c.streak,
                CHECKINS.c.frozen,
            ).where(
                pairs_in(CHECKINS.c.chat_id, CHECKINS.c.user_id, keys[start : start + CHUNK]),
                CHECKINS.c.day == last_day,
            )
        )
        found.update({(row.chat_id, row.user_id): row for row in rows})
    return found


async def _ranks(
    conn: AsyncConnection, counted: Mapping[tuple[int, int], tuple[date, int]]
) -> dict[tuple[int, int], int]:
    """Place of each member's check-in (day, id) among its day's in the group (ids grow with
    time)."""
    days = sorted({(chat_id, day) for (chat_id, _user), (day, _id) in counted.items()})
    ids: dict[tuple[int, date], list[int]] = {}
    for start in range(0, len(days), CHUNK):
        rows = await conn.execute(
            select(CHECKINS.c.chat_id, CHECKINS.c.day, CHECKINS.c.id)
            .where(pairs_in(CHECKINS.c.chat_id, CHECKINS.c.day, days[start : start + CHUNK]))
            .order_by(CHECKINS.c.id)
        )
        for chat_id, day, checkin_id in rows:
            ids.setdefault((chat_id, day), []).append(checkin_id)
    return {
        (chat_id, user_id): bisect_right(ids.get((chat_id, day), []), checkin_id)
        for (chat_id, user_id), (day, checkin_id) in counted.items()
    }
