"""Trigger cooldowns: at most one start per period per member (or group), calendar days in the
group's time zone or rolling, kept across restarts, refused starts told why."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import yaml
from loguru import logger
from sqlalchemy import event, select
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.db import SOP_RUNS
from bot.sop.check import check_path
from bot.sop.engine import Engine, Refusal, next_start
from bot.sop.format import Sop
from tests.sop_harness import GROUP, START, make_engine, settle, user

SHANGHAI = ZoneInfo("Asia/Shanghai")
DAY = timedelta(days=1)
LIN, ADA = 101, 102

SOP = """\
schema_version: 1
id: price
name: Price reply
groups: all
mode: {mode}
concurrency_key: {key}
triggers:
  - type: message
    keywords: [price]
    cooldown: {cooldown}
  - type: command
    command: price
steps:
  - send:
      template: t.hello
      reply: true
"""


def write_sop(folder: Path, cooldown: str, key: str = "member", mode: str = "parallel") -> Path:
    sops = folder / "sops"
    sops.mkdir(exist_ok=True)
    (sops / "price.yaml").write_text(SOP.format(cooldown=cooldown, key=key, mode=mode))
    return sops


async def starts(db: AsyncEngine) -> list[tuple[int | None, datetime]]:
    """(member, when) of every run started, in order."""
    async with db.connect() as conn:
        rows = await conn.execute(
            select(SOP_RUNS.c.user_id, SOP_RUNS.c.created_at).order_by(SOP_RUNS.c.id)
        )
        return [(row.user_id, row.created_at) for row in rows]


async def write(sop: Engine, user_id: int, text: str = "what's the price?") -> None:
    await sop.message(GROUP.id, user_id, 1, text, "tidepool_bot")
    await sop.starts_written()
    await settle(sop)


async def in_group(sop: Engine) -> None:
    await sop.registry.save_group(GROUP)
    for user_id, name in ((LIN, "Lin"), (ADA, "Ada")):
        await sop.registry.member_joined(GROUP.id, user(user_id, name), START, source="test")


# -- when a start may come again --------------------------------------------------------------


def test_whole_days_count_calendar_days_in_the_groups_time_zone() -> None:
    late = datetime(2026, 11, 2, 15, 30, tzinfo=UTC)  # 23:30 in Shanghai, 15:30 in UTC
    # In Shanghai the next day begins 30 minutes later; in UTC, 8.5 hours later.
    assert next_start(late, timedelta(days=1), SHANGHAI) == datetime(2026, 11, 2, 16, tzinfo=UTC)
    assert next_start(late, timedelta(days=1), ZoneInfo("UTC")) == datetime(2026, 11, 3, tzinfo=UTC)
    assert next_start(late, timedelta(days=7), SHANGHAI) == datetime(2026, 11, 8, 16, tzinfo=UTC)


def test_other_durations_run_from_the_last_start() -> None:
    last = datetime(2026, 11, 2, 15, 30, tzinfo=UTC)
    assert next_start(last, timedelta(hours=12), SHANGHAI) == last + timedelta(hours=12)
    assert next_start(last, timedelta(days=1, hours=12), SHANGHAI) == last + timedelta(hours=36)


def test_a_refusal_says_when_the_sop_started_and_when_it_may_start_again() -> None:
    last = datetime(2026, 11, 2, 1, tzinfo=UTC)  # 09:00 in Shanghai
    now = last + timedelta(hours=5)
    again = next_start(last, timedelta(days=1), SHANGHAI)
    refusal = Refusal("price", GROUP.id, LIN, now, timedelta(days=1), last, again, SHANGHAI)
    assert refusal.reason() == "cooldown 1d, started today at 09:00; next from tomorrow 00:00"
    rolling = Refusal(
        "price", GROUP.id, LIN, now, timedelta(hours=8), last, last + timedelta(hours=8), SHANGHAI
    )
    assert rolling.reason() == "cooldown 8h, started today at 09:00; next from today 17:00"
    days = timedelta(days=3)
    later = Refusal(
        "price", GROUP.id, LIN, now + DAY, days, last, next_start(last, days, SHANGHAI), SHANGHAI
    )
    assert later.reason() == (
        "cooldown 3d, started yesterday at 09:00; next from Thu 2026-11-05 00:00"
    )


# -- the engine --------------------------------------------------------------------------------


async def test_once_per_local_day_per_member(engine: AsyncEngine, tmp_path: Path) -> None:
    sops = write_sop(tmp_path, "1d")
    async with make_engine(engine, sops) as (sop, outbox, clock):
        await in_group(sop)
        sop.start()
        await write(sop, LIN)  # 09:00 in Shanghai
        clock.advance(timedelta(hours=14, minutes=29))  # 23:29: the same local day
        await write(sop, LIN)
        await write(sop, ADA)  # another member: a start of her own
        assert [who for who, _at in await starts(engine)] == [LIN, ADA]
        [refused] = sop.cooldowns.refused
        assert (refused.sop_id, refused.user_id) == ("price", LIN)
        assert refused.reason() == "cooldown 1d, started today at 09:00; next from tomorrow 00:00"
        clock.advance(timedelta(minutes=32))  # 00:01 in Shanghai (16:01 UTC, the same UTC day)
        await write(sop, LIN)
        assert [who for who, _at in await starts(engine)] == [LIN, ADA, LIN]
        assert len(outbox.sent) == 3


async def test_a_rolling_cooldown_counts_from_the_last_start(
    engine: AsyncEngine, tmp_path: Path
) -> None:
    sops = write_sop(tmp_path, "12h")
    async with make_engine(engine, sops) as (sop, _outbox, clock):
        await in_group(sop)
        sop.start()
        await write(sop, LIN)
        clock.advance(timedelta(hours=11, minutes=59))
        await write(sop, LIN)
        assert len(await starts(engine)) == 1
        clock.advance(timedelta(minutes=1))
        await write(sop, LIN)
        assert len(await starts(engine)) == 2


async def test_per_group_for_a_group_sop(engine: AsyncEngine, tmp_path: Path) -> None:
    sops = write_sop(tmp_path, "1d", key="group")
    async with make_engine(engine, sops) as (sop, _outbox, clock):
        await in_group(sop)
        sop.start()
        await write(sop, LIN)
        clock.advance(timedelta(hours=1))
        await write(sop, ADA)
        assert [who for who, _at in await starts(engine)] == [LIN], "the group had its start"
        assert sop.cooldowns.refused[-1].user_id == ADA


async def test_twice_in_one_batch_starts_once(engine: AsyncEngine, tmp_path: Path) -> None:
    sops = write_sop(tmp_path, "1d")  # mode parallel: only the cooldown stands in the way
    async with make_engine(engine, sops) as (sop, _outbox, _clock):
        await in_group(sop)
        sop.start()
        await sop.message(GROUP.id, LIN, 1, "price?", "tidepool_bot")
        await sop.message(GROUP.id, LIN, 2, "price!", "tidepool_bot")  # before it was written
        await sop.starts_written()
        await settle(sop)
        assert len(await starts(engine)) == 1


async def test_other_triggers_and_starts_by_hand_count_as_starts(
    engine: AsyncEngine, tmp_path: Path
) -> None:
    sops = write_sop(tmp_path, "1d")
    async with make_engine(engine, sops) as (sop, _outbox, clock):
        await in_group(sop)
        sop.start()
        await write(sop, LIN, "/price")  # the command trigger has no cooldown
        await write(sop, LIN, "/price")
        clock.advance(timedelta(hours=1))
        await write(sop, LIN)  # the keyword: the SOP started today already
        assert len(await starts(engine)) == 2
        await sop.run_by_hand("price", GROUP.id, LIN)  # by hand: no cooldown
        await settle(sop)
        assert len(await starts(engine)) == 3


async def test_kept_across_a_restart(engine: AsyncEngine, tmp_path: Path) -> None:
    sops = write_sop(tmp_path, "1d")
    async with make_engine(engine, sops) as (sop, _outbox, clock):
        await in_group(sop)
        sop.start()
        await write(sop, LIN)
        moment = clock.now()
    async with make_engine(engine, sops) as (again, _outbox, clock):
        clock.set(moment + timedelta(hours=2))
        again.start()
        await write(again, LIN)
        assert len(await starts(engine)) == 1, "the new process read the last start"
        assert again.cooldowns.refused[-1].user_id == LIN
        clock.set(moment + timedelta(days=1))
        await write(again, LIN)
        assert len(await starts(engine)) == 2


async def test_a_refused_start_is_logged_at_debug(engine: AsyncEngine, tmp_path: Path) -> None:
    sops = write_sop(tmp_path, "1d")
    lines: list[str] = []
    sink = logger.add(lines.append, level="DEBUG", format="{message}")
    try:
        async with make_engine(engine, sops) as (sop, _outbox, _clock):
            await in_group(sop)
            sop.start()
            await write(sop, LIN)
            await write(sop, LIN)
    finally:
        logger.remove(sink)
    assert any(
        line.startswith(f"price not started for {LIN}: cooldown 1d, started today at 09:00")
        for line in lines
    ), lines


# -- the format --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("0s", "triggers.0.cooldown: must be longer than 0s"),
        ("-1d", "triggers.0.cooldown: '-1d' is not a duration"),
        ("daily", "triggers.0.cooldown: 'daily' is not a duration"),
        ("3651d", "triggers.0.cooldown: must be at most 3650d"),
    ],
)
def test_check_refuses_a_nonsense_cooldown(tmp_path: Path, value: str, message: str) -> None:
    sops = write_sop(tmp_path, value)
    problems = [str(problem) for problem in check_path(sops / "price.yaml", Path("content"))]
    assert any(message in problem for problem in problems), problems


def test_a_cooldown_reads_back_as_written() -> None:
    sop = Sop.model_validate(
        yaml.safe_load(SOP.format(cooldown="1d12h", key="member", mode="single"))
    )
    assert sop.triggers[0].cooldown == timedelta(days=1, hours=12)
    assert sop.triggers[1].cooldown is None


async def test_the_last_start_is_read_once_per_member_not_per_message(
    engine: AsyncEngine, tmp_path: Path
) -> None:
    sops = write_sop(tmp_path, "1d")
    reads: list[str] = []

    def count(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if "max(sop_runs.created_at)" in statement:
            reads.append(statement)

    event.listen(engine.sync_engine, "before_cursor_execute", count)
    try:
        async with make_engine(engine, sops) as (sop, _outbox, _clock):
            await in_group(sop)
            sop.start()
            for _ in range(5):
                await write(sop, LIN)
            await write(sop, ADA)
            await write(sop, ADA)
    finally:
        event.remove(engine.sync_engine, "before_cursor_execute", count)
    assert len(await starts(engine)) == 2
    assert sop.cooldowns.refusals == 5
    assert len(reads) == 2, "one read per member, then memory"
