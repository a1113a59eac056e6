"""A failed run is never silent: /sop_run says the outcome, owners hear once a day, /sops shows it."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from aiogram.types import Chat
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.activity import ActivityLog
from bot.registry import Registry
from bot.sop.admin import SopAdmin
from bot.sop.engine import _failures as failures_module
from tests.sop_harness import GROUP, OWNER, RecordingOutbox, eventually, make_engine, settle
from tests.test_sop_runs import write_sop

OTHER = Chat(id=-1002, type="supergroup", title="Coffee lovers")

DAILY = """\
triggers: [{type: schedule, cron: "0 9 * * *"}]
steps:
  - id: post
    send: {template: t.bye}
"""

WAITS = """\
triggers: [{type: command, command: slow}]
steps:
  - send: {template: t.bye}
  - wait: {for: 1h}
  - send: {template: t.bye}
"""


@pytest.fixture(autouse=True)
def quick_gather(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(failures_module, "GATHER", 0.05)


@pytest.fixture
async def running(
    engine: AsyncEngine, registry: Registry, activity: ActivityLog, tmp_path: Path
) -> Any:
    await registry.save_group(GROUP)
    await registry.save_group(OTHER)
    write_sop(tmp_path / "sops", "daily", DAILY)
    write_sop(tmp_path / "sops", "slow", WAITS)
    async with make_engine(engine, tmp_path / "sops") as (sop, outbox, clock):
        sop.start()
        yield sop, outbox, clock


def told(outbox: RecordingOutbox) -> list[str]:
    """What the owner was told, privately."""
    return outbox.texts(OWNER)


async def test_sop_run_answers_with_the_outcome(running: Any) -> None:
    sop, outbox, _clock = running
    admin = SopAdmin(sop)
    assert await admin.run(GROUP.id, "daily", None, "") == (
        "sop.run_done",
        {"id": "daily", "who": ""},
    )
    assert await admin.run(GROUP.id, "slow", None, "") == ("sop.started", {"id": "slow", "who": ""})
    outbox.refuse.add(GROUP.id)
    key, values = await admin.run(GROUP.id, "daily", None, "")
    assert key == "sop.run_failed"
    assert values["reason"] == "post: Forbidden: bot was kicked"
    await settle(sop)
    assert told(outbox) == [], "a run by hand is answered, not told to the owners"


async def test_a_scheduled_sop_that_fails_tells_the_owners_once_a_day(running: Any) -> None:
    sop, outbox, clock = running
    outbox.refuse.update({GROUP.id, OTHER.id})
    await sop.fire_schedule("daily", GROUP.id)
    await sop.fire_schedule("daily", OTHER.id)
    await eventually(lambda: told(outbox), what="the owners' notice")
    await settle(sop)
    assert told(outbox) == [
        "⚠️ SOP <code>daily</code>: 2 run(s) failed today (Coffee lovers, Tea &lt;lovers&gt;). "
        "Latest reason: post: Forbidden: bot was kicked. I will not repeat this today; "
        "/sops in a group shows it."
    ]

    clock.advance(timedelta(hours=1))  # the same day: counted, not told again
    await sop.fire_schedule("daily", GROUP.id)
    await settle(sop)
    assert len(told(outbox)) == 1

    clock.advance(timedelta(days=1))
    await sop.fire_schedule("daily", GROUP.id)
    await eventually(lambda: len(told(outbox)) == 2, what="the next day's notice")
    assert "daily</code>: 1 run(s) failed today (Tea &lt;lovers&gt;)" in told(outbox)[1]


async def test_a_restart_does_not_tell_the_same_days_failures_again(
    running: Any, engine: AsyncEngine, registry: Registry, activity: ActivityLog, tmp_path: Path
) -> None:
    sop, outbox, clock = running
    outbox.refuse.add(GROUP.id)
    await sop.fire_schedule("daily", GROUP.id)
    await eventually(lambda: told(outbox), what="the owners' notice")
    async with make_engine(engine, tmp_path / "sops") as (again, outbox_again, clock_again):
        clock_again.set(clock.now() + timedelta(minutes=5))
        outbox_again.refuse.add(GROUP.id)
        again.start()
        await again.fire_schedule("daily", GROUP.id)
        await settle(again)
        await again.failures.wait(5)
        assert told(outbox_again) == []


async def test_sops_shows_the_last_failure(running: Any) -> None:
    sop, outbox, _clock = running
    outbox.refuse.add(GROUP.id)
    await sop.fire_schedule("daily", GROUP.id)
    await settle(sop)
    lines = await SopAdmin(sop).overview(GROUP.id)
    daily = next(i for i, (key, values) in enumerate(lines) if values.get("id") == "daily")
    assert lines[daily][1]["failed"] == 1
    assert lines[daily + 1] == (
        "sop.list_failed",
        {"at": "2026-11-02 09:00", "reason": "post: Forbidden: bot was kicked"},
    )
    slow = next(i for i, (key, values) in enumerate(lines) if values.get("id") == "slow")
    assert [key for key, _ in lines[slow + 1 : slow + 2]] != ["sop.list_failed"], "none: no failure"
