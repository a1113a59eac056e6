"""SOP steps that push: the shipped daily tip (`broadcast` with `rotate`) and `live` steps."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import yaml
from aiogram.types import Chat
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.activity import ActivityLog
from bot.clock import ManualClock
from bot.db import LIVES, PUSHES, SOP_RUNS
from bot.push.queue import PushQueue
from bot.registry import Registry
from bot.sop.check import check_path
from bot.sop.engine import Engine
from tests.sop_harness import RecordingOutbox, copy_sops, make_engine, queue_of, settle

ROOT = Path(__file__).resolve().parent.parent
SHANGHAI = ZoneInfo("Asia/Shanghai")
GROUP, OTHER = -1001, -1002


@contextlib.asynccontextmanager
async def wired(
    engine: AsyncEngine, sops: Path
) -> AsyncIterator[tuple[Engine, PushQueue, RecordingOutbox, ManualClock]]:
    async with make_engine(engine, sops, content=ROOT / "content", quiet_hours="off") as (
        sop,
        outbox,
        clock,
    ):
        yield sop, queue_of(sop), outbox, clock


async def test_the_daily_tip_works_through_the_list_per_group(
    engine: AsyncEngine, registry: Registry, activity: ActivityLog, tmp_path: Path
) -> None:
    await registry.save_group(Chat(id=GROUP, type="supergroup", title="Readers"), language="en")
    await registry.save_group(Chat(id=OTHER, type="supergroup", title="Writers"), language="zh")
    sops = copy_sops(tmp_path, "daily_tip.yaml", source=ROOT / "sops")
    async with wired(engine, sops) as (sop, queue, outbox, clock):
        tips = yaml.safe_load((ROOT / "content/rotations/daily_tips.yaml").read_text())
        for day in range(3):
            await sop.fire_schedule("daily_tip", GROUP)
            if day == 0:
                await sop.fire_schedule("daily_tip", OTHER)
            await settle(sop)
            await queue.run_due()
            await queue.settle()
            clock.advance(timedelta(days=1))
        sent = outbox.texts(GROUP)
        assert len(sent) == 3
        for text, tip in zip(sent, tips[:3], strict=True):
            assert text.startswith("💡 <b>Tip of the day</b>") and tip["en"] in text
        [other] = outbox.texts(OTHER)
        assert "每日小贴士" in other and tips[0]["zh"] in other  # its own place in the list
        async with engine.connect() as conn:
            statuses = (await conn.execute(select(SOP_RUNS.c.status))).scalars().all()
            keys = (await conn.execute(select(PUSHES.c.key))).scalars().all()
        assert set(statuses) == {"done"}
        assert len(keys) == 4


LIVE_SOP = {
    "schema_version": 1,
    "id": "thursday_live",
    "name": "Thursday live",
    "groups": "all",
    "concurrency_key": "group",
    "triggers": [{"type": "schedule", "cron": "0 10 * * wed"}],
    "steps": [
        {
            "id": "plan",
            "live": {
                "title": {"zh": "每周直播", "en": "Weekly live"},
                "start": {"at": "20:00", "days": 1},
                "link": "https://example.com/live",
                "reminders": ["1h", "start"],
            },
        }
    ],
}


async def test_a_live_step_plans_the_live_once_in_the_group_time(
    engine: AsyncEngine, registry: Registry, activity: ActivityLog, tmp_path: Path
) -> None:
    await registry.save_group(Chat(id=GROUP, type="supergroup", title="Readers"), language="en")
    await registry.set_group(GROUP, timezone="Europe/Berlin")
    sops = tmp_path / "sops"
    sops.mkdir()
    (sops / "thursday_live.yaml").write_text(yaml.safe_dump(LIVE_SOP, allow_unicode=True))
    assert [str(problem) for problem in check_path(sops, ROOT / "content")] == []
    async with wired(engine, sops) as (sop, queue, outbox, clock):
        await sop.fire_schedule("thursday_live", GROUP)
        await settle(sop)
        async with engine.connect() as conn:
            [live] = (await conn.execute(select(LIVES))).all()
        berlin = ZoneInfo("Europe/Berlin")
        tomorrow = clock.now().astimezone(berlin).date() + timedelta(days=1)
        assert live.starts_at == datetime.combine(tomorrow, datetime.min.time(), berlin).replace(
            hour=20
        )
        assert (live.title, live.url, live.reminders) == (
            "Weekly live",
            "https://example.com/live",
            ["1h", "0s"],
        )
        await queue.run_due()
        await queue.settle()
        assert "Live: Weekly live" in outbox.texts(GROUP)[0]
