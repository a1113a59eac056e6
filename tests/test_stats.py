"""Rollups and metrics on small hand-built event sets with known answers; the fission
coefficient and cycle time, and moderation's false-positive rate, in /stats."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from aiogram.types import Chat, Update
from sqlalchemy import insert, select
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.clock import ManualClock
from bot.db import (
    CHECKINS,
    EVENTS,
    GROUP_DAYS,
    INVITE_LINKS,
    LOTTERIES,
    LOTTERY_ENTRIES,
    MEMBER_DAYS,
    MEMBERS,
    REFERRALS,
    SOP_SENDS,
    EventType,
    GroupStatus,
    writing,
)
from bot.registry import Registry
from bot.stats.metrics import StepResponse, compare, group_metrics, two_proportion_p
from bot.stats.rollup import Rollup
from tests.sop_harness import OWNER, assembled, copy_sops
from tests.updates import group_message, user

SHANGHAI = ZoneInfo("Asia/Shanghai")
GROUP, OTHER = -1001, -1002


def local(day: int, hour: int = 12, minute: int = 0) -> datetime:
    """2026-11-<day> at hour:minute in Shanghai."""
    return datetime(2026, 11, day, hour, minute, tzinfo=SHANGHAI)


def event(
    at: datetime,
    kind: EventType,
    user: int | None = 1,
    chat: int = GROUP,
    data: dict[str, Any] | None = None,
) -> dict[str, Any]:
    return {
        "chat_id": chat,
        "user_id": user,
        "at": at,
        "type": kind.value,
        "data": data,
        "is_reply": False,
        "is_forward": False,
    }


async def add_events(engine: AsyncEngine, *rows: dict[str, Any]) -> None:
    async with writing(engine) as conn:
        await conn.execute(insert(EVENTS), list(rows))


async def add_member(
    engine: AsyncEngine,
    user: int,
    joined: datetime | None,
    *,
    left: datetime | None = None,
    status: str = "member",
    chat: int = GROUP,
) -> None:
    async with writing(engine) as conn:
        await conn.execute(
            insert(MEMBERS).values(
                chat_id=chat,
                user_id=user,
                first_name=f"U{user}",
                status=status,
                joined_at=joined,
                left_at=left,
                first_activity_at=joined,
                is_bot=False,
                message_count=0,
            )
        )


async def add_link(
    engine: AsyncEngine, kind: str, name: str, owner: int | None = None, *, chat: int = GROUP
) -> int:
    """An invite link of the group (`member`: `owner`'s; `campaign`: named `name`); its id."""
    async with writing(engine) as conn:
        result = await conn.execute(
            insert(INVITE_LINKS).values(
                chat_id=chat,
                link=f"https://t.me/+{kind}{name}{chat}",
                kind=kind,
                owner_id=owner,
                name=name,
                created_at=datetime(2026, 10, 1, tzinfo=UTC),
            )
        )
    return int(result.inserted_primary_key[0])  # type: ignore[index]


async def add_referral(
    engine: AsyncEngine,
    invitee: int,
    link: int,
    inviter: int | None,
    joined: datetime,
    state: str = "pending",
    *,
    chat: int = GROUP,
    **moments: Any,
) -> None:
    """A referral as bot.invites.referrals stores it (`moments`: qualified_at, reason, …)."""
    async with writing(engine) as conn:
        await conn.execute(
            insert(REFERRALS).values(
                chat_id=chat,
                invitee_id=invitee,
                link_id=link,
                inviter_id=inviter,
                joined_at=joined,
                state=state,
                **moments,
            )
        )


def rollup(engine: AsyncEngine, **options: Any) -> Rollup:
    return Rollup(engine, lambda chat_id: SHANGHAI, **options)


async def test_rollups_count_each_event_once_on_the_group_calendar(engine: AsyncEngine) -> None:
    await add_events(
        engine,
        event(local(2, 23, 59), EventType.MESSAGE, 1),
        event(local(3, 0, 1), EventType.MESSAGE, 1),  # a new day in Shanghai (still the 2nd in UTC)
        event(local(3, 0, 2), EventType.COMMAND, 2),
        event(local(3, 9), EventType.CALLBACK, 2),
        event(local(3, 9), EventType.MEMBER_JOINED, 3),
        event(local(3, 10), EventType.MEMBER_LEFT, 4),
        event(local(3, 10), EventType.MEMBER_KICKED, 5),
        event(local(3, 11), EventType.LOTTERY_ENTERED, 2),
        event(local(3, 11), EventType.LIVE_SUBSCRIBED, 2),
        event(local(3, 11), EventType.LIVE_CLICKED, 2),
        event(local(3, 11), EventType.MESSAGE, 9, chat=OTHER),
    )
    counter = rollup(engine, batch=4)  # several passes
    assert await counter.catch_up() == 11
    assert await counter.catch_up() == 0  # nothing counted twice
    async with engine.connect() as conn:
        days = {(row.chat_id, row.day): row for row in await conn.execute(select(GROUP_DAYS))}
        members = sorted(tuple(row) for row in await conn.execute(select(MEMBER_DAYS)))
    second, third = days[GROUP, date(2026, 11, 2)], days[GROUP, date(2026, 11, 3)]
    assert second.messages == 1
    assert (third.messages, third.presses, third.joins, third.leaves) == (2, 1, 1, 2)
    assert (third.lottery_entries, third.live_subscriptions, third.live_clicks) == (1, 1, 1)
    assert days[OTHER, date(2026, 11, 3)].messages == 1
    assert members == [
        (OTHER, 9, date(2026, 11, 3), 1, 0),
        (GROUP, 1, date(2026, 11, 2), 1, 0),
        (GROUP, 1, date(2026, 11, 3), 1, 0),
        (GROUP, 2, date(2026, 11, 3), 1, 1),
    ]
    # A new event later is added to the same day's row.
    await add_events(engine, event(local(3, 20), EventType.MESSAGE, 1))
    assert await counter.catch_up() == 1
    async with engine.connect() as conn:
        row = (
            await conn.execute(
                select(GROUP_DAYS.c.messages).where(
                    GROUP_DAYS.c.chat_id == GROUP, GROUP_DAYS.c.day == date(2026, 11, 3)
                )
            )
        ).first()
    assert row is not None and row.messages == 3  # the two before and this one


async def test_sop_sends_are_answered_within_a_day(engine: AsyncEngine) -> None:
    sent = {"sop": "welcome", "step": "greet", "variant": "a"}
    await add_events(
        engine,
        event(local(2, 9), EventType.SOP_SENT, 1, data=sent),
        event(local(2, 9), EventType.SOP_SENT, 2, data=sent),
        event(local(2, 9), EventType.SOP_SENT, 3, data={**sent, "variant": "b"}),
        event(local(2, 8), EventType.MESSAGE, 1),  # before the send: not an answer
        event(local(2, 10), EventType.CALLBACK, 1),  # an answer
        event(local(2, 11), EventType.MESSAGE, 1),  # a later one does not move it
    )
    counter = rollup(engine)
    await counter.catch_up()
    await add_events(
        engine,
        event(local(2, 12), EventType.MESSAGE, 3),  # in a later pass
        event(local(3, 10), EventType.MESSAGE, 2),  # 25 h after the send: too late
    )
    await counter.catch_up()
    async with engine.connect() as conn:
        rows = {
            row.user_id: row.responded_at
            for row in await conn.execute(select(SOP_SENDS.c.user_id, SOP_SENDS.c.responded_at))
        }
    assert rows == {1: local(2, 10), 2: None, 3: local(2, 12)}
    # A restarted rollup remembers who has a send open.
    await add_events(engine, event(local(4, 9), EventType.SOP_SENT, 2, data=sent))
    await rollup(engine).catch_up()
    await add_events(engine, event(local(4, 9, 30), EventType.MESSAGE, 2))
    await rollup(engine).catch_up()
    metrics = await group_metrics(engine, GROUP, date(2026, 11, 1), date(2026, 11, 4), SHANGHAI)
    by_variant = {(r.variant): (r.sent, r.answered) for r in metrics.steps}
    assert by_variant == {"a": (3, 2), "b": (1, 1)}


async def test_group_metrics_have_the_known_answers(engine: AsyncEngine) -> None:
    # Members: 1 and 2 since October; 3 joined on the 3rd, wrote the next day and a week on;
    # 4 joined on the 3rd and never wrote again; 5 left on the 5th; 6 is silent.
    october = datetime(2026, 10, 1, tzinfo=UTC)
    await add_member(engine, 1, october)
    await add_member(engine, 2, october)
    await add_member(engine, 3, local(3, 9))
    await add_member(engine, 4, local(3, 9))
    await add_member(engine, 5, october, left=local(5, 9), status="left")
    await add_member(engine, 6, october)
    rows = []
    for day in range(1, 11):  # member 1 writes 10 messages a day, at 09:xx
        rows += [event(local(day, 9, n), EventType.MESSAGE, 1) for n in range(10)]
    rows += [event(local(2, 21), EventType.MESSAGE, 2)]
    rows += [
        event(local(3, 9), EventType.MEMBER_JOINED, 3),
        event(local(3, 9), EventType.MEMBER_JOINED, 4),
    ]
    rows += [event(local(4, 8), EventType.MESSAGE, 3), event(local(10, 8), EventType.MESSAGE, 3)]
    rows += [event(local(5, 9), EventType.MEMBER_LEFT, 5)]
    await add_events(engine, *rows)
    await rollup(engine).catch_up()
    async with writing(engine) as conn:
        await conn.execute(
            insert(CHECKINS),
            [
                {
                    "chat_id": GROUP,
                    "user_id": user,
                    "day": date(2026, 11, day),
                    "at": local(day),
                    "streak": 1,
                }
                for user, day in ((1, 2), (1, 3), (2, 3))
            ],
        )
        lottery = await conn.execute(
            insert(LOTTERIES).values(
                chat_id=GROUP,
                prize="Mug",
                winners=1,
                status="open",
                rules={},
                seed="s",
                commitment="c",
                source="t",
                created_at=local(4),
                draws_at=local(6),
            )
        )
        lottery_id = lottery.inserted_primary_key[0]  # type: ignore[index]
        await conn.execute(
            insert(LOTTERY_ENTRIES),
            [
                {"lottery_id": lottery_id, "user_id": user, "entered_at": local(4)}
                for user in (1, 2)
            ],
        )
    found = await group_metrics(engine, GROUP, date(2026, 11, 1), date(2026, 11, 10), SHANGHAI)
    assert found.length == 10
    assert (found.members_start, found.members_end) == (4, 5)  # 1, 2, 5, 6; then 1, 2, 3, 4, 6
    assert (found.joins, found.leaves, found.messages) == (2, 1, 103)
    assert found.active == 3 and found.active_ratio == pytest.approx(3 / 5)
    assert found.daily_active == pytest.approx((10 + 1 + 1 + 1) / 10)
    assert found.weekly_active == 2  # the 4th to the 10th: 1 and 3
    assert found.monthly_active == 3
    assert found.concentration == pytest.approx(100 / 103)  # the top writer of three
    assert found.retention == {1: (1, 2), 7: (1, 2), 30: (0, 0)}
    assert found.silent == 2  # 4 and 6
    assert found.heatmap[date(2026, 11, 2).weekday()][9] == 20  # two Mondays
    assert found.heatmap[date(2026, 11, 2).weekday()][21] == 1
    assert sum(map(sum, found.heatmap)) == 103
    assert (found.checkins, found.checkin_members) == (3, 2)
    assert found.checkin_rate == pytest.approx(3 / (5 * 10))
    assert (found.lotteries, found.lottery_entrants) == (1, 2)
    assert [day.messages for day in found.days][:3] == [10, 11, 10]
    assert [day.active for day in found.days][:4] == [1, 2, 1, 2]
    assert found.as_dict()["retention_7d"] == 0.5
    # The window's first day starts at midnight in the group's time zone.
    only = await group_metrics(engine, GROUP, date(2026, 11, 2), date(2026, 11, 2), SHANGHAI)
    assert only.messages == 11


def test_the_two_proportion_test() -> None:
    # 120/1000 against 80/1000: z ≈ 2.98, p ≈ 0.0029.
    assert two_proportion_p(120, 1000, 80, 1000) == pytest.approx(0.0029, abs=2e-4)
    assert two_proportion_p(50, 100, 50, 100) == pytest.approx(1.0)
    a = StepResponse("welcome", "greet", "a", 1000, 120)
    b = StepResponse("welcome", "greet", "b", 1000, 80)
    verdict = compare("welcome", "greet", b, a)
    assert verdict.better is a and verdict.significant
    close = compare(
        "welcome",
        "greet",
        StepResponse("w", "g", "a", 100, 12),
        StepResponse("w", "g", "b", 100, 10),
    )
    assert not close.significant and close.p_value is not None and close.p_value > 0.05
    few = compare("w", "g", StepResponse("w", "g", "a", 6, 4), StepResponse("w", "g", "b", 6, 1))
    assert few.p_value is None and not few.significant


async def test_a_migrated_group_keeps_its_history(engine: AsyncEngine, registry: Registry) -> None:
    await registry.save_group(Chat(id=GROUP, type="group", title="Readers"))
    await add_events(engine, *[event(local(2, 10, n), EventType.MESSAGE, 1) for n in range(3)])
    await rollup(engine).catch_up()
    new = -1009
    await registry.migrate(GROUP, Chat(id=new, type="supergroup", title="Readers"), local(2, 11))
    await add_events(engine, event(local(2, 12), EventType.MESSAGE, 1, chat=new))
    await rollup(engine).catch_up()
    found = await group_metrics(engine, new, date(2026, 11, 2), date(2026, 11, 2), SHANGHAI)
    assert (found.messages, found.active) == (4, 1)
    async with engine.connect() as conn:
        left = (await conn.execute(select(GROUP_DAYS).where(GROUP_DAYS.c.chat_id == GROUP))).all()
    assert left == []


async def test_bots_coming_and_going_are_not_joins_or_leaves(engine: AsyncEngine) -> None:
    async with writing(engine) as conn:
        await conn.execute(
            insert(MEMBERS).values(
                chat_id=GROUP, user_id=7, first_name="HelperBot", status="left", is_bot=True
            )
        )
    await add_events(
        engine,
        event(local(2, 9), EventType.MEMBER_JOINED, 7),
        event(local(2, 10), EventType.MEMBER_LEFT, 7),
        event(local(2, 11), EventType.MEMBER_JOINED, 3),
    )
    await rollup(engine).catch_up()
    found = await group_metrics(engine, GROUP, date(2026, 11, 2), date(2026, 11, 2), SHANGHAI)
    assert (found.joins, found.leaves) == (1, 0)


async def add_referrals(engine: AsyncEngine) -> None:
    """Member 1 (joined on the 1st) brought 2 and 3, qualified on the 10th and the 25th, 6 (still
    pending) and 7 (void); campaign spring brought 5, qualified on the 26th; member 4 brought 8,
    qualified in October. Of the 30 days to the 30th: 3 qualified, inviter 1's cycle 9 days."""
    october = datetime(2026, 10, 1, tzinfo=UTC)
    await add_member(engine, 1, local(1, 9))
    await add_member(engine, 4, october)
    mine = await add_link(engine, "member", "U1", 1)
    theirs = await add_link(engine, "member", "U4", 4)
    spring = await add_link(engine, "campaign", "spring")
    await add_referral(engine, 2, mine, 1, local(5, 9), "qualified", qualified_at=local(10, 9))
    await add_referral(engine, 3, mine, 1, local(20, 9), "qualified", qualified_at=local(25, 9))
    await add_referral(engine, 5, spring, None, local(22), "qualified", qualified_at=local(26))
    await add_referral(engine, 6, mine, 1, local(29), via_request=True)
    await add_referral(
        engine, 7, mine, 1, local(12), "void", reason="left_quickly", decided_at=local(12, 13)
    )
    await add_referral(
        engine,
        8,
        theirs,
        4,
        october.replace(day=10),
        "qualified",
        qualified_at=october.replace(day=20),
    )


async def test_stats_shows_the_fission_of_30_days_whatever_the_window(
    engine: AsyncEngine, tmp_path: Path
) -> None:
    group = Chat(id=GROUP, type="supergroup", title="Readers")
    clock = ManualClock(local(30, 12))
    async with assembled(engine, copy_sops(tmp_path), clock=clock) as (app, outbox, _):
        await app.registry.save_group(group, status=GroupStatus.ACTIVE)
        await add_referrals(engine)
        # Active in the 30 days: 1, 2, 3 and the owner (4 wrote in October); in the last 7
        # days only 3 and the owner.
        await add_events(
            engine,
            event(local(5, 10), EventType.MESSAGE, 1),
            event(local(12, 10), EventType.MESSAGE, 2),
            event(local(28, 10), EventType.MESSAGE, 3),
            event(local(30, 10), EventType.MESSAGE, OWNER),
            event(datetime(2026, 10, 25, tzinfo=UTC), EventType.MESSAGE, 4),
        )
        owner = user(OWNER, "Olga")

        async def stats(update_id: int, text: str) -> str:
            command = group_message(update_id, owner, local(30, 12), chat=group, text=text)
            await app.dispatcher.feed_update(app.bot, Update(update_id=update_id, message=command))
            summaries: list[str] = [t for t in outbox.texts(GROUP) if t.startswith("📊")]
            return summaries[-1]

        summary = await stats(1, "/stats 7d")
        assert "(7 days)" in summary and "active members: 2 (" in summary
        assert (
            "Referrals (always the last 30 days): fission K 0.75 (3 qualified / 4 active "
            "members); cycle time 9.0d (median, from an inviter's own join to their first "
            "qualified referral)"
        ) in summary.splitlines()
        await app.registry.save_group(group, language="zh")
        summary = await stats(2, "/stats 90d")
        assert "（90 天）" in summary
        assert (
            "邀请（固定为近 30 天）：裂变系数 K 0.75（合格邀请 3 / 活跃成员 4）；裂变周期 9.0d"
            in summary
        )

        report = await app.analytics.group_report(GROUP, 7)
        assert report.fission.as_json() == {
            "days": 30,
            "k": 0.75,
            "qualified": 3,
            "active": 4,
            "cycle_days": 9.0,
            "inviters": 1,
        }
        nobody = await app.analytics.fission(OTHER)  # no member active: no K to show
        assert (nobody.k, nobody.cycle_days, nobody.active) == (None, None, 0)


async def test_stats_shows_moderations_false_positives_over_30_days(
    engine: AsyncEngine, tmp_path: Path
) -> None:
    group = Chat(id=GROUP, type="supergroup", title="Readers")
    clock = ManualClock(datetime(2026, 10, 25, 12, tzinfo=SHANGHAI))
    async with assembled(engine, copy_sops(tmp_path), clock=clock) as (app, outbox, _):
        await app.registry.save_group(group, status=GroupStatus.ACTIVE)
        mod = app.moderation
        await mod.mute(GROUP, 9, duration=timedelta(hours=1), by="sop:flood")  # before the 30 days
        clock.set(local(20, 12))
        # The checks deleted 2's message and restricted them; an admin said "Not spam".
        deleted = await mod.delete(GROUP, 77, 2, by="checks", check="links", text="see my notes")
        await mod.restrict(GROUP, 2, by="checks", check="links")
        owner = user(OWNER, "Olga")
        decided, _ = await app.screening.review.decide("ok", deleted.action_id or 0, owner)
        assert decided == "moderation.decided_ok"
        await mod.mute(GROUP, 3, duration=timedelta(minutes=10), by="sop:flood")  # it stands
        await mod.ban(GROUP, 5, by="sop:join_check")
        await mod.unban(GROUP, 5, by=f"admin:{OWNER}")  # undone by an admin
        await mod.ban(GROUP, 6, by=f"admin:{OWNER}")  # admins' own actions are not counted
        outbox.unrestrictable.add(GROUP)
        await mod.mute(GROUP, 7, duration=timedelta(hours=1), by="sop:flood")  # failed: not done
        outbox.unrestrictable.clear()
        clock.set(local(30, 12))

        async def stats(update_id: int) -> str:
            command = group_message(update_id, owner, local(30, 12), chat=group, text="/stats")
            await app.dispatcher.feed_update(app.bot, Update(update_id=update_id, message=command))
            summaries: list[str] = [t for t in outbox.texts(GROUP) if t.startswith("📊")]
            return summaries[-1]

        summary = await stats(1)
        assert summary.splitlines()[-1] == (
            "Moderation (always the last 30 days): 4 automatic actions (SOPs and the "
            "first-message checks), 3 undone by admins (“Not spam”, unban): false-positive "
            "rate 75%"
        )
        await mod.set_mode(GROUP, "dry", OWNER)
        await mod.kick(GROUP, 8, by="sop:join_check")  # recorded, not done
        assert summary != (summary := await stats(2))
        assert summary.splitlines()[-1].endswith(
            "false-positive rate 75%. Dry mode: 1 recorded, nothing done"
        )
        await app.registry.save_group(group, language="zh")
        summary = await stats(3)
        assert summary.splitlines()[-1] == (
            "群管（固定为近 30 天）：自动处理 4 次（SOP 与新成员消息检查），被管理员撤销 3 次"
            "（“不是广告”、解封），误判率 75%；当前为演练模式：记录 1 次，均未执行"
        )

        figures = await app.analytics.moderation(GROUP)
        assert figures.as_json() == {
            "days": 30,
            "mode": "dry",
            "actions": 4,
            "undone": 3,
            "false_positive_rate": 0.75,
            "dry": 1,
        }
        quiet = await app.analytics.moderation(OTHER)  # nothing done: no rate to show
        assert (quiet.mode, quiet.honesty.false_positive_rate, quiet.shown()["rate"]) == (
            "on",
            None,
            "–",
        )
