"""SOP messages go through the one outbox: scheduled ones keep quiet hours and the daily cap,
answers go at once, and a stop at any moment neither loses nor repeats a message."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.activity import ActivityLog
from bot.db import PUSHES, SOP_RUNS, SOP_STEPS, PushStatus, RunStatus, writing
from bot.registry import Registry
from tests.sop_harness import (
    GROUP,
    START,
    drain,
    engines,
    eventually,
    make_engine,
    queue_of,
    settle,
    user,
)
from tests.test_sop_runs import write_sop

NIGHT = START + timedelta(hours=14)  # 23:00 in Shanghai: quiet hours (22:00-08:00)
MORNING = START + timedelta(hours=23)  # 08:00 the next day

NOTE = """\
triggers:
  - {type: schedule, cron: "0 23 * * *"}
  - {type: command, command: note}
steps:
  - id: first
    send: {template: t.hello}
  - id: second
    send: {template: t.bye}
"""


@pytest.fixture
async def world(engine: AsyncEngine, registry: Registry, activity: ActivityLog, tmp_path: Path):
    """A group with member 1, and a function that builds the engine over the SOP `note`."""
    await registry.save_group(GROUP)
    await registry.member_joined(GROUP.id, user(1, "M1"), START, source="chat_member")
    write_sop(tmp_path / "sops", "note", NOTE)
    async with engines(engine, tmp_path / "sops") as start:
        yield start


async def scheduled_at_night(world: Any) -> tuple[Any, Any, Any]:
    """The engine, with the calendar starting `note` at 23:00, in the group's quiet hours."""
    sop, outbox, clock = await world()
    clock.set(NIGHT)
    await sop.fire_schedule("note", GROUP.id)
    await settle(sop)
    return sop, outbox, clock


async def table(db: AsyncEngine, which: Any) -> list[dict[str, Any]]:
    async with db.connect() as conn:
        return [dict(row._mapping) for row in await conn.execute(select(which))]


async def journal(db: AsyncEngine) -> list[tuple[str, str]]:
    rows = sorted(await table(db, SOP_STEPS), key=lambda row: (row["run_id"], row["seq"]))
    return [(row["step"], row["status"]) for row in rows]


async def test_a_scheduled_message_waits_out_quiet_hours(world, engine: AsyncEngine) -> None:
    sop, outbox, clock = await scheduled_at_night(world)
    assert outbox.texts(GROUP.id) == [], "nothing goes to the group in its quiet hours"
    [push] = await table(engine, PUSHES)
    assert push["status"] == PushStatus.PENDING and push["due_at"] == MORNING
    assert "quiet hours" in push["note"]
    [run] = await table(engine, SOP_RUNS)
    assert run["status"] == RunStatus.SENDING
    clock.set(MORNING)
    queue_of(sop).wake()
    await eventually(lambda: len(outbox.texts(GROUP.id)) == 2, what="both messages in the morning")
    await settle(sop)
    assert outbox.texts(GROUP.id) == ["Hello Tea &lt;lovers&gt; ()", "Bye Tea &lt;lovers&gt;"]
    assert [sent.at for sent in outbox.sent if sent.chat_id == GROUP.id] == [MORNING, MORNING]
    assert await journal(engine) == [("first", "done"), ("second", "done")]
    [run] = await table(engine, SOP_RUNS)
    assert run["status"] == RunStatus.DONE


async def test_an_answer_to_a_member_goes_at_once_in_quiet_hours(
    world, engine: AsyncEngine
) -> None:
    sop, outbox, clock = await world()
    clock.set(NIGHT)
    await sop.message(GROUP.id, 1, 7, "/note", "bot")
    await eventually(lambda: len(outbox.texts(GROUP.id)) == 2, what="both messages")
    assert [sent.at for sent in outbox.sent if sent.chat_id == GROUP.id] == [NIGHT, NIGHT]
    pushes = await table(engine, PUSHES)
    assert {(p["urgent"], p["counts"]) for p in pushes} == {(True, False)}


async def test_scheduled_messages_count_toward_the_daily_cap(
    world, engine: AsyncEngine, registry: Registry
) -> None:
    await registry.set_group(GROUP.id, daily_cap=1)
    sop, outbox, clock = await world()
    await sop.fire_schedule("note", GROUP.id)  # 09:00: its first message is the day's one
    await settle(sop)
    await drain(queue_of(sop))
    await settle(sop)
    assert len(outbox.texts(GROUP.id)) == 1
    pushes = sorted(await table(engine, PUSHES), key=lambda push: push["id"])
    assert [p["status"] for p in pushes] == [PushStatus.SENT, PushStatus.PENDING]
    assert "daily cap of 1" in pushes[1]["note"] and pushes[1]["due_at"] > clock.now()


async def test_a_message_never_tried_before_a_stop_goes_after_the_restart(
    world, engine: AsyncEngine
) -> None:
    sop, outbox, clock = await scheduled_at_night(world)
    await queue_of(sop).close(grace=0)  # the bot stops with the message waiting
    await sop.close()
    clock.set(MORNING)
    async with make_engine(engine, sop.library.sops_dir) as (again, outbox2, clock2):
        clock2.set(MORNING)
        again.start()
        await eventually(lambda: len(outbox2.texts(GROUP.id)) == 2, what="both after the restart")
        await settle(again)
        assert outbox.texts(GROUP.id) == []
        assert await journal(engine) == [("first", "done"), ("second", "done")]


async def test_a_message_sent_just_before_a_stop_is_not_sent_again(
    world, engine: AsyncEngine
) -> None:
    sop, outbox, _clock = await world()
    outbox.stall = True  # Telegram is asked; the bot dies before the run moves on
    await sop.message(GROUP.id, 1, 7, "/note", "bot")
    await eventually(lambda: outbox.stalled == 1, what="the first message to be asked")
    await queue_of(sop).close(grace=0)
    for task in sop.tasks:
        task.cancel()
    await asyncio.sleep(0.05)
    # Telegram had answered and the answer was recorded, but the run was not moved on
    async with writing(engine) as conn:
        await conn.execute(
            update(PUSHES).values(status=PushStatus.SENT.value, message_id=4242, sent_at=START)
        )
    async with make_engine(engine, sop.library.sops_dir) as (again, outbox2, _):
        again.start()
        await eventually(lambda: len(outbox2.texts(GROUP.id)) == 1, what="the second message")
        await settle(again)
        assert outbox2.texts(GROUP.id) == ["Bye M1"], "the first message is not sent again"
        steps = sorted(await table(engine, SOP_STEPS), key=lambda row: row["seq"])
        assert next((s["step"], s["status"], s["message_id"]) for s in steps) == (
            "first",
            "done",
            4242,
        )


async def test_a_waiting_message_of_an_sop_switched_off_meanwhile_never_goes(
    world, engine: AsyncEngine
) -> None:
    sop, outbox, clock = await scheduled_at_night(world)
    await sop.stop_runs("note", GROUP.id, "switched off in this group by an admin")
    clock.set(MORNING)
    await drain(queue_of(sop))
    await settle(sop)
    assert outbox.texts(GROUP.id) == []
    [push] = await table(engine, PUSHES)
    assert push["status"] == PushStatus.CANCELLED
    [run] = await table(engine, SOP_RUNS)
    assert run["status"] == RunStatus.CANCELLED
