"""Leaderboards and standings: periods in the group's time, points earned, ranks, lapsed streaks."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from aiogram.types import User
from sqlalchemy import insert
from sqlalchemy.ext.asyncio import AsyncEngine

from bot import points
from bot.checkin.boards import Leaderboards, board_context, span_of
from bot.checkin.service import CheckinRules
from bot.db import MEMBER_DAYS, writing
from bot.handlers.boards import parse_period
from bot.registry import Registry
from tests.test_checkin_service import CheckIns

GROUP = -1001
SHANGHAI = ZoneInfo("Asia/Shanghai")
RULES = CheckinRules(start_hour=4, points=10, freezes=1)
MONDAY = datetime(2026, 11, 2, 1, tzinfo=UTC)  # Monday 09:00 in Shanghai


def test_spans_follow_check_in_days() -> None:
    sunday = date(2026, 11, 8)
    assert (span_of("week", sunday).first, span_of("week", sunday).last) == (
        date(2026, 11, 2),
        date(2026, 11, 8),
    )
    last = span_of("last_week", date(2026, 11, 9))
    assert (last.first, last.last) == (date(2026, 11, 2), date(2026, 11, 8))
    december = span_of("month", date(2026, 12, 31))
    assert (december.first, december.last) == (date(2026, 12, 1), date(2026, 12, 31))
    assert span_of("all", sunday).first is None
    # The week begins at the start hour on Monday, on the group's clock.
    assert span_of("week", sunday).since(SHANGHAI, 4) == datetime(2026, 11, 1, 20, tzinfo=UTC)


def test_period_words() -> None:
    assert [parse_period(word) for word in ("", " Month ", "all", "总榜", "本周")] == [
        "week",
        "month",
        "all",
        "all",
        "week",
    ]
    assert parse_period("yesterday") is None


async def test_boards_rank_by_check_ins_and_points_earned(
    engine: AsyncEngine, registry: Registry
) -> None:
    for user_id, name in ((1, "Ann"), (2, "Bob"), (3, "Cy")):
        member = User(id=user_id, is_bot=False, first_name=name)
        await registry.member_joined(GROUP, member, MONDAY, source="chat_member")
    checkins = CheckIns(engine)
    for day in range(3):
        for user_id in (1, 2)[: 1 + (day > 0)]:
            await checkins.check_in(GROUP, user_id, MONDAY + timedelta(days=day), SHANGHAI, RULES)
    # Cy earns the most points, then spends most of them: a board counts points earned.
    # Spends, and gains from redemptions (refunds), do not count.
    async with writing(engine) as conn:
        at = MONDAY + timedelta(hours=2)
        await points.apply(conn, [points.Change(GROUP, 3, 100, "helped", "admin:9", at)])
        await points.apply(conn, [points.Change(GROUP, 3, -90, "mug", "reward:mug", at)])
        await points.apply(conn, [points.Change(GROUP, 2, 90, "refund", "reward:mug", at)])
    # A check-in next Monday at 02:00 still belongs to this week's Sunday.
    late = datetime(2026, 11, 8, 18, tzinfo=UTC)
    await checkins.check_in(GROUP, 1, late, SHANGHAI, RULES)

    boards = Leaderboards(engine)
    board = await boards.board(GROUP, "week", MONDAY, SHANGHAI, 4)
    assert [(e.rank, e.name, e.value) for e in board.checkins] == [(1, "Ann", 4), (2, "Bob", 2)]
    assert [(e.name, e.value) for e in board.points] == [("Cy", 100), ("Ann", 40), ("Bob", 20)]
    following = await boards.board(GROUP, "week", MONDAY + timedelta(days=7), SHANGHAI, 4)
    assert following.checkins == [] and following.points == []
    assert len((await boards.board(GROUP, "all", MONDAY, SHANGHAI, 4, limit=1)).points) == 1

    shown = board_context(board.as_variables())
    assert shown is not None
    assert [e["shown"].startswith("<a ") for e in shown["checkins"] + shown["points"]] == [
        True,
        True,
        True,
        False,
        False,
    ]

    ann = await boards.standing(GROUP, 1, late, SHANGHAI, 4, freezes=1)
    assert (ann.balance, ann.streak, ann.checkins) == (40, 1, 4)  # Thu-Sat broke it
    assert (ann.week_checkins, ann.week_rank, ann.points_rank) == (4, 1, 2)
    assert ann.tier == "new"
    # Three days later without a check-in the streak has lapsed, even with one freeze.
    lapsed = await boards.standing(GROUP, 1, late + timedelta(days=3), SHANGHAI, 4, freezes=1)
    assert lapsed.streak == 0
    # One missed day is covered by the freeze: the streak still stands.
    covered = await boards.standing(GROUP, 1, late + timedelta(days=2), SHANGHAI, 4, freezes=1)
    assert covered.streak == 1
    nobody = await boards.standing(GROUP, 42, late, SHANGHAI, 4)
    assert (nobody.balance, nobody.streak, nobody.week_rank, nobody.tier) == (0, 0, None, None)
    assert (nobody.messages_30d, nobody.active_days_30d) == (0, 0)


async def test_a_standing_has_the_last_30_days_of_messages(engine: AsyncEngine) -> None:
    today = date(2026, 11, 9)  # `late` below, in Shanghai
    days = [(today, 3), (today - timedelta(days=29), 2), (today - timedelta(days=30), 50)]
    async with writing(engine) as conn:
        await conn.execute(
            insert(MEMBER_DAYS),
            [
                {"chat_id": GROUP, "user_id": 1, "day": day, "messages": n, "presses": 0}
                for day, n in days
            ],
        )
    late = datetime(2026, 11, 8, 18, tzinfo=UTC)
    ann = await Leaderboards(engine).standing(GROUP, 1, late, SHANGHAI, 4)
    assert (ann.messages_30d, ann.active_days_30d) == (5, 2)  # the 31st day back is out
