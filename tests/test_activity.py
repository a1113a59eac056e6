"""The activity log: what a message becomes, batching, and nothing lost on failure or stop."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.activity import ActivityLog
from bot.db import EVENTS, MEMBERS
from tests.conftest import at
from tests.updates import group_message, user


async def events(engine: AsyncEngine) -> list[dict[str, Any]]:
    async with engine.connect() as conn:
        return [
            dict(r) for r in (await conn.execute(select(EVENTS).order_by(EVENTS.c.id))).mappings()
        ]


async def members(engine: AsyncEngine) -> list[dict[str, Any]]:
    async with engine.connect() as conn:
        return [dict(r) for r in (await conn.execute(select(MEMBERS))).mappings()]


async def test_message_becomes_event_without_text(
    engine: AsyncEngine, activity: ActivityLog
) -> None:
    alice = user(11, "Alice")
    activity.message(group_message(1, alice, at(0), text="早上好 everyone"))
    activity.message(group_message(2, alice, at(1), text="/checkin@tidepool_bot now"))
    await activity.flush()
    rows = await events(engine)
    assert [(r["type"], r["kind"], r["text_length"], r["text"]) for r in rows] == [
        ("message", "text", 12, None),
        ("command", "text", 25, None),
    ]
    assert rows[1]["data"] == {"command": "checkin"}
    assert rows[0]["at"] == at(0)
    [member] = await members(engine)
    assert (member["first_name"], member["message_count"]) == ("Alice", 2)
    assert (member["first_activity_at"], member["last_activity_at"]) == (at(0), at(1))


async def test_text_is_stored_only_when_asked(engine: AsyncEngine) -> None:
    log = ActivityLog(engine, store_text=True)
    log.message(group_message(1, user(11), at(0), text="keep me"))
    await log.close()
    assert [r["text"] for r in await events(engine)] == ["keep me"]


async def test_media_reply_forward_and_bots(engine: AsyncEngine, activity: ActivityLog) -> None:
    from aiogram.types import MessageOriginUser, PhotoSize

    alice, helper_bot = user(11, "Alice"), user(99, "OtherBot", is_bot=True)
    first = group_message(1, alice, at(0))
    photo = [PhotoSize(file_id="f", file_unique_id="u", width=1, height=1)]
    activity.message(first)
    activity.message(
        group_message(
            2, alice, at(1), text=None, photo=photo, caption="look", reply_to_message=first
        )
    )
    origin = MessageOriginUser(date=at(0), sender_user=user(12))
    activity.message(group_message(3, alice, at(2), forward_origin=origin))
    activity.message(group_message(4, helper_bot, at(3)))
    await activity.flush()
    rows = await events(engine)
    assert [(r["type"], r["kind"], r["is_reply"], r["is_forward"]) for r in rows] == [
        ("message", "text", False, False),
        ("message", "photo", True, False),
        ("message", "text", False, True),
        ("bot_message", "text", False, False),
    ]
    assert {m["user_id"]: m["message_count"] for m in await members(engine)} == {11: 3}


async def test_member_totals_add_up_across_batches(engine: AsyncEngine) -> None:
    log = ActivityLog(engine, batch_size=10)
    alice = user(11, "Alice")
    for i in range(25):
        log.message(group_message(i + 1, alice, at(i)))
        if i % 7 == 0:
            await log.flush()
    await log.close()
    [member] = await members(engine)
    assert member["message_count"] == 25
    assert (member["first_activity_at"], member["last_activity_at"]) == (at(0), at(24))
    assert len(await events(engine)) == 25


async def test_background_writer_flushes_at_batch_size(engine: AsyncEngine) -> None:
    import asyncio

    log = ActivityLog(engine, batch_size=5, interval=30)
    log.start()
    for i in range(5):
        log.message(group_message(i + 1, user(11), at(i)))
    for _ in range(100):
        if log.written == 5:
            break
        await asyncio.sleep(0.02)
    assert log.written == 5
    await log.close()


async def test_failed_write_keeps_rows_until_it_succeeds(engine: AsyncEngine) -> None:
    log = ActivityLog(engine)
    log.message(group_message(1, user(11), at(0)))
    async with engine.begin() as conn:
        await conn.execute(text("ALTER TABLE events RENAME TO events_away"))
    try:
        await log.flush()
    except Exception:
        pass
    else:  # pragma: no cover - the write must fail while the table is away
        raise AssertionError("write should have failed")
    log.message(group_message(2, user(11), at(1)))
    assert log.pending == 3  # two events and one member's activity
    async with engine.begin() as conn:
        await conn.execute(text("ALTER TABLE events_away RENAME TO events"))
    await log.close()
    assert [r["message_id"] for r in await events(engine)] == [1, 2]
    assert [m["message_count"] for m in await members(engine)] == [2]


async def test_a_stream_faster_than_the_writer_waits_for_it(
    engine: AsyncEngine, monkeypatch
) -> None:
    """Past `high_water` waiting rows, recording waits until the writer takes them; a writer
    that keeps failing holds nobody up (its rows stay buffered for the retry)."""
    import asyncio

    log = ActivityLog(engine, batch_size=1000, interval=30, high_water=3)
    gate = asyncio.Event()
    write = log._write

    async def slow_write(*args: Any) -> None:
        await gate.wait()
        await write(*args)

    monkeypatch.setattr(log, "_write", slow_write)
    log.start()
    for i in range(3):
        log.message(group_message(i + 1, user(11), at(i)))
    await log.make_room()  # the writer takes the three rows (and waits at the gate)
    assert log.pending == 0
    for i in range(3, 6):
        log.message(group_message(i + 1, user(11), at(i)))
    waiting = asyncio.create_task(log.make_room())
    await asyncio.sleep(0.05)
    assert not waiting.done(), "the writer is still busy with the first rows"
    gate.set()
    await asyncio.wait_for(waiting, 5)
    await log.close()
    assert [r["message_id"] for r in await events(engine)] == [1, 2, 3, 4, 5, 6]

    async def failing_write(*args: Any) -> None:
        raise OSError("disk I/O error")

    broken = ActivityLog(engine, batch_size=1, interval=30, high_water=1)
    monkeypatch.setattr(broken, "_write", failing_write)
    broken.start()
    broken.message(group_message(7, user(11), at(7)))
    await asyncio.wait_for(broken.make_room(), 5)  # taken, then failed and put back
    await asyncio.sleep(0.05)
    assert broken._failing and broken.pending == 2
    await asyncio.wait_for(broken.make_room(), 1)  # failing: returns at once
    monkeypatch.delattr(broken, "_write")  # the database is back
    await broken.close()
    assert len(await events(engine)) == 7
