"""The points ledger: balances move with it, never below zero, spends at once never both pass."""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from datetime import UTC, datetime

import pytest
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from bot import points
from bot.db import BALANCES, POINTS, writing
from bot.points import Change, NotEnoughPoints

GROUP = -1001
AT = datetime(2026, 11, 23, 12, tzinfo=UTC)


async def spend(engine: AsyncEngine, user_id: int, amount: int) -> bool:
    try:
        async with writing(engine) as conn:
            await points.apply(conn, [Change(GROUP, user_id, -amount, "gift", "redemption:1", AT)])
    except NotEnoughPoints:
        return False
    return True


async def test_balances_follow_the_ledger_and_refuse_to_go_negative(engine: AsyncEngine) -> None:
    async with writing(engine) as conn:
        await points.apply(
            conn,
            [
                Change(GROUP, 1, 10, "check-in", "checkin", AT),
                Change(GROUP, 1, 5, "streak bonus: 3 days", "checkin", AT),
                Change(GROUP, 2, 3, "welcome gift", "sop:welcome", AT),
                Change(GROUP, 2, 0, "nothing", "sop:welcome", AT),  # not written
            ],
        )
    assert await spend(engine, 1, 12)
    with pytest.raises(NotEnoughPoints, match=r"not enough points \(3\) to take 4"):
        async with writing(engine) as conn:
            await points.apply(conn, [Change(GROUP, 1, -4, "gift", "redemption:2", AT)])
    assert not await spend(engine, 3, 1), "a member who never had points has 0"
    async with engine.connect() as conn:
        assert await points.balance(conn, GROUP, 1) == 3
        assert await points.balances(conn, GROUP, [1, 2, 3]) == {1: 3, 2: 3}
        ledger = (
            await conn.execute(
                select(POINTS.c.user_id, func.sum(POINTS.c.delta), func.count()).group_by(
                    POINTS.c.user_id
                )
            )
        ).all()
    assert sorted(ledger) == [(1, 3, 3), (2, 3, 1)], "refused spends leave no ledger row"


async def test_spends_at_once_never_both_pass(engine: AsyncEngine) -> None:
    async with writing(engine) as conn:
        await points.apply(conn, [Change(GROUP, 5, 10, "check-in", "checkin", AT)])
    results = await asyncio.gather(*(spend(engine, 5, 10) for _ in range(5)))
    assert sorted(results) == [False] * 4 + [True]
    async with engine.connect() as conn:
        assert await points.balance(conn, GROUP, 5) == 0
        total = (
            await conn.execute(select(func.sum(POINTS.c.delta)).where(POINTS.c.user_id == 5))
        ).scalar_one()
    assert total == 0


async def test_the_database_itself_refuses_a_negative_balance(engine: AsyncEngine) -> None:
    async with writing(engine) as conn:
        await points.apply(conn, [Change(GROUP, 6, 1, "check-in", "checkin", AT)])
    with pytest.raises(IntegrityError):
        async with writing(engine) as conn:
            await conn.execute(BALANCES.update().values(balance=-1))


async def test_random_concurrent_changes_keep_the_ledger_invariants(engine: AsyncEngine) -> None:
    """Property: whatever mix of gains and spends runs at once, each member's balance is the sum
    of their ledger rows and never below zero, and a refused spend leaves no row."""
    rng = random.Random(20261123)
    accepted: Counter[int] = Counter()
    for round_no in range(25):
        changes = [
            Change(GROUP, rng.randint(1, 4), rng.choice([-1, 1]) * rng.randint(1, 60), "r", "t", AT)
            for _ in range(rng.randint(1, 12))
        ]

        async def attempt(change: Change) -> bool:
            try:
                async with writing(engine) as conn:
                    await points.apply(conn, [change])
            except NotEnoughPoints:
                return False
            return True

        accepted[round_no] = sum(await asyncio.gather(*(attempt(c) for c in changes)))
        async with engine.connect() as conn:
            sums = dict(
                (
                    await conn.execute(
                        select(POINTS.c.user_id, func.sum(POINTS.c.delta)).group_by(
                            POINTS.c.user_id
                        )
                    )
                ).all()
            )
            balances = dict(
                (await conn.execute(select(BALANCES.c.user_id, BALANCES.c.balance))).all()
            )
            rows = (await conn.execute(select(func.count()).select_from(POINTS))).scalar_one()
        assert {user: int(total) for user, total in sums.items()} == {
            user: balance for user, balance in balances.items() if user in sums
        }
        assert all(balance >= 0 for balance in balances.values())
        assert rows == sum(accepted.values())
