"""Leaderboards and a member's standing: check-ins and points earned over a week, a month or all.

Periods follow the group's check-in days (bot.checkin.days): a week runs Monday to Sunday, and a
day begins at the check-in start hour on the group's wall clock. Points on a board are points
earned (gains of the ledger), so spending on a reward never drops a member down the board, and
a refund of a cancelled order is not counted as earned.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Any, Literal
from zoneinfo import ZoneInfo

from markupsafe import escape
from sqlalchemy import Select, func, select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from bot.checkin.days import Streak, checkin_day, next_streak
from bot.db import BALANCES, CHECKINS, MEMBERS, POINTS
from bot.sop.templates import mention
from bot.stats.metrics import member_activity, window

Period = Literal["week", "last_week", "month", "all"]
PERIODS: tuple[Period, ...] = ("week", "last_week", "month", "all")
LIMIT = 10
RECENT_DAYS = 30  # a standing's recent activity: messages and active days
REFUNDS = "reward:%"  # ledger sources of redemptions and their refunds: not points earned


@dataclass(frozen=True, slots=True)
class Span:
    """The check-in days a board covers (both inclusive; None: since the beginning)."""

    period: Period
    first: date | None
    last: date | None

    def since(self, zone: ZoneInfo, start_hour: int) -> datetime | None:
        """The moment the span begins."""
        if self.first is None:
            return None
        return datetime.combine(self.first, time(start_hour), tzinfo=zone)

    def until(self, zone: ZoneInfo, start_hour: int) -> datetime | None:
        """The moment after the span."""
        if self.last is None:
            return None
        return datetime.combine(self.last + timedelta(days=1), time(start_hour), tzinfo=zone)


def span_of(period: Period, today: date) -> Span:
    """The days of `period` as seen on the check-in day `today`."""
    monday = today - timedelta(days=today.weekday())
    if period == "week":
        return Span(period, monday, monday + timedelta(days=6))
    if period == "last_week":
        return Span(period, monday - timedelta(days=7), monday - timedelta(days=1))
    if period == "month":
        first = today.replace(day=1)
        following = (first + timedelta(days=32)).replace(day=1)
        return Span(period, first, following - timedelta(days=1))
    return Span(period, None, None)


@dataclass(frozen=True, slots=True)
class Entry:
    """One line of a board."""

    rank: int
    user_id: int
    name: str
    value: int


@dataclass(frozen=True, slots=True)
class Board:
    """The top members of a group over a span, by check-ins and by points earned."""

    span: Span
    checkins: list[Entry]
    points: list[Entry]

    def as_variables(self) -> dict[str, Any]:
        """The `leaderboard` variable of SOP texts (JSON, stored with the run)."""

        def entries(rows: list[Entry]) -> list[dict[str, Any]]:
            return [
                {"rank": e.rank, "user_id": e.user_id, "name": e.name, "value": e.value}
                for e in rows
            ]

        return {
            "period": self.span.period,
            "first_day": self.span.first.isoformat() if self.span.first else None,
            "last_day": self.span.last.isoformat() if self.span.last else None,
            "checkins": entries(self.checkins),
            "points": entries(self.points),
        }


@dataclass(frozen=True, slots=True)
class Standing:
    """What /me shows: a member's points, streak, place on this week's boards and recent days."""

    balance: int
    streak: int  # 0 when the streak has lapsed
    checkins: int  # check-in days in all
    week_checkins: int
    week_rank: int | None  # place by check-ins this week; None without one
    points_rank: int | None  # place by points earned this week
    tier: str | None
    messages_30d: int = 0  # messages in the last 30 days of the group's calendar
    active_days_30d: int = 0  # days with a message among them


class Leaderboards:
    """Reads boards and standings from the check-ins, the points ledger and the daily rollups."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    async def board(
        self,
        chat_id: int,
        period: Period,
        now: datetime,
        zone: ZoneInfo,
        start_hour: int = 0,
        limit: int = LIMIT,
    ) -> Board:
        span = span_of(period, checkin_day(now, zone, start_hour))
        async with self.engine.connect() as conn:
            by_checkins = await conn.execute(
                _names(_checkin_counts(chat_id, span).limit(limit).subquery(), chat_id)
            )
            since, until = span.since(zone, start_hour), span.until(zone, start_hour)
            by_points = await conn.execute(
                _names(_points_earned(chat_id, since, until).limit(limit).subquery(), chat_id)
            )
            return Board(span, _entries(by_checkins), _entries(by_points))

    async def standing(
        self,
        chat_id: int,
        user_id: int,
        now: datetime,
        zone: ZoneInfo,
        start_hour: int = 0,
        freezes: int = 0,
    ) -> Standing:
        today = checkin_day(now, zone, start_hour)
        week = span_of("week", today)
        async with self.engine.connect() as conn:
            balance = (
                await conn.execute(
                    select(BALANCES.c.balance).where(
                        BALANCES.c.chat_id == chat_id, BALANCES.c.user_id == user_id
                    )
                )
            ).scalar_one_or_none() or 0
            streak = (await _streaks(conn, chat_id, [user_id], today, freezes)).get(user_id, 0)
            total = (
                await conn.execute(
                    select(func.count())
                    .select_from(CHECKINS)
                    .where(CHECKINS.c.chat_id == chat_id, CHECKINS.c.user_id == user_id)
                )
            ).scalar_one()
            week_rank, week_count = await _place(conn, _checkin_counts(chat_id, week), user_id)
            since, until = week.since(zone, start_hour), week.until(zone, start_hour)
            points_rank, _ = await _place(conn, _points_earned(chat_id, since, until), user_id)
            tier = (
                await conn.execute(
                    select(MEMBERS.c.tier).where(
                        MEMBERS.c.chat_id == chat_id, MEMBERS.c.user_id == user_id
                    )
                )
            ).scalar_one_or_none()
        first, last = window(now.astimezone(zone).date(), RECENT_DAYS)
        recent = await member_activity(self.engine, chat_id, user_id, first, last)
        return Standing(
            balance,
            streak,
            total,
            week_count,
            week_rank,
            points_rank,
            tier,
            recent.messages,
            recent.active_days,
        )

    async def streaks(
        self,
        chat_id: int,
        user_ids: list[int],
        now: datetime,
        zone: ZoneInfo,
        start_hour: int = 0,
        freezes: int = 0,
    ) -> dict[int, int]:
        """Members' current check-in streaks (0 once lapsed beyond the allowed misses)."""
        today = checkin_day(now, zone, start_hour)
        async with self.engine.connect() as conn:
            return await _streaks(conn, chat_id, user_ids, today, freezes)


async def _streaks(
    conn: AsyncConnection, chat_id: int, user_ids: list[int], today: date, freezes: int
) -> dict[int, int]:
    """Each member's streak as it stands today: their latest check-in's, unless lapsed."""
    found: dict[int, int] = {}
    for start in range(0, len(user_ids), 500):
        chunk = user_ids[start : start + 500]
        latest = (
            select(CHECKINS.c.user_id, func.max(CHECKINS.c.day).label("day"))
            .where(CHECKINS.c.chat_id == chat_id, CHECKINS.c.user_id.in_(chunk))
            .group_by(CHECKINS.c.user_id)
            .subquery()
        )
        rows = await conn.execute(
            select(CHECKINS.c.user_id, CHECKINS.c.day, CHECKINS.c.streak, CHECKINS.c.frozen)
            .join(
                latest,
                (CHECKINS.c.user_id == latest.c.user_id) & (CHECKINS.c.day == latest.c.day),
            )
            .where(CHECKINS.c.chat_id == chat_id)
        )
        for row in rows:
            then = next_streak(Streak(row.day, row.streak, row.frozen), today, freezes)
            # None: checked in today; a new streak of 1: the old one lapsed
            found[row.user_id] = row.streak if then is None or then.length > 1 else 0
    return found


def _checkin_counts(chat_id: int, span: Span) -> Select[Any]:
    count = func.count().label("value")
    query = select(CHECKINS.c.user_id, count, func.min(CHECKINS.c.at).label("since")).where(
        CHECKINS.c.chat_id == chat_id
    )
    if span.first is not None and span.last is not None:
        query = query.where(CHECKINS.c.day >= span.first, CHECKINS.c.day <= span.last)
    return query.group_by(CHECKINS.c.user_id).order_by(
        count.desc(), func.min(CHECKINS.c.at), CHECKINS.c.user_id
    )


def _points_earned(chat_id: int, since: datetime | None, until: datetime | None) -> Select[Any]:
    earned = func.sum(POINTS.c.delta).label("value")
    query = select(POINTS.c.user_id, earned, func.min(POINTS.c.at).label("since")).where(
        POINTS.c.chat_id == chat_id, POINTS.c.delta > 0, POINTS.c.source.not_like(REFUNDS)
    )
    if since is not None:
        query = query.where(POINTS.c.at >= since)
    if until is not None:
        query = query.where(POINTS.c.at < until)
    return query.group_by(POINTS.c.user_id).order_by(
        earned.desc(), func.min(POINTS.c.at), POINTS.c.user_id
    )


def _names(ranked: Any, chat_id: int) -> Select[Any]:
    """The ranked rows with the members' names, in rank order."""
    return (
        select(
            ranked.c.user_id,
            ranked.c.value,
            MEMBERS.c.first_name,
            MEMBERS.c.last_name,
            MEMBERS.c.username,
        )
        .select_from(ranked)
        .outerjoin(
            MEMBERS, (MEMBERS.c.chat_id == chat_id) & (MEMBERS.c.user_id == ranked.c.user_id)
        )
        .order_by(ranked.c.value.desc(), ranked.c.since, ranked.c.user_id)
    )


def _entries(rows: Any) -> list[Entry]:
    entries = []
    for rank, row in enumerate(rows, start=1):
        name = " ".join(part for part in (row.first_name, row.last_name) if part)
        name = name or (f"@{row.username}" if row.username else str(row.user_id))
        entries.append(Entry(rank, row.user_id, name, int(row.value)))
    return entries


async def _place(
    conn: AsyncConnection, ranked: Select[Any], user_id: int
) -> tuple[int | None, int]:
    """The member's place on a ranked query and their value there (None, 0 when not on it)."""
    board = ranked.subquery()
    mine = (
        await conn.execute(select(board.c.value, board.c.since).where(board.c.user_id == user_id))
    ).first()
    if mine is None:
        return None, 0
    ahead = await conn.execute(
        select(func.count())
        .select_from(board)
        .where(
            (board.c.value > mine.value)
            | ((board.c.value == mine.value) & (board.c.since < mine.since))
            | (
                (board.c.value == mine.value)
                & (board.c.since == mine.since)
                & (board.c.user_id < user_id)
            )
        )
    )
    return int(ahead.scalar_one()) + 1, int(mine.value)


def board_context(board: dict[str, Any] | None) -> dict[str, Any] | None:
    """The `leaderboard` of SOP texts: each entry gets `mention` and `shown`, which is the
    mention the first time a member appears in the message and the plain name after, so a
    winner on both boards is pinged once."""
    if board is None:
        return None
    seen: set[int] = set()
    lists: dict[str, list[dict[str, Any]]] = {}
    for kind in ("checkins", "points"):
        lists[kind] = []
        for entry in board.get(kind, []):
            link = mention(entry["user_id"], entry["name"])
            first = entry["user_id"] not in seen
            seen.add(entry["user_id"])
            shown = link if first else escape(entry["name"])
            lists[kind].append({**entry, "mention": link, "shown": shown})
    return {**board, **lists}
