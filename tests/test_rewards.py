"""Rewards: redeeming spends points, takes stock and records an order, all or nothing; orders
are fulfilled or cancelled (with a refund) once; a broken catalogue is reported by key path."""

from __future__ import annotations

import asyncio
import os
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from loguru import logger
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from bot import points
from bot.db import BALANCES, MEMBERS, ORDERS, POINTS, REWARD_STOCK, OrderStatus, writing
from bot.handlers.rewards import _refusal_key
from bot.rewards import (
    CatalogueError,
    Order,
    Refusal,
    Refused,
    Rewards,
    load_catalogue,
)
from bot.texts import Texts
from tests.conftest import ROOT

GROUP = -1001
OTHER_GROUP = -1002
ADMIN = 9
AT = datetime(2026, 11, 23, 12, tzinfo=UTC)

CATALOGUE = """
rewards:
  - id: mug
    name: {zh: 马克杯, en: Mug}
    cost: 100
    stock: 1
    per_member: null
  - id: stickers
    name: Sticker pack
    cost: 10
    stock: null
    per_member: 1
  - id: coupon
    name: {en: Coupon}
    description: {zh: 全场通用, en: Valid on everything}
    cost: 30
    stock: 5
    per_member: 2
  - id: badge
    name: Badge
    cost: 5
    stock: null
    per_member: null
"""


def rewrite(path: Path, text: str) -> None:
    """Change the file, making sure its modification time moves too."""
    before = path.stat().st_mtime_ns if path.exists() else 0
    path.write_text(text, encoding="utf-8")
    after = path.stat()
    if after.st_mtime_ns <= before:
        os.utime(path, ns=(after.st_atime_ns, before + 1_000_000))


@pytest.fixture
def catalogue_file(tmp_path: Path) -> Path:
    path = tmp_path / "rewards.yaml"
    path.write_text(CATALOGUE, encoding="utf-8")
    return path


@pytest.fixture
def rewards(engine: AsyncEngine, catalogue_file: Path) -> Rewards:
    return Rewards(engine, catalogue_file)


async def give(engine: AsyncEngine, user_id: int, amount: int, chat_id: int = GROUP) -> None:
    async with writing(engine) as conn:
        await points.apply(
            conn, [points.Change(chat_id, user_id, amount, "check-in", "checkin", AT)]
        )


async def state(engine: AsyncEngine) -> dict[str, Any]:
    """Everything a redemption may touch."""
    async with engine.connect() as conn:
        return {
            "ledger": (
                await conn.execute(
                    select(POINTS.c.user_id, POINTS.c.delta, POINTS.c.reason, POINTS.c.source)
                    .where(POINTS.c.source != "checkin")
                    .order_by(POINTS.c.id)
                )
            ).all(),
            "balances": dict(
                (await conn.execute(select(BALANCES.c.user_id, BALANCES.c.balance))).all()
            ),
            "orders": (
                await conn.execute(
                    select(ORDERS.c.user_id, ORDERS.c.reward_id, ORDERS.c.status).order_by(
                        ORDERS.c.id
                    )
                )
            ).all(),
            "stock": dict(
                (await conn.execute(select(REWARD_STOCK.c.reward_id, REWARD_STOCK.c.taken))).all()
            ),
        }


def refused(result: Order | Refusal) -> Refused | None:
    return result.reason if isinstance(result, Refusal) else None


async def test_redeeming_spends_points_takes_stock_and_records_the_order(
    engine: AsyncEngine, rewards: Rewards
) -> None:
    await give(engine, 1, 150)
    order = await rewards.redeem(GROUP, 1, "mug", AT, language="en")
    assert isinstance(order, Order)
    assert (order.chat_id, order.user_id, order.reward_id, order.reward_name, order.cost) == (
        GROUP,
        1,
        "mug",
        "Mug",
        100,
    )
    assert order.status == OrderStatus.OPEN
    after = await state(engine)
    assert after["ledger"] == [(1, -100, "redeemed Mug", "reward:mug")]
    assert after["balances"] == {1: 50}
    assert after["orders"] == [(1, "mug", "open")]
    assert after["stock"] == {"mug": 1}
    mug = rewards.catalogue().get("mug")
    assert mug is not None
    assert await rewards.left(mug) == 0
    assert await rewards.stock_left(rewards.catalogue().rewards) == {
        "mug": 0,
        "stickers": None,
        "coupon": 5,
        "badge": None,
    }
    [listed] = await rewards.orders(GROUP)
    assert listed.id == order.id and listed.created_at == AT
    assert await rewards.redeemed(GROUP, 1) == {"mug": 1}

    # The order is named in the group's language.
    await give(engine, 2, 50)
    chinese = await rewards.redeem(GROUP, 2, "stickers", AT, language="zh")
    assert isinstance(chinese, Order) and chinese.reward_name == "Sticker pack"
    coupon = await rewards.redeem(GROUP, 2, "coupon", AT, language="zh")
    assert isinstance(coupon, Order) and coupon.reward_name == "Coupon", "only English given"


async def test_refusals_leave_everything_as_it_was(engine: AsyncEngine, rewards: Rewards) -> None:
    await give(engine, 1, 5)
    await give(engine, 2, 500)
    await give(engine, 3, 500)
    assert isinstance(await rewards.redeem(GROUP, 2, "mug", AT), Order)
    assert isinstance(await rewards.redeem(GROUP, 2, "stickers", AT), Order)
    before = await state(engine)

    poor = await rewards.redeem(GROUP, 1, "coupon", AT)
    assert isinstance(poor, Refusal) and poor.reason == Refused.NOT_ENOUGH_POINTS
    assert (poor.balance, poor.reward.cost if poor.reward else None) == (5, 30)
    never = await rewards.redeem(GROUP, 4, "badge", AT)
    assert isinstance(never, Refusal) and never.balance == 0, "no points at all"
    assert refused(await rewards.redeem(GROUP, 3, "mug", AT)) == Refused.OUT_OF_STOCK
    # Out of stock is the reason given, even to a member who could not pay either.
    assert refused(await rewards.redeem(GROUP, 1, "mug", AT)) == Refused.OUT_OF_STOCK
    later = AT + timedelta(minutes=1)
    assert refused(await rewards.redeem(GROUP, 2, "stickers", later)) == Refused.LIMIT_REACHED
    assert refused(await rewards.redeem(GROUP, 2, "no-such", AT)) == Refused.UNKNOWN_REWARD
    assert await state(engine) == before

    # The limit is per member of a group: in another group they may redeem it with its points.
    await give(engine, 2, 10, chat_id=OTHER_GROUP)
    assert isinstance(await rewards.redeem(OTHER_GROUP, 2, "stickers", later), Order)


async def test_a_double_tap_makes_one_order_and_a_later_tap_another(
    engine: AsyncEngine, rewards: Rewards
) -> None:
    await give(engine, 1, 100)
    first = await rewards.redeem(GROUP, 1, "badge", AT)
    again = await rewards.redeem(GROUP, 1, "badge", AT + timedelta(seconds=1))
    assert isinstance(first, Order)
    assert isinstance(again, Refusal) and again.reason == Refused.JUST_REDEEMED
    assert again.order is not None and again.order.id == first.id
    assert isinstance(await rewards.redeem(GROUP, 1, "badge", AT + timedelta(seconds=10)), Order)
    assert (await state(engine))["balances"] == {1: 90}
    # Taps at the same moment, of a reward without a limit: still one order.
    later = AT + timedelta(minutes=1)
    results = await asyncio.gather(*(rewards.redeem(GROUP, 1, "badge", later) for _ in range(3)))
    assert [refused(result) for result in results].count(Refused.JUST_REDEEMED) == 2
    assert (await state(engine))["balances"] == {1: 85}


async def test_twenty_members_redeeming_the_last_one_at_once_get_one_order(
    engine: AsyncEngine, rewards: Rewards
) -> None:
    members = range(100, 120)
    for member in members:
        await give(engine, member, 100)
    results = await asyncio.gather(
        *(rewards.redeem(GROUP, member, "mug", AT, language="en") for member in members)
    )
    orders = [result for result in results if isinstance(result, Order)]
    assert len(orders) == 1
    assert [refused(result) for result in results if result not in orders] == [
        Refused.OUT_OF_STOCK
    ] * 19
    after = await state(engine)
    winner = orders[0].user_id
    assert after["orders"] == [(winner, "mug", "open")]
    assert after["ledger"] == [(winner, -100, "redeemed Mug", "reward:mug")]
    assert after["balances"] == {member: 0 if member == winner else 100 for member in members}
    assert after["stock"] == {"mug": 1}


async def test_one_member_tapping_many_times_at_once_gets_one_order(
    engine: AsyncEngine, rewards: Rewards
) -> None:
    await give(engine, 1, 100)
    results = await asyncio.gather(*(rewards.redeem(GROUP, 1, "stickers", AT) for _ in range(5)))
    assert sum(isinstance(result, Order) for result in results) == 1
    assert {refused(result) for result in results} == {None, Refused.LIMIT_REACHED}
    after = await state(engine)
    assert after["balances"] == {1: 90}
    assert len(after["orders"]) == 1 and len(after["ledger"]) == 1


async def test_cancelling_refunds_the_points_and_returns_the_stock(
    engine: AsyncEngine, rewards: Rewards
) -> None:
    await give(engine, 1, 100)
    order = await rewards.redeem(GROUP, 1, "mug", AT, language="zh")
    assert isinstance(order, Order)
    later = AT + timedelta(hours=1)
    cancelled = await rewards.cancel(order.id, GROUP, ADMIN, later)
    assert isinstance(cancelled, Order)
    assert (cancelled.status, cancelled.closed_by, cancelled.closed_at) == (
        OrderStatus.CANCELLED,
        ADMIN,
        later,
    )
    after = await state(engine)
    assert after["ledger"] == [
        (1, -100, "redeemed 马克杯", "reward:mug"),
        (1, 100, f"refund: 马克杯 (order #{order.id} cancelled)", "reward:mug"),
    ]
    assert after["balances"] == {1: 100}
    assert after["stock"] == {"mug": 0}
    assert after["orders"] == [(1, "mug", "cancelled")]

    again = await rewards.cancel(order.id, GROUP, ADMIN, later)
    assert isinstance(again, Refusal) and again.reason == Refused.CLOSED
    assert again.order is not None and again.order.status == OrderStatus.CANCELLED
    assert refused(await rewards.fulfil(order.id, GROUP, ADMIN, later)) == Refused.CLOSED
    assert await state(engine) == after, "closing twice changes nothing"

    # The stock given back can be redeemed again, and the cancelled order does not count
    # against the member's limit.
    await give(engine, 2, 100)
    assert isinstance(await rewards.redeem(GROUP, 2, "mug", later), Order)


async def test_fulfilling_closes_an_order_once(engine: AsyncEngine, rewards: Rewards) -> None:
    await give(engine, 1, 100)
    first = await rewards.redeem(GROUP, 1, "coupon", AT)
    second = await rewards.redeem(GROUP, 1, "stickers", AT + timedelta(minutes=1))
    assert isinstance(first, Order) and isinstance(second, Order)
    async with writing(engine) as conn:  # the bot knows the member and the admin by name
        await conn.execute(
            MEMBERS.insert(),
            [
                {"chat_id": GROUP, "user_id": 1, "first_name": "Alice", "username": "alice"},
                {"chat_id": GROUP, "user_id": ADMIN, "first_name": "Ada L", "username": None},
            ],
        )
    assert [order.id for order in await rewards.orders(GROUP)] == [first.id, second.id]

    done = await rewards.fulfil(first.id, GROUP, ADMIN, AT + timedelta(hours=2))
    assert isinstance(done, Order) and done.status == OrderStatus.FULFILLED
    twice = await rewards.fulfil(first.id, GROUP, ADMIN, AT + timedelta(hours=3))
    assert isinstance(twice, Refusal) and twice.reason == Refused.CLOSED
    assert twice.order is not None and twice.order.closer_name == "Ada L"
    assert twice.order.closed_at == AT + timedelta(hours=2)
    elsewhere = await rewards.fulfil(second.id, OTHER_GROUP, ADMIN, AT)
    assert refused(elsewhere) == Refused.UNKNOWN_ORDER, "an order of another group"
    assert refused(await rewards.cancel(999, GROUP, ADMIN, AT)) == Refused.UNKNOWN_ORDER

    [still_open] = await rewards.orders(GROUP)
    assert still_open.id == second.id
    assert (still_open.member_name, still_open.member_username) == ("Alice", "alice")
    [closed] = await rewards.orders(GROUP, "closed")
    assert (closed.id, closed.status, closed.closed_by) == (first.id, "fulfilled", ADMIN)
    assert await rewards.orders(GROUP, OrderStatus.CANCELLED) == []
    assert (await state(engine))["balances"] == {1: 60}, "fulfilling refunds nothing"
    found = await rewards.order(second.id)
    assert found is not None and found.chat_id == GROUP


async def test_a_broken_catalogue_is_unavailable_until_fixed(
    engine: AsyncEngine, catalogue_file: Path
) -> None:
    logged: list[str] = []
    sink = logger.add(lambda message: logged.append(str(message)), level="ERROR")
    try:
        colour = "    per_member: null\n    colour: red\n"
        rewrite(catalogue_file, CATALOGUE.replace("    per_member: null\n", colour, 1))
        rewards = Rewards(engine, catalogue_file)
        with pytest.raises(CatalogueError, match=r"rewards\.0\.colour: unknown key 'colour'"):
            rewards.catalogue()
        await give(engine, 1, 500)
        assert refused(await rewards.redeem(GROUP, 1, "mug", AT)) == Refused.UNAVAILABLE
        with pytest.raises(CatalogueError):
            rewards.catalogue()
        assert len(logged) == 1, "logged once, not on every use"
        assert str(catalogue_file) in logged[0]
        assert "rewards.yaml:8:5: rewards.0.colour: unknown key 'colour'" in logged[0]

        rewrite(catalogue_file, CATALOGUE)
        assert len(rewards.catalogue().rewards) == 4, "read again once it changed"
        assert isinstance(await rewards.redeem(GROUP, 1, "mug", AT), Order)
    finally:
        logger.remove(sink)


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        (("cost: 100", "cost: '100'"), "5:11: rewards.0.cost: must be a whole number, not '100'"),
        (("cost: 100", "cost: 0"), "5:11: rewards.0.cost: must be more than 0, not 0"),
        (
            ("    stock: 1\n", ""),
            "3:5: rewards.0: missing required key 'stock' (null for no limit)",
        ),
        (("stock: 1\n", "stock: -1\n"), "6:12: rewards.0.stock: must be at least 0, not -1"),
        (("id: mug", "id: Mug!"), "3:9: rewards.0.id: must be 1-32 lowercase letters"),
        (("id: stickers", "id: mug"), "8:9: rewards.1.id: 'mug' is already the id of reward 0"),
        (("en: Mug}", "fr: Mug}"), "4:11: rewards.0.name: 'fr' is not a language here"),
        (("per_member: 2", "per_member: 0"), "rewards.2.per_member: must be at least 1, not 0"),
        (("    cost: 5\n", "    cost: 5\n    descripton: x\n"), "(did you mean 'description'?)"),
        (("rewards:\n", "reward:\n"), "unknown key 'reward' (did you mean 'rewards'?)"),
        (("  - id: mug", "  -id: mug"), "invalid YAML"),
    ],
)
def test_catalogue_problems_name_the_key_path(
    tmp_path: Path, change: tuple[str, str], problem: str
) -> None:
    path = tmp_path / "rewards.yaml"
    path.write_text(CATALOGUE.replace(*change, 1), encoding="utf-8")
    with pytest.raises(CatalogueError) as broken:
        load_catalogue(path)
    assert problem in broken.value.summary()


def test_the_shipped_catalogue_is_valid() -> None:
    catalogue = load_catalogue(ROOT / "content" / "rewards.yaml")
    assert len(catalogue.rewards) >= 3
    for reward in catalogue.rewards:
        assert len(f"reward:{reward.id}".encode()) <= 64
        assert reward.name.in_language("zh") != reward.name.in_language("en")


async def test_without_a_catalogue_file_there_are_no_rewards(
    engine: AsyncEngine, tmp_path: Path
) -> None:
    rewards = Rewards(engine, tmp_path / "missing.yaml")
    assert rewards.catalogue().rewards == ()
    assert refused(await rewards.redeem(GROUP, 1, "mug", AT)) == Refused.UNKNOWN_REWARD
    async with engine.connect() as conn:
        assert (await conn.execute(select(func.count()).select_from(ORDERS))).scalar_one() == 0


def test_every_text_the_handlers_use_is_in_both_languages() -> None:
    texts = Texts.load(ROOT / "content")
    source = (ROOT / "bot" / "handlers" / "rewards.py").read_text(encoding="utf-8")
    used = set(re.findall(r'"((?:rewards|orders|sop)\.[a-z_.]+)"', source))
    used |= {f"orders.state_{status.value}" for status in OrderStatus}
    used |= {_refusal_key(Refusal(reason)) for reason in Refused}
    assert len(used) > 30
    for language in ("zh", "en"):
        assert used <= set(texts.catalogues[language]), used - set(texts.catalogues[language])
