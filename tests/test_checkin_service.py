"""Checking in against the database: once a day, points and bonuses in the ledger, ranks."""

from __future__ import annotations

import asyncio
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.checkin.service import Arrival, CheckedIn, CheckinRules, check_in, check_in_all
from bot.db import CHECKINS, POINTS, writing

GROUP = -1001
SHANGHAI = ZoneInfo("Asia/Shanghai")
RULES = CheckinRules(start_hour=4, points=10, freezes=1, bonuses={3: 5, 7: 20})
MORNING = datetime(2026, 11, 23, 1, tzinfo=UTC)  # 09:00 in Shanghai


class CheckIns:
    """Check-ins each in their own write transaction, as an SOP run makes them."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    async def check_in(
        self, chat_id: int, user_id: int, at: datetime, zone: ZoneInfo, rules: CheckinRules
    ) -> CheckedIn:
        async with writing(self.engine) as conn:
            return await check_in(conn, chat_id, user_id, at, zone, rules)


async def ledger(engine: AsyncEngine, user_id: int) -> list[tuple[int, str]]:
    async with engine.connect() as conn:
        rows = await conn.execute(
            select(POINTS.c.delta, POINTS.c.reason)
            .where(POINTS.c.user_id == user_id)
            .order_by(POINTS.c.id)
        )
        return [(delta, reason) for delta, reason in rows]


async def test_once_a_day_with_points_streak_bonus_and_rank(engine: AsyncEngine) -> None:
    checkins = CheckIns(engine)
    first = await checkins.check_in(GROUP, 1, MORNING, SHANGHAI, RULES)
    assert (first.day, first.new, first.streak, first.points, first.rank) == (
        date(2026, 11, 23),
        True,
        1,
        10,
        1,
    )
    again = await checkins.check_in(GROUP, 1, MORNING + timedelta(hours=12), SHANGHAI, RULES)
    assert (again.new, again.points, again.streak, again.rank) == (False, 0, 1, 1)
    other = await checkins.check_in(GROUP, 2, MORNING + timedelta(hours=1), SHANGHAI, RULES)
    assert (other.new, other.rank) == (True, 2)
    # 03:00 the next night in Shanghai still counts for the 23rd: no second check-in.
    late = await checkins.check_in(
        GROUP, 1, datetime(2026, 11, 23, 19, tzinfo=UTC), SHANGHAI, RULES
    )
    assert not late.new and late.day == date(2026, 11, 23)

    second = await checkins.check_in(GROUP, 1, MORNING + timedelta(days=1), SHANGHAI, RULES)
    assert (second.streak, second.points, second.rank) == (2, 10, 1)
    # The 25th is missed: one freeze a month keeps the streak; the third day brings its bonus.
    third = await checkins.check_in(GROUP, 1, MORNING + timedelta(days=3), SHANGHAI, RULES)
    assert (third.day, third.streak, third.points, third.bonus) == (date(2026, 11, 26), 3, 15, 5)
    assert await ledger(engine, 1) == [
        (10, "check-in"),
        (10, "check-in"),
        (10, "check-in"),
        (5, "streak bonus: 3 days"),
    ]
    # Two more missed days in November: the streak starts again.
    broken = await checkins.check_in(GROUP, 1, MORNING + timedelta(days=6), SHANGHAI, RULES)
    assert (broken.streak, broken.points) == (1, 10)


async def test_a_double_tap_counts_once(engine: AsyncEngine) -> None:
    checkins = CheckIns(engine)
    results = await asyncio.gather(
        *(checkins.check_in(GROUP, 7, MORNING, SHANGHAI, RULES) for _ in range(5))
    )
    assert sorted(r.new for r in results) == [False] * 4 + [True]
    assert sum(r.points for r in results) == 10
    assert await ledger(engine, 7) == [(10, "check-in")]
    async with engine.connect() as conn:
        rows = (await conn.execute(select(CHECKINS.c.user_id, CHECKINS.c.day))).all()
    assert rows == [(7, date(2026, 11, 23))]


async def test_seven_days_in_a_row_earn_the_bonus_once(engine: AsyncEngine) -> None:
    checkins = CheckIns(engine)
    results = [
        await checkins.check_in(GROUP, 3, MORNING + timedelta(days=n), SHANGHAI, RULES)
        for n in range(8)
    ]
    assert [r.streak for r in results] == [1, 2, 3, 4, 5, 6, 7, 8]
    assert [r.bonus for r in results] == [0, 0, 5, 0, 0, 0, 20, 0]
    total = sum(delta for delta, _reason in await ledger(engine, 3))
    assert total == 8 * 10 + 5 + 20


async def test_many_members_in_many_groups_check_in_together(engine: AsyncEngine) -> None:
    """One call for a cohort: each member's streak, points, rank in their own group (in the
    order given), and a member twice in the list checks in once."""
    other, berlin = -1002, ZoneInfo("Europe/Berlin")
    async with writing(engine) as conn:  # yesterday: member 1 in GROUP, member 5 in the other
        await check_in_all(
            conn,
            [Arrival(GROUP, 1), Arrival(other, 5)],
            MORNING - timedelta(days=1),
            {GROUP: SHANGHAI, other: berlin},
            RULES,
        )
    arrivals = [Arrival(GROUP, 2), Arrival(other, 5), Arrival(GROUP, 1), Arrival(GROUP, 2)]
    async with writing(engine) as conn:
        done = await check_in_all(conn, arrivals, MORNING, {GROUP: SHANGHAI, other: berlin}, RULES)
    assert [(d.new, d.streak, d.points, d.rank, d.balance) for d in done] == [
        (True, 1, 10, 1, 10),
        (True, 2, 10, 1, 20),
        (True, 2, 10, 2, 20),
        (False, 1, 0, 1, 10),  # the second time in the list: already
    ]
    # Each in their group's day: 09:00 in Shanghai, but 02:00 in Berlin, before the day starts.
    assert (done[0].day, done[1].day) == (date(2026, 11, 23), date(2026, 11, 22))
    assert await ledger(engine, 2) == [(10, "check-in")]
