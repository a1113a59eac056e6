"""Live sessions: announcement, reminders at each offset, subscribers, moving and cancelling."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from aiogram.types import Chat
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.clock import ManualClock
from bot.db import EVENTS, PUSHES, EventType, PushStatus
from bot.push.lives import LiveError, Lives
from bot.push.queue import PushQueue
from bot.registry import Registry
from tests.sop_harness import OWNER, RecordingOutbox, assembled

ROOT = Path(__file__).resolve().parent.parent
SHANGHAI = ZoneInfo("Asia/Shanghai")
GROUP = -1001
FAN = 42
MONDAY_NOON = datetime(2026, 11, 2, 12, tzinfo=SHANGHAI)
TUESDAY_8PM = datetime(2026, 11, 3, 20, tzinfo=SHANGHAI)


Setup = tuple[Lives, PushQueue, RecordingOutbox, ManualClock]


@pytest.fixture
async def setup(engine: AsyncEngine, registry: Registry, tmp_path: Path) -> AsyncIterator[Setup]:
    """The assembled bot's lives and push queue (its loop not started), in a group Readers."""
    await registry.save_group(Chat(id=GROUP, type="supergroup", title="Readers"), language="en")
    (tmp_path / "sops").mkdir()
    clock = ManualClock(MONDAY_NOON)
    async with assembled(engine, tmp_path / "sops", clock=clock) as (app, outbox, _):
        yield app.lives, app.pushes, outbox, clock


async def run(queue: PushQueue) -> None:
    for _ in range(3):  # private copies are queued when the group reminder goes
        await queue.run_due()
        await queue.settle()


async def pushes(engine: AsyncEngine) -> list[tuple[str, str, datetime]]:
    async with engine.connect() as conn:
        rows = await conn.execute(
            select(PUSHES.c.key, PUSHES.c.status, PUSHES.c.due_at).order_by(PUSHES.c.id)
        )
        return [(row.key, row.status, row.due_at) for row in rows]


async def test_a_live_is_announced_pinned_reminded_and_unpinned(
    engine: AsyncEngine, setup: Setup
) -> None:
    lives, queue, outbox, clock = setup
    live = await lives.create(
        GROUP, title="Winter Q&A", starts_at=TUESDAY_8PM, url="https://x.test/live", source="t"
    )
    planned = {key: due for key, _, due in await pushes(engine)}
    assert planned == {
        f"live:{live.id}:announce": MONDAY_NOON,
        f"live:{live.id}:unpin": TUESDAY_8PM + timedelta(hours=2),
        f"live:{live.id}:r0:1d": datetime(2026, 11, 2, 20, tzinfo=SHANGHAI),
        f"live:{live.id}:r0:1h": datetime(2026, 11, 3, 19, tzinfo=SHANGHAI),
        f"live:{live.id}:r0:10m": datetime(2026, 11, 3, 19, 50, tzinfo=SHANGHAI),
        f"live:{live.id}:r0:0s": TUESDAY_8PM,
    }
    await run(queue)
    [announcement] = outbox.sent
    assert "Live: Winter Q&amp;A" in announcement.text and "2026-11-03 20:00" in announcement.text
    buttons = announcement.markup.inline_keyboard[0]
    assert [b.callback_data for b in buttons] == [f"live:remind:{live.id}", f"live:watch:{live.id}"]
    assert outbox.pinned == [(GROUP, announcement.message_id)]
    stored = await lives.get(live.id)
    assert stored is not None and stored.message_id == announcement.message_id

    assert (await lives.subscribe(live.id, FAN))[0] == "subscribed"
    assert (await lives.subscribe(live.id, FAN))[0] == "already"
    for moment, soon in [
        (datetime(2026, 11, 2, 20, tzinfo=SHANGHAI), "in 1 day"),
        (datetime(2026, 11, 3, 19, tzinfo=SHANGHAI), "in 1 hour"),
        (datetime(2026, 11, 3, 19, 50, tzinfo=SHANGHAI), "in 10 minutes"),
        (TUESDAY_8PM, "starting now"),
    ]:
        clock.set(moment)
        before = len(outbox.sent)
        await run(queue)
        group, private = outbox.sent[before:]
        assert group.chat_id == GROUP and group.reply_to == announcement.message_id
        assert soon in group.text, group.text
        assert private.chat_id == FAN and "Reminder from Readers" in private.text
        assert private.markup.inline_keyboard[0][0].url == "https://x.test/live"
    clock.set(TUESDAY_8PM + timedelta(hours=2))
    await run(queue)
    assert outbox.unpinned == [(GROUP, announcement.message_id)]
    assert {status for _, status, _ in await pushes(engine)} == {PushStatus.SENT}
    async with engine.connect() as conn:
        await lives.activity.flush()
        kinds = (await conn.execute(select(EVENTS.c.type))).scalars().all()
    assert kinds.count(EventType.LIVE_SUBSCRIBED) == 1


async def test_moving_a_live_moves_every_pending_reminder(
    engine: AsyncEngine, setup: Setup
) -> None:
    lives, queue, outbox, clock = setup
    live = await lives.create(GROUP, title="Q&A", starts_at=TUESDAY_8PM, source="t")
    await run(queue)
    clock.set(datetime(2026, 11, 2, 20, tzinfo=SHANGHAI))
    await run(queue)  # the day-before reminder went
    wednesday = TUESDAY_8PM + timedelta(days=1)
    moved = await lives.move(live.id, GROUP, wednesday)
    assert moved.revision == 1
    found = {key: (status, due) for key, status, due in await pushes(engine)}
    assert found[f"live:{live.id}:r0:1d"][0] == PushStatus.SENT
    assert {found[f"live:{live.id}:r0:{b}"][0] for b in ("1h", "10m", "0s")} == {"cancelled"}
    assert found[f"live:{live.id}:r1:1d"][1] == datetime(2026, 11, 3, 20, tzinfo=SHANGHAI)
    assert found[f"live:{live.id}:r1:0s"][1] == wednesday
    assert found[f"live:{live.id}:unpin"][1] == wednesday + timedelta(hours=2)
    [edit] = outbox.edited  # the announcement shows the new time
    assert "2026-11-04 20:00" in edit.text
    clock.set(datetime(2026, 11, 3, 19, tzinfo=SHANGHAI))
    before = len(outbox.sent)
    await run(queue)
    assert outbox.sent[before:] == []  # Tuesday's 1h reminder is gone
    with pytest.raises(LiveError) as refused:
        await lives.move(live.id, GROUP, MONDAY_NOON)
    assert refused.value.key == "live.in_past"


async def test_a_cancelled_live_sends_nothing_more_and_is_unpinned(
    engine: AsyncEngine, setup: Setup
) -> None:
    lives, queue, outbox, clock = setup
    live = await lives.create(GROUP, title="Q&A", starts_at=TUESDAY_8PM, source="t")
    await run(queue)
    await lives.cancel(live.id, GROUP)
    await run(queue)
    assert outbox.unpinned == [(GROUP, outbox.sent[0].message_id)]
    assert "cancelled" in outbox.edited[0].text and outbox.edited[0].markup is None
    clock.set(TUESDAY_8PM)
    await run(queue)
    assert len(outbox.sent) == 1
    assert (await lives.subscribe(live.id, FAN))[0] == "over"
    with pytest.raises(LiveError) as refused:
        await lives.cancel(live.id, GROUP)
    assert refused.value.key == "live.over"
    assert await lives.upcoming(GROUP) == []


async def test_a_live_at_short_notice_skips_reminders_already_past(
    engine: AsyncEngine, setup: Setup
) -> None:
    lives, *_ = setup
    soon = MONDAY_NOON + timedelta(minutes=30)
    live = await lives.create(GROUP, title="Pop-up", starts_at=soon, source="t")
    keys = [key for key, _, _ in await pushes(engine)]
    assert f"live:{live.id}:r0:10m" in keys and f"live:{live.id}:r0:0s" in keys
    assert f"live:{live.id}:r0:1h" not in keys and f"live:{live.id}:r0:1d" not in keys
    with pytest.raises(LiveError) as refused:
        await lives.create(GROUP, title="Past", starts_at=MONDAY_NOON, source="t")
    assert refused.value.key == "live.in_past"
    [(listed, subscribers)] = await lives.upcoming(GROUP)
    assert (listed.id, subscribers) == (live.id, 0)


async def test_reminders_in_quiet_hours_are_dropped_when_too_late(
    engine: AsyncEngine, setup: Setup
) -> None:
    lives, queue, _, clock = setup
    early = datetime(2026, 11, 3, 7, tzinfo=SHANGHAI)  # in quiet hours (22:00-08:00)
    live = await lives.create(GROUP, title="Dawn yoga", starts_at=early, source="t")
    await run(queue)
    clock.set(early - timedelta(hours=1))
    await run(queue)
    clock.set(datetime(2026, 11, 3, 8, tzinfo=SHANGHAI))
    await run(queue)
    found = {key: status for key, status, _ in await pushes(engine)}
    assert found[f"live:{live.id}:r0:1h"] == PushStatus.DROPPED
    assert found[f"live:{live.id}:r0:0s"] == PushStatus.DROPPED
    assert found[f"live:{live.id}:r0:10m"] == PushStatus.DROPPED
    assert f"live:{live.id}:r0:1d" not in found  # 07:00 today had passed already


async def test_a_reminder_over_the_cap_is_dropped_but_subscribers_still_hear(
    engine: AsyncEngine,
    registry: Registry,
    setup: Setup,
) -> None:
    lives, queue, outbox, clock = setup
    await lives.registry.set_group(GROUP, daily_cap=1)
    live = await lives.create(GROUP, title="Q&A", starts_at=TUESDAY_8PM, source="t")
    await run(queue)  # the announcement uses Monday's one push
    await lives.subscribe(live.id, FAN)
    clock.set(datetime(2026, 11, 2, 20, tzinfo=SHANGHAI))
    await run(queue)
    found = {key: status for key, status, _ in await pushes(engine)}
    assert found[f"live:{live.id}:r0:1d"] == PushStatus.DROPPED
    assert [sent.chat_id for sent in outbox.sent if sent.chat_id != OWNER] == [GROUP, FAN]
    assert found[f"live:{live.id}:r0:1d:u{FAN}"] == PushStatus.SENT
    [told] = outbox.texts(OWNER)
    assert "so the message was dropped: Readers" in told
