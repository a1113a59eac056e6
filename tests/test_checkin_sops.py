"""The shipped check-in SOPs on the engine with a fake clock: replies, streaks, milestones, boards."""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.activity import ActivityLog
from bot.clock import ManualClock
from bot.db import CHECKINS, SOP_RUNS
from bot.registry import Registry
from bot.sop.engine import Engine
from bot.sop.templates import EVENT_EXAMPLES
from tests.sop_harness import (
    GROUP,
    ROOT,
    RecordingOutbox,
    copy_sops,
    eventually,
    make_engine,
    settle,
    user,
)
from tests.test_checkin_service import ledger

Shipped = tuple[Engine, RecordingOutbox, ManualClock]
SHIPPED = ("daily_checkin.yaml", "streak_milestone.yaml", "weekly_leaderboard.yaml")


@pytest.fixture
async def shipped(
    engine: AsyncEngine, registry: Registry, activity: ActivityLog, tmp_path: Path
) -> AsyncIterator[Shipped]:
    """An engine over the shipped check-in SOPs and texts, in GROUP (09:00 in Shanghai)."""
    sops = copy_sops(tmp_path, *SHIPPED, source=ROOT / "sops")
    async with make_engine(engine, sops, content=ROOT / "content") as (sop, outbox, clock):
        await sop.registry.save_group(GROUP)
        for member in (user(1, "Ann"), user(2, "Bob"), user(3, "Cy")):
            await sop.registry.member_joined(GROUP.id, member, clock.now(), source="chat_member")
        sop.start()
        yield sop, outbox, clock


async def say(sop: Engine, user_id: int, text: str, message_id: int = 1) -> None:
    await sop.message(GROUP.id, user_id, message_id, text, "tidepool_bot")
    await settle(sop)


async def test_each_way_in_checks_in_once_a_day(shipped: Shipped, engine: AsyncEngine) -> None:
    sop, outbox, _clock = shipped
    await say(sop, 1, "/checkin", message_id=11)
    await say(sop, 2, "打卡第一天！", message_id=12)
    await sop.button(GROUP.id, 3, 99, "checkin")
    await settle(sop)
    await say(sop, 1, "签到", message_id=13)  # again the same day: no points
    await say(sop, 2, "I forgot to 打卡 yesterday")  # the word inside a sentence is not one
    texts = [sent.text for sent in outbox.sent]
    assert len(texts) == 4, texts
    assert "Ann</a> ✅ +10 points · streak 1 · #1 today" in texts[0]
    assert "#2 today" in texts[1] and "#3 today" in texts[2]
    assert "already checked in today" in texts[3] and "#1 today" in texts[3]
    assert outbox.sent[0].reply_to == 11, "a lone reply answers the member's message"
    async with engine.connect() as conn:
        rows = (await conn.execute(select(CHECKINS.c.user_id, CHECKINS.c.run_id))).all()
        assert sorted(user_id for user_id, _ in rows) == [1, 2, 3]
        assert all(run_id is not None for _, run_id in rows)
        runs = (await conn.execute(select(SOP_RUNS.c.status))).scalars().all()
    assert set(runs) == {"done"}
    assert await ledger(engine, 1) == [(10, "check-in")]


async def test_a_seven_day_streak_earns_its_bonus_and_the_milestone_sop_runs(
    shipped: Shipped, engine: AsyncEngine
) -> None:
    sop, outbox, clock = shipped
    for day in range(7):
        if day == 3:
            clock.advance(timedelta(days=1))  # one missed day: a freeze keeps the streak
        await say(sop, 1, "/checkin")
        clock.advance(timedelta(days=1))
    await eventually(lambda: any("7 days in a row" in s.text for s in outbox.sent), what="🎉")
    done = [s.text for s in outbox.sent if "✅" in s.text]
    assert "streak 7" in done[-1] and "with a 50 bonus for 7 days" in done[-1]
    assert "streak 6" in done[-2]
    assert (await ledger(engine, 1))[-2:] == [(10, "check-in"), (50, "streak bonus: 7 days")]
    async with engine.connect() as conn:
        milestone = (
            await conn.execute(select(SOP_RUNS).where(SOP_RUNS.c.sop_id == "streak_milestone"))
        ).all()
    assert len(milestone) == 1 and milestone[0].user_id == 1
    data = milestone[0].variables["trigger"]["data"]
    assert data.keys() == EVENT_EXAMPLES["checkin.milestone"].keys(), "what simulate emits"


async def test_weekly_board_mentions_each_winner_once(
    shipped: Shipped, engine: AsyncEngine
) -> None:
    sop, outbox, clock = shipped
    # START is Monday 2026-11-02 09:00 in Shanghai: check in during that week.
    for day in range(3):
        for member in (1, 2)[: 1 + (day > 0)]:
            await say(sop, member, "/checkin")
        clock.advance(timedelta(days=1))
    clock.advance(timedelta(days=4))  # Monday 2026-11-09, 09:00
    await sop.fire_schedule("weekly_leaderboard", GROUP.id)
    await eventually(lambda: any("leaderboard" in s.text for s in outbox.sent), what="board")
    [board] = [s for s in outbox.sent if "leaderboard" in s.text]
    assert "(2026-11-02 to 2026-11-08)" in board.text
    assert board.text.count('href="tg://user?id=1"') == 1
    assert board.text.count('href="tg://user?id=2"') == 1
    lines = board.text.splitlines()
    assert any(line.startswith("1. <a") and "Ann" in line and "3 days" in line for line in lines)
    assert any(line.startswith("2. <a") and "Bob" in line and "2 days" in line for line in lines)
    assert "1. Ann · 30" in board.text, "Ann's second appearance is not a mention"
    assert board.markup.inline_keyboard[0][0].callback_data == "checkin"


async def test_an_empty_week_posts_nothing(shipped: Shipped) -> None:
    sop, outbox, _clock = shipped
    await sop.fire_schedule("weekly_leaderboard", GROUP.id)
    await settle(sop)
    assert outbox.sent == []


async def test_concurrent_check_ins_of_one_member_count_once(
    shipped: Shipped, engine: AsyncEngine
) -> None:
    sop, outbox, _clock = shipped
    await asyncio.gather(
        *(sop.message(GROUP.id, 1, n, "/checkin", "tidepool_bot") for n in range(5)),
        sop.button(GROUP.id, 1, 99, "checkin"),
    )
    await settle(sop)
    assert await ledger(engine, 1) == [(10, "check-in")]
    assert sum("✅" in sent.text for sent in outbox.sent) == 1


async def test_member_streak_in_texts_is_the_current_streak(
    engine: AsyncEngine, registry: Registry, activity: ActivityLog, tmp_path: Path
) -> None:
    content = tmp_path / "content"
    shutil.copytree(ROOT / "content", content)
    for language in ("en", "zh"):
        with (content / "texts" / f"{language}.yaml").open("a", encoding="utf-8") as texts:
            texts.write('streaks:\n  mine: "{{ member.name }}: {{ member.streak }}"\n')
    sops = copy_sops(tmp_path, "daily_checkin.yaml", source=ROOT / "sops")
    (sops / "my_streak.yaml").write_text(
        "schema_version: 1\nid: my_streak\nname: My streak\ngroups: all\nmode: parallel\n"
        "triggers: [{type: command, command: mystreak}]\n"
        "steps: [{send: {template: streaks.mine}}]\n"
    )
    async with make_engine(engine, sops, content=content) as (sop, outbox, clock):
        await sop.registry.save_group(GROUP)
        await sop.registry.member_joined(
            GROUP.id, user(1, "Ann"), clock.now(), source="chat_member"
        )
        sop.start()
        for day in range(3):
            await say(sop, 1, "/checkin", message_id=100 + day)
            clock.advance(timedelta(days=1))
        await say(sop, 1, "/mystreak", message_id=200)
        await eventually(lambda: outbox.texts(GROUP.id)[-1] == "Ann: 3", what="streak 3")
        clock.advance(timedelta(days=4))  # three days missed, two forgiven: the streak lapsed
        await say(sop, 1, "/mystreak", message_id=201)
        await eventually(lambda: outbox.texts(GROUP.id)[-1] == "Ann: 0", what="streak 0")
