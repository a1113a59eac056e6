"""Member tiers, group health and its alerts, /forgetme, and rollups beside another process."""

from __future__ import annotations

import asyncio
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from aiogram.types import Chat
from sqlalchemy import insert, select
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.activity import ActivityLog
from bot.clock import ManualClock
from bot.db import (
    BALANCES,
    CHECKINS,
    EVENTS,
    GROUP_DAYS,
    HEALTH_ALERTS,
    MEMBER_DAYS,
    MEMBERS,
    TIER_CHANGES,
    EventType,
    writing,
)
from bot.events import Happened
from bot.moderation.store import ModerationStore
from bot.registry import Registry
from bot.stats import tiers
from bot.stats.forget import STAND_IN_BASE, forget
from bot.stats.health import score
from bot.stats.metrics import GroupMetrics, group_metrics
from bot.stats.rollup import Rollup
from bot.stats.service import Analytics
from tests.sop_harness import copy_sops, make_engine, settle
from tests.test_stats import add_events, add_member, event, local

ROOT = Path(__file__).resolve().parent.parent
SHANGHAI = ZoneInfo("Asia/Shanghai")
GROUP = -1001
RULES = tiers.load_rules(ROOT / "sops/tiers.yaml")


def facts(**values: Any) -> tiers.MemberFacts:
    base: dict[str, Any] = {
        "user_id": 1,
        "tier": "new",
        "left": False,
        "tenure": timedelta(days=90),
        "silent": timedelta(days=1),
        "messages": 0,
        "active_days": 0,
        "checkins": 0,
        "points": 0,
    }
    return tiers.MemberFacts(**{**base, **values})


@pytest.mark.parametrize(
    ("values", "tier"),
    [
        ({"left": True, "active_days": 30}, "churned"),
        ({"tenure": timedelta(days=3), "silent": timedelta(days=3)}, "new"),
        ({"silent": timedelta(days=30)}, "dormant"),
        ({"active_days": 15, "checkins": 10}, "core"),
        ({"active_days": 15, "checkins": 10, "tenure": timedelta(days=59), "points": 100}, "value"),
        ({"active_days": 8, "points": 100}, "value"),
        ({"active_days": 8, "points": 99, "messages": 10}, "seed"),
        ({"active_days": 3, "messages": 10}, "seed"),
        ({"active_days": 2, "messages": 50}, "ordinary"),
    ],
)
def test_the_shipped_tier_rules(values: dict[str, Any], tier: str) -> None:
    assert RULES.tier_of(facts(**values)) == tier


def test_a_broken_tiers_file_names_its_problems(tmp_path: Path) -> None:
    path = tmp_path / "tiers.yaml"
    path.write_text("window: 30d\ntiers:\n  - tier: royalty\n  - tier: seed\n    min_mesages: 3\n")
    with pytest.raises(tiers.TierFileError) as problem:
        tiers.load_rules(path)
    assert "tiers.0.tier" in str(problem.value) and "min_mesages" in str(problem.value)


async def test_tiers_are_computed_from_activity_and_changes_are_stored(
    engine: AsyncEngine,
) -> None:
    long_ago = datetime(2026, 8, 1, tzinfo=UTC)
    for user in (1, 2, 3):
        await add_member(engine, user, long_ago)
    await add_member(engine, 4, local(9))  # joined yesterday
    await add_member(engine, 5, long_ago, left=local(5), status="left")
    rows = []
    for day in range(1, 11):  # member 1 writes on 10 days and checks in on all of them
        rows.append(event(local(day, 10), EventType.MESSAGE, 1))
    rows += [event(local(9, 10, n), EventType.MESSAGE, 2) for n in range(12)]  # 12 messages, 1 day
    await add_events(engine, *rows)
    await Rollup(engine, lambda _chat: SHANGHAI).catch_up()
    async with writing(engine) as conn:
        await conn.execute(
            insert(CHECKINS),
            [
                {
                    "chat_id": GROUP,
                    "user_id": 1,
                    "day": date(2026, 11, d),
                    "at": local(d),
                    "streak": d,
                }
                for d in range(1, 11)
            ],
        )
        await conn.execute(
            insert(BALANCES).values(chat_id=GROUP, user_id=1, balance=150, updated_at=local(1))
        )
        # last activity, as the activity log keeps it
        for user, at in (
            (1, local(10, 10)),
            (2, local(9, 10)),
            (3, datetime(2026, 9, 1, tzinfo=UTC)),
        ):
            await conn.execute(
                MEMBERS.update().where(MEMBERS.c.user_id == user).values(last_activity_at=at)
            )
    changes = await tiers.compute(engine, GROUP, date(2026, 11, 10), SHANGHAI, RULES, local(11, 5))
    assert sorted((c.user_id, c.old, c.new) for c in changes) == [
        (1, "new", "value"),  # 10 active days and 150 points (core needs 15 days)
        (2, "new", "ordinary"),  # one active day
        (3, "new", "dormant"),  # silent since September
        (5, "new", "churned"),
    ]  # 4 joined yesterday: still new
    again = await tiers.compute(engine, GROUP, date(2026, 11, 10), SHANGHAI, RULES, local(11, 5))
    assert again == []
    async with engine.connect() as conn:
        stored = (await conn.execute(select(TIER_CHANGES.c.user_id, TIER_CHANGES.c.new))).all()
    assert len(stored) == 4
    counts = await tiers.tier_counts(engine, GROUP)
    assert counts["value"] == 1 and counts["new"] == 1 and counts["churned"] == 0


def metrics(**values: Any) -> GroupMetrics:
    found = GroupMetrics(GROUP, date(2026, 11, 4), date(2026, 11, 10))
    for name, value in values.items():
        setattr(found, name, value)
    return found


def test_the_health_score_formula() -> None:
    healthy = metrics(
        members_end=100, weekly_active=25, messages=500, concentration=0.4, joins=5, leaves=2
    )
    before = metrics(messages=400)
    assert score(healthy, before, retention=1.0).score == 100
    parts = score(healthy, before, retention=None).parts
    assert parts["retention"] == 7.5  # no joiners to measure: half
    weak = metrics(
        members_end=100, weekly_active=5, messages=100, concentration=0.9, joins=1, leaves=4
    )
    result = score(weak, before, retention=0.2)
    assert result.parts == pytest.approx(
        {"activity": 8.0, "momentum": 5.0, "retention": 3.0, "breadth": 3.0, "growth": 2.5}
    )
    assert result.score == 22
    assert score(metrics(members_end=10), metrics(), None).score == 18  # silent: retention + growth


class Told:
    def __init__(self) -> None:
        self.alerts: list[tuple[int, str, dict[str, Any]]] = []
        self.changes: list[tuple[int, int, dict[str, Any]]] = []

    async def alert(self, chat_id: int, kind: str, details: dict[str, Any]) -> None:
        self.alerts.append((chat_id, kind, details))

    async def happened(self, event: Happened) -> None:
        assert event.name == "tier.changed" and event.user_id is not None
        self.changes.append((event.chat_id, event.user_id, event.data))


async def test_a_collapsing_group_raises_each_alert_once(
    engine: AsyncEngine, registry: Registry
) -> None:
    await registry.save_group(Chat(id=GROUP, type="supergroup", title="Readers"))
    for user in range(1, 21):
        await add_member(engine, user, datetime(2026, 9, 1, tzinfo=UTC))
    rows = [
        event(local(day, 10, user), EventType.MESSAGE, user)
        for day in range(1, 15)
        for user in range(1, 21)
    ]
    rows += [event(local(day, 10), EventType.MESSAGE, 1) for day in range(15, 18)]  # then 1 writer
    await add_events(engine, *rows)
    clock = ManualClock(local(15, 6))
    told = Told()
    registry.bus.subscribe(Happened, told.happened)
    analytics = Analytics(
        engine,
        registry,
        Rollup(engine, lambda _chat: SHANGHAI),
        clock,
        bus=registry.bus,
        alert=told.alert,
        moderation_log=ModerationStore(engine),
        default_zone=SHANGHAI,
        tiers_path=ROOT / "sops/tiers.yaml",
        silent_days=3,
    )
    assert await analytics.run_due() == 1  # the 14th: a busy fortnight, no alert
    assert await analytics.run_due() == 0  # done for the day
    assert told.alerts == []
    assert {data["to"] for _, _, data in told.changes} == {"seed"}  # 14 active days each
    for day in range(16, 25):
        clock.set(local(day, 6))
        await analytics.run_due()
    kinds = [kind for _, kind, _ in told.alerts]
    assert kinds == ["silent", "drop"]  # the silence from the 18th once; the week's fall once
    _, _, silent = told.alerts[0]
    assert silent == {"since": "2026-11-18", "days": 3}
    async with engine.connect() as conn:
        stored = (await conn.execute(select(HEALTH_ALERTS.c.kind, HEALTH_ALERTS.c.period))).all()
    assert sorted(stored) == [("drop", "2026-11-21"), ("silent", "2026-11-18")]


async def test_what_stats_shows_of_a_group_and_a_member(
    engine: AsyncEngine, registry: Registry
) -> None:
    await registry.save_group(Chat(id=GROUP, type="supergroup", title="Readers"))
    await add_member(engine, 1, local(1, 9))
    await add_events(engine, *[event(local(day, 10), EventType.MESSAGE, 1) for day in (3, 9, 10)])
    async with writing(engine) as conn:
        await conn.execute(
            insert(CHECKINS),
            [
                {
                    "chat_id": GROUP,
                    "user_id": 1,
                    "day": date(2026, 11, d),
                    "at": local(d),
                    "streak": 1,
                }
                for d in (2, 9)
            ],
        )
        await conn.execute(
            insert(BALANCES).values(chat_id=GROUP, user_id=1, balance=30, updated_at=local(9))
        )
    analytics = Analytics(
        engine,
        registry,
        Rollup(engine, lambda _chat: SHANGHAI),
        ManualClock(local(10, 12)),
        bus=registry.bus,
        alert=Told().alert,
        moderation_log=ModerationStore(engine),
        default_zone=SHANGHAI,
        tiers_path=ROOT / "sops/tiers.yaml",
    )
    member = await analytics.member_report(GROUP, 1, 7)  # the 4th to the 10th
    assert (member.name, member.first, member.last) == ("U1", date(2026, 11, 4), date(2026, 11, 10))
    assert (member.activity.messages, member.activity.active_days) == (2, 2)  # rolled up first
    assert (member.since, member.checkins, member.points, member.tier) == (
        date(2026, 11, 1),
        1,
        30,
        "new",
    )
    stranger = await analytics.member_report(GROUP, 99, 7)
    assert (stranger.name, stranger.since, stranger.points, stranger.tier) == ("", None, 0, "new")
    group = await analytics.group_report(GROUP, 30)
    assert (group.title, group.first, group.metrics.messages) == ("Readers", date(2026, 10, 12), 3)
    assert group.health, "at least this week's score"


async def test_forgetting_a_member_keeps_the_group_totals(engine: AsyncEngine) -> None:
    await add_member(engine, 1, local(1))
    await add_member(engine, 2, local(1))
    await add_events(
        engine,
        *[event(local(2, 10, n), EventType.MESSAGE, user) for user in (1, 2) for n in range(3)],
    )
    await Rollup(engine, lambda _chat: SHANGHAI).catch_up()
    before = await group_metrics(engine, GROUP, date(2026, 11, 1), date(2026, 11, 3), SHANGHAI)
    stand_in = await forget(engine, 1)
    assert stand_in >= STAND_IN_BASE
    after = await group_metrics(engine, GROUP, date(2026, 11, 1), date(2026, 11, 3), SHANGHAI)
    assert after.as_dict() == before.as_dict()
    async with engine.connect() as conn:
        names = (await conn.execute(select(MEMBERS.c.user_id, MEMBERS.c.first_name))).all()
        users = set((await conn.execute(select(EVENTS.c.user_id))).scalars())
        days = set((await conn.execute(select(MEMBER_DAYS.c.user_id))).scalars())
    assert sorted(names) == [(2, "U2"), (stand_in, "")]
    assert 1 not in users and 1 not in days


async def test_two_processes_rolling_up_count_each_event_once(engine: AsyncEngine) -> None:
    await add_events(
        engine, *[event(local(2, 9, n % 60), EventType.MESSAGE, n) for n in range(300)]
    )
    first = Rollup(engine, lambda _chat: SHANGHAI, batch=50)
    second = Rollup(engine, lambda _chat: SHANGHAI, batch=50)
    await asyncio.gather(first.catch_up(), second.catch_up())
    await first.catch_up()
    async with engine.connect() as conn:
        total = (await conn.execute(select(GROUP_DAYS.c.messages))).scalar()
    assert total == 300


async def test_the_reengagement_sop_greets_only_members_who_became_dormant(
    engine: AsyncEngine, registry: Registry, activity: ActivityLog, tmp_path: Path
) -> None:
    await registry.save_group(Chat(id=GROUP, type="supergroup", title="Readers"))
    sops = copy_sops(tmp_path, "reengage_dormant.yaml", source=ROOT / "sops")
    async with make_engine(engine, sops, content=ROOT / "content") as (sop, outbox, _):
        await sop.emit("tier.changed", GROUP, 42, {"from": "seed", "to": "value"})
        await sop.emit("tier.changed", GROUP, 43, {"from": "ordinary", "to": "dormant"})
        await settle(sop)
        [greeting] = outbox.texts(GROUP)
        assert "tg://user?id=43" in greeting and "we miss you" in greeting
