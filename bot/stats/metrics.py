"""A group's metrics over a window of days of its own calendar, read from the rollups.

Every number here comes from the daily tables (`bot.stats.rollup`) and a few small tables
(members, check-ins, lotteries, SOP sends), by group and day, so a 90-day window of a busy
group is a handful of indexed reads. Definitions (the README repeats them):

- members at start / end: people (not bots) who had joined (or first been seen) by the start of
  the first day / the end of the last day and had not left since;
- active members: distinct members who wrote at least once; daily is the average per day,
  weekly and monthly count the last 7 and 30 days of the window; the active ratio is the
  window's active members over the members at the end;
- concentration: the share of the window's messages written by its top 10 % of writers;
- retention: of the members who joined in the window, how many wrote again 1, 7 and 30 days
  after the day they joined or later (only those whose day N has come are counted);
- silent members: members at the end (as counted above) who wrote nothing in the window;
- check-in rate: check-ins over (members at the end × days);
- SOP step response: members who wrote or pressed a button in the group within 24 h after an
  SOP sent them a step, per variant, with a two-proportion z-test between the two variants of
  a step that were sent most (significant when p < 0.05 and each has 5+ answers and non-answers).
"""

from __future__ import annotations

import asyncio
import math
from collections import defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from functools import partial
from typing import Any

from sqlalchemy import and_, case, distinct, func, or_, select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from bot.db import (
    CHECKINS,
    GROUP_DAYS,
    GROUP_HOURS,
    LOTTERIES,
    LOTTERY_ENTRIES,
    MEMBER_DAYS,
    MEMBERS,
    SOP_SENDS,
)

RETENTION_DAYS = (1, 7, 30)
SIGNIFICANCE = 0.05


@dataclass(frozen=True, slots=True)
class Day:
    """One day of the window: what the chart draws."""

    day: date
    messages: int
    active: int
    joins: int
    leaves: int


@dataclass(frozen=True, slots=True)
class StepResponse:
    sop: str
    step: str
    variant: str | None
    sent: int
    answered: int

    @property
    def rate(self) -> float:
        return self.answered / self.sent if self.sent else 0.0


@dataclass(frozen=True, slots=True)
class Comparison:
    """Two variants of one step: which answered better, and whether that is more than chance."""

    sop: str
    step: str
    better: StepResponse
    worse: StepResponse
    p_value: float | None  # None: too few sends to test
    significant: bool


@dataclass
class GroupMetrics:
    chat_id: int
    first: date
    last: date
    members_start: int = 0
    members_end: int = 0
    joins: int = 0
    leaves: int = 0
    messages: int = 0
    presses: int = 0
    daily_active: float = 0.0
    weekly_active: int = 0
    monthly_active: int = 0
    active: int = 0
    concentration: float = 0.0
    retention: dict[int, tuple[int, int]] = field(default_factory=dict)  # N: (wrote, counted)
    silent: int = 0
    heatmap: list[list[int]] = field(default_factory=lambda: [[0] * 24 for _ in range(7)])
    checkins: int = 0
    checkin_members: int = 0
    lotteries: int = 0
    lottery_entries: int = 0
    lottery_entrants: int = 0
    live_subscriptions: int = 0
    live_clicks: int = 0
    days: list[Day] = field(default_factory=list)
    steps: list[StepResponse] = field(default_factory=list)
    comparisons: list[Comparison] = field(default_factory=list)

    @property
    def length(self) -> int:
        return (self.last - self.first).days + 1

    @property
    def active_ratio(self) -> float:
        return self.active / self.members_end if self.members_end else 0.0

    @property
    def checkin_rate(self) -> float:
        possible = self.members_end * self.length
        return self.checkins / possible if possible else 0.0

    @property
    def lottery_participation(self) -> float:
        return self.lottery_entrants / self.members_end if self.members_end else 0.0

    def retention_rate(self, days: int) -> float | None:
        wrote, counted = self.retention.get(days, (0, 0))
        return wrote / counted if counted else None

    def as_dict(self) -> dict[str, Any]:
        """Every figure, for JSON and CSV."""
        return {
            "chat_id": self.chat_id,
            "first_day": self.first.isoformat(),
            "last_day": self.last.isoformat(),
            "members_start": self.members_start,
            "members_end": self.members_end,
            "joins": self.joins,
            "leaves": self.leaves,
            "messages": self.messages,
            "presses": self.presses,
            "daily_active": round(self.daily_active, 2),
            "weekly_active": self.weekly_active,
            "monthly_active": self.monthly_active,
            "active": self.active,
            "active_ratio": round(self.active_ratio, 4),
            "concentration_top10": round(self.concentration, 4),
            **{f"retention_{n}d": _round(self.retention_rate(n)) for n in RETENTION_DAYS},
            "silent": self.silent,
            "checkins": self.checkins,
            "checkin_members": self.checkin_members,
            "checkin_rate": round(self.checkin_rate, 4),
            "lotteries": self.lotteries,
            "lottery_entries": self.lottery_entries,
            "lottery_entrants": self.lottery_entrants,
            "lottery_participation": round(self.lottery_participation, 4),
            "live_subscriptions": self.live_subscriptions,
            "live_clicks": self.live_clicks,
        }


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 4)


def window(today: date, days: int) -> tuple[date, date]:
    """The `days` days ending with `today`."""
    return today - timedelta(days=days - 1), today


def bounds(first: date, last: date, zone: tzinfo) -> tuple[datetime, datetime]:
    """The UTC moments where the window's first day starts and its last day ends."""
    start = datetime.combine(first, time(0), tzinfo=zone).astimezone(UTC)
    end = datetime.combine(last + timedelta(days=1), time(0), tzinfo=zone).astimezone(UTC)
    return start, end


async def group_metrics(
    engine: AsyncEngine, chat_id: int, first: date, last: date, zone: tzinfo
) -> GroupMetrics:
    """The group's metrics for the days `first` to `last` (inclusive) of its calendar."""
    found = GroupMetrics(chat_id, first, last)
    start, end = bounds(first, last, zone)

    async def counted(*parts: Callable[[AsyncConnection], Awaitable[None]]) -> None:
        async with engine.connect() as conn:
            for part in parts:
                await part(conn)

    # Two connections at once (each part fills fields of its own): the database works on one
    # while Python reads the other's rows, and a busy group's answer comes in about half the time.
    await asyncio.gather(
        counted(
            partial(_totals, found=found),
            partial(_members, found=found, start=start, end=end),
            partial(_activity, found=found, end=end),  # after _members: it reads members_end
        ),
        counted(
            partial(_retention, found=found, zone=zone),
            partial(_heatmap, found=found),
            partial(_checkins_and_lotteries, found=found, start=start, end=end),
            partial(_steps, found=found, start=start, end=end),
        ),
    )
    return found


async def _totals(conn: AsyncConnection, found: GroupMetrics) -> None:
    rows = await conn.execute(
        select(GROUP_DAYS).where(
            GROUP_DAYS.c.chat_id == found.chat_id,
            GROUP_DAYS.c.day.between(found.first, found.last),
        )
    )
    by_day = {row.day: row for row in rows}
    per_day = await conn.execute(
        select(MEMBER_DAYS.c.day, func.count())
        .where(
            MEMBER_DAYS.c.chat_id == found.chat_id,
            MEMBER_DAYS.c.day.between(found.first, found.last),
            MEMBER_DAYS.c.messages > 0,
        )
        .group_by(MEMBER_DAYS.c.day)
    )
    actives: dict[date, int] = {day: count for day, count in per_day}
    for offset in range(found.length):
        day = found.first + timedelta(days=offset)
        row = by_day.get(day)
        found.days.append(
            Day(
                day,
                row.messages if row else 0,
                int(actives.get(day, 0)),
                row.joins if row else 0,
                row.leaves if row else 0,
            )
        )
        if row is not None:
            found.messages += row.messages
            found.joins += row.joins
            found.leaves += row.leaves
            found.presses += row.presses
            found.lottery_entries += row.lottery_entries
            found.live_subscriptions += row.live_subscriptions
            found.live_clicks += row.live_clicks
    found.daily_active = sum(day.active for day in found.days) / max(found.length, 1)


def _present_at(moment: datetime) -> Any:
    """Members (people) in the group at `moment`, as far as the members table tells."""
    since = func.coalesce(MEMBERS.c.joined_at, MEMBERS.c.first_activity_at)
    return and_(
        MEMBERS.c.is_bot.is_(False),
        since < moment,
        or_(MEMBERS.c.left_at.is_(None), MEMBERS.c.left_at >= moment, MEMBERS.c.left_at < since),
    )


async def _members(
    conn: AsyncConnection, found: GroupMetrics, start: datetime, end: datetime
) -> None:
    """The members at the start and at the end of the window, in one pass over the group's."""
    counts = await conn.execute(
        select(
            func.coalesce(func.sum(case((_present_at(start), 1), else_=0)), 0),
            func.coalesce(func.sum(case((_present_at(end), 1), else_=0)), 0),
        ).where(MEMBERS.c.chat_id == found.chat_id)
    )
    at_start, at_end = counts.one()
    found.members_start, found.members_end = int(at_start), int(at_end)


async def _activity(conn: AsyncConnection, found: GroupMetrics, end: datetime) -> None:
    """Active members, concentration and silent members, from each member's messages.

    Counted in the database as far as it goes: a busy group has thousands of writers, and
    each row brought into Python costs more than the query (its day most of all). Runs after
    `_members`: the silent are the members at the end who did not write."""
    week = found.last - timedelta(days=6)
    month = found.last - timedelta(days=29)
    in_window = and_(
        MEMBER_DAYS.c.chat_id == found.chat_id,
        MEMBER_DAYS.c.day.between(found.first, found.last),
        MEMBER_DAYS.c.messages > 0,
    )
    latest = func.max(MEMBER_DAYS.c.day)
    writers = (
        select(
            func.sum(MEMBER_DAYS.c.messages).label("messages"),
            case((latest >= week, 1), else_=0).label("week"),
            case((latest >= month, 1), else_=0).label("month"),
        )
        .where(in_window)
        .group_by(MEMBER_DAYS.c.user_id)
        .subquery()
    )
    ranked = select(
        writers,
        func.row_number().over(order_by=writers.c.messages.desc()).label("rank"),
        func.count().over().label("writers"),
    ).subquery()
    # The top tenth of the writers (at least one): rank <= ceil(writers / 10).
    top = case((ranked.c.rank <= (ranked.c.writers + 9) // 10, ranked.c.messages), else_=0)
    row = (
        await conn.execute(
            select(
                func.count(),
                func.coalesce(func.sum(ranked.c.week), 0),
                func.coalesce(func.sum(ranked.c.month), 0),
                func.coalesce(func.sum(ranked.c.messages), 0),
                func.coalesce(func.sum(top), 0),
            )
        )
    ).one()
    found.active, found.weekly_active, found.monthly_active = int(row[0]), int(row[1]), int(row[2])
    if row[3]:
        found.concentration = int(row[4]) / int(row[3])
    wrote = MEMBERS.c.user_id.in_(select(MEMBER_DAYS.c.user_id).where(in_window))
    present_writers = await conn.execute(
        select(func.count()).where(MEMBERS.c.chat_id == found.chat_id, _present_at(end), wrote)
    )
    found.silent = found.members_end - int(present_writers.scalar() or 0)


async def _retention(conn: AsyncConnection, found: GroupMetrics, zone: tzinfo) -> None:
    start, end = bounds(found.first, found.last, zone)
    joiners = and_(
        MEMBERS.c.chat_id == found.chat_id,
        MEMBERS.c.is_bot.is_(False),
        MEMBERS.c.joined_at >= start,
        MEMBERS.c.joined_at < end,
    )
    joined = {
        user_id: at.astimezone(zone).date()
        for user_id, at in await conn.execute(
            select(MEMBERS.c.user_id, MEMBERS.c.joined_at).where(joiners)
        )
    }
    latest: dict[int, date] = {}
    if joined:
        # The joiners again as a subquery, not as their ids: a busy month has a thousand.
        rows = await conn.execute(
            select(MEMBER_DAYS.c.user_id, func.max(MEMBER_DAYS.c.day))
            .where(
                MEMBER_DAYS.c.chat_id == found.chat_id,
                MEMBER_DAYS.c.user_id.in_(select(MEMBERS.c.user_id).where(joiners)),
                MEMBER_DAYS.c.day <= found.last,
                MEMBER_DAYS.c.messages > 0,
            )
            .group_by(MEMBER_DAYS.c.user_id)
        )
        latest = {user_id: day for user_id, day in rows}
    for days in RETENTION_DAYS:
        counted = [user for user, day in joined.items() if day + timedelta(days=days) <= found.last]
        wrote = sum(
            1
            for user in counted
            if user in latest and latest[user] >= joined[user] + timedelta(days=days)
        )
        found.retention[days] = (wrote, len(counted))


async def _heatmap(conn: AsyncConnection, found: GroupMetrics) -> None:
    rows = await conn.execute(
        select(GROUP_HOURS.c.day, GROUP_HOURS.c.hour, GROUP_HOURS.c.messages).where(
            GROUP_HOURS.c.chat_id == found.chat_id,
            GROUP_HOURS.c.day.between(found.first, found.last),
        )
    )
    for day, hour, messages in rows:
        found.heatmap[day.weekday()][hour] += messages


async def _checkins_and_lotteries(
    conn: AsyncConnection, found: GroupMetrics, start: datetime, end: datetime
) -> None:
    checkins = await conn.execute(
        select(func.count(), func.count(distinct(CHECKINS.c.user_id))).where(
            CHECKINS.c.chat_id == found.chat_id, CHECKINS.c.day.between(found.first, found.last)
        )
    )
    found.checkins, found.checkin_members = checkins.one()
    lotteries = await conn.execute(
        select(func.count()).where(
            LOTTERIES.c.chat_id == found.chat_id,
            LOTTERIES.c.created_at >= start,
            LOTTERIES.c.created_at < end,
        )
    )
    found.lotteries = int(lotteries.scalar() or 0)
    entrants = await conn.execute(
        select(func.count(distinct(LOTTERY_ENTRIES.c.user_id)))
        .select_from(
            LOTTERY_ENTRIES.join(LOTTERIES, LOTTERIES.c.id == LOTTERY_ENTRIES.c.lottery_id)
        )
        .where(
            LOTTERIES.c.chat_id == found.chat_id,
            LOTTERY_ENTRIES.c.entered_at >= start,
            LOTTERY_ENTRIES.c.entered_at < end,
        )
    )
    found.lottery_entrants = int(entrants.scalar() or 0)


async def _steps(
    conn: AsyncConnection, found: GroupMetrics, start: datetime, end: datetime
) -> None:
    rows = await conn.execute(
        select(
            SOP_SENDS.c.sop,
            SOP_SENDS.c.step,
            SOP_SENDS.c.variant,
            func.count(),
            func.count(SOP_SENDS.c.responded_at),
        )
        .where(
            SOP_SENDS.c.chat_id == found.chat_id,
            SOP_SENDS.c.sent_at >= start,
            SOP_SENDS.c.sent_at < end,
        )
        .group_by(SOP_SENDS.c.sop, SOP_SENDS.c.step, SOP_SENDS.c.variant)
        .order_by(SOP_SENDS.c.sop, SOP_SENDS.c.step, SOP_SENDS.c.variant)
    )
    found.steps = [StepResponse(*row) for row in rows]
    by_step: dict[tuple[str, str], list[StepResponse]] = defaultdict(list)
    for response in found.steps:
        if response.variant is not None:
            by_step[response.sop, response.step].append(response)
    for (sop, step), variants in by_step.items():
        if len(variants) >= 2:
            a, b = sorted(variants, key=lambda v: v.sent, reverse=True)[:2]
            found.comparisons.append(compare(sop, step, a, b))


def compare(sop: str, step: str, a: StepResponse, b: StepResponse) -> Comparison:
    """The two-proportion z-test of two variants' answer rates (two-sided)."""
    better, worse = (a, b) if a.rate >= b.rate else (b, a)
    enough = all(
        r.answered >= 5 and r.sent - r.answered >= 5 for r in (a, b)
    )  # the normal approximation needs 5+ of each outcome
    if not enough:
        return Comparison(sop, step, better, worse, None, False)
    p_value = two_proportion_p(a.answered, a.sent, b.answered, b.sent)
    return Comparison(sop, step, better, worse, p_value, p_value < SIGNIFICANCE)


def two_proportion_p(x1: int, n1: int, x2: int, n2: int) -> float:
    """The two-sided p-value of H0: both proportions are equal (pooled z-test)."""
    pooled = (x1 + x2) / (n1 + n2)
    spread = math.sqrt(pooled * (1 - pooled) * (1 / n1 + 1 / n2))
    if spread == 0:
        return 1.0
    z = (x1 / n1 - x2 / n2) / spread
    return math.erfc(abs(z) / math.sqrt(2))


@dataclass(frozen=True, slots=True)
class MemberActivity:
    messages: int
    active_days: int
    presses: int
    last_day: date | None  # the last day the member wrote


async def member_activity(
    engine: AsyncEngine, chat_id: int, user_id: int, first: date, last: date
) -> MemberActivity:
    """One member's messages, days with a message and presses from `first` to `last`."""
    async with engine.connect() as conn:
        rows = list(
            await conn.execute(
                select(MEMBER_DAYS.c.day, MEMBER_DAYS.c.messages, MEMBER_DAYS.c.presses).where(
                    MEMBER_DAYS.c.chat_id == chat_id,
                    MEMBER_DAYS.c.user_id == user_id,
                    MEMBER_DAYS.c.day.between(first, last),
                )
            )
        )
    wrote = [row.day for row in rows if row.messages]
    return MemberActivity(
        sum(row.messages for row in rows),
        len(wrote),
        sum(row.presses for row in rows),
        max(wrote, default=None),
    )
