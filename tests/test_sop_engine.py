"""The SOP engine on a fake clock: triggers, steps, waits, modes, variants, restarts."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from aiogram.types import User
from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.activity import ActivityLog, event_row
from bot.clock import ManualClock
from bot.db import EVENTS, MEMBER_TAGS, SOP_RUNS, SOP_STEPS, EventType
from bot.registry import Registry
from bot.sop.engine import JOIN_GATHER, Engine
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

Welcome = tuple[Engine, RecordingOutbox, ManualClock]


@pytest.fixture
async def welcome(
    engine: AsyncEngine, registry: Registry, activity: ActivityLog, tmp_path: Path
) -> AsyncIterator[Welcome]:
    """An engine over the shipped welcome.yaml and texts, in GROUP; the test starts it."""
    sops = copy_sops(tmp_path, "welcome.yaml", source=ROOT / "sops")
    async with make_engine(engine, sops, content=ROOT / "content") as (sop, outbox, clock):
        await sop.registry.save_group(GROUP)
        yield sop, outbox, clock


async def join(welcome: Welcome, registry: Registry, member: User) -> None:
    sop, _outbox, clock = welcome
    await sop.registry.member_joined(GROUP.id, member, clock.now(), source="chat_member")
    await sop.member_joined(GROUP.id, member.id)


async def rows(db: AsyncEngine, table, *where):
    async with db.connect() as conn:
        return [dict(r._mapping) for r in await conn.execute(select(table).where(*where))]


async def test_welcome_greets_a_quiet_groups_joiner_at_once_and_later_ones_together(
    welcome: Welcome, engine: AsyncEngine, registry: Registry, activity: ActivityLog
):
    sop, outbox, clock = welcome
    sop.start()
    bob, alice, carol = user(2, "Bob"), user(1, "<b>&amp;"), user(3, "Carol")
    await join(welcome, registry, bob)
    clock.advance(JOIN_GATHER)
    await eventually(lambda: len(outbox.sent) == 1, what="the first joiner's greeting")
    assert "Bob" in outbox.sent[0].text, "a quiet group's joiner does not wait for a window"

    # While the window after that greeting is open, joiners wait for its close, together.
    clock.advance(timedelta(seconds=19))
    await join(welcome, registry, alice)
    clock.advance(timedelta(seconds=20))
    await join(welcome, registry, carol)
    clock.advance(timedelta(seconds=19))
    await settle(sop)
    assert len(outbox.sent) == 1, "one greeting per window"
    clock.advance(timedelta(seconds=2))  # the window closed 60 s after the first greeting
    await eventually(lambda: len(outbox.sent) == 2, what="the window's greeting")
    greeting = outbox.sent[1]
    assert "&lt;b&gt;&amp;amp;" in greeting.text and "Carol" in greeting.text
    assert "<b>&amp;" not in greeting.text and "Bob" not in greeting.text
    button = greeting.markup.inline_keyboard[0][0]
    assert button.callback_data == "s:welcome:rules"
    await settle(sop)
    tags = await rows(engine, MEMBER_TAGS)
    assert {(t["user_id"], t["tag"]) for t in tags} == {
        (1, "newcomer"),
        (2, "newcomer"),
        (3, "newcomer"),
    }

    # Bob and Carol write within the day; Alice stays silent.
    clock.advance(timedelta(hours=2))
    for member in (bob, carol):
        sop.activity.add(
            event_row(chat_id=GROUP.id, user_id=member.id, at=clock.now(), type=EventType.MESSAGE)
        )
        await sop.message(GROUP.id, member.id, 77 + member.id, "hi all", "tidepool_bot")
    await settle(sop)
    clock.advance(timedelta(hours=22))
    await eventually(lambda: len(outbox.sent) == 3, what="the nudge")
    await settle(sop)
    nudge = outbox.sent[2].text
    assert "&lt;b&gt;" in nudge and "Bob" not in nudge and "Carol" not in nudge
    runs = await rows(engine, SOP_RUNS)
    assert {r["status"] for r in runs} == {"done"}
    clock.advance(timedelta(days=3))
    await settle(sop)
    assert len(outbox.sent) == 3, "exactly one nudge"
    await sop.activity.flush()
    sent_events = await rows(engine, EVENTS, EVENTS.c.type == "sop_sent")
    assert len(sent_events) == 4  # a greeting for Bob, one for Alice and Carol, one nudge


async def test_members_joining_within_a_second_get_one_greeting(
    welcome: Welcome, registry: Registry
):
    sop, outbox, clock = welcome
    sop.start()
    members = [user(1, "Ann"), user(2, "Ben"), user(3, "Cleo")]
    first_join = clock.now()
    for member in members:
        await join(welcome, registry, member)
        clock.advance(timedelta(milliseconds=300))
    clock.advance(timedelta(seconds=1))
    await eventually(lambda: len(outbox.sent) == 1, what="the greeting")
    await settle(sop)
    assert len(outbox.sent) == 1
    assert all(name in outbox.sent[0].text for name in ("Ann", "Ben", "Cleo"))
    sent_at = outbox.sent[0].at
    assert sent_at is not None and sent_at - first_join <= timedelta(seconds=2)


async def test_rules_button_continues_the_flow_and_skips_the_nudge(
    welcome: Welcome, engine: AsyncEngine, registry: Registry
):
    sop, outbox, clock = welcome
    sop.start()
    alice = user(1, "Alice")
    await join(welcome, registry, alice)
    clock.advance(timedelta(minutes=1))
    await eventually(lambda: len(outbox.sent) == 1, what="the greeting")
    await settle(sop)
    greeting = outbox.sent[0]
    assert await sop.button(GROUP.id, alice.id, greeting.message_id, "s:welcome:rules") is None
    await eventually(lambda: len(outbox.sent) == 2, what="the rules")
    assert "three simple rules" in outbox.sent[1].text
    again = await sop.button(GROUP.id, alice.id, greeting.message_id, "s:welcome:rules")
    assert again == "sop.pressed_already"
    await settle(sop)
    clock.advance(timedelta(days=2))
    await settle(sop)
    assert len(outbox.sent) == 2, "no nudge after the member engaged"
    steps = await rows(engine, SOP_STEPS)
    assert [s["step"] for s in sorted(steps, key=lambda s: s["seq"])] == [
        "greet",
        "mark_newcomer",
        "wait_first",
        "rules",
    ]
    assert [s["status"] for s in sorted(steps, key=lambda s: s["seq"])] == [
        "done",
        "done",
        "interrupted",
        "done",
    ]


async def test_a_press_while_the_greeting_is_still_being_sent_is_not_lost(
    welcome: Welcome, registry: Registry
):
    sop, outbox, clock = welcome
    sending, gate = asyncio.Event(), asyncio.Event()
    send = outbox.send_message

    async def slow_send(*args: Any, **kwargs: Any) -> Any:
        sending.set()
        await gate.wait()  # Telegram has the message; the bot has not heard back yet
        return await send(*args, **kwargs)

    outbox.send_message = slow_send  # type: ignore[method-assign]
    sop.start()
    try:
        alice = user(1, "Alice")
        await join(welcome, registry, alice)
        clock.advance(timedelta(minutes=1))
        await asyncio.wait_for(sending.wait(), 5)
        press = asyncio.create_task(sop.button(GROUP.id, alice.id, 1000, "s:welcome:rules"))
        await asyncio.sleep(0.05)
        assert not press.done(), "the press waits for the run to reach its wait"
        gate.set()
        assert await press is None
        await eventually(lambda: len(outbox.sent) == 2, what="the rules")
        assert "three simple rules" in outbox.sent[1].text
    finally:
        gate.set()


async def test_a_join_written_after_its_greeting_went_waits_for_the_next_one(
    welcome: Welcome, engine: AsyncEngine, registry: Registry
):
    sop, outbox, clock = welcome
    sop.start()
    await join(welcome, registry, user(1, "Ann"))
    [first] = await rows(engine, SOP_RUNS)
    clock.advance(JOIN_GATHER)
    await eventually(lambda: len(outbox.sent) == 1, what="Ann's greeting")
    await settle(sop)
    # Ben's join decided for Ann's greeting, but its run was written only after it went (a busy
    # writer): it must not get a message of its own now.
    ben = user(2, "Ben")
    await sop.registry.member_joined(GROUP.id, ben, clock.now(), source="chat_member")
    async with engine.begin() as conn:  # the run his join made in time: as if it had not
        await conn.execute(delete(SOP_RUNS).where(SOP_RUNS.c.user_id == ben.id))
    procedure = sop.library.get("welcome")
    assert procedure is not None
    await sop._starting.start(
        procedure,
        GROUP.id,
        [ben.id],
        trigger="member_joined",
        now=clock.now(),
        batch=first["batch"],
        wake_at=first["wake_at"],
    )
    clock.advance(timedelta(seconds=2))
    await settle(sop)
    assert len(outbox.sent) == 1, "no message of Ben's own"
    await join(welcome, registry, user(3, "Cleo"))  # in the window after Ann's greeting
    clock.advance(timedelta(seconds=60))
    await eventually(lambda: len(outbox.sent) == 2, what="the window's greeting")
    await settle(sop)
    assert len(outbox.sent) == 2
    assert "Ben" in outbox.sent[1].text and "Cleo" in outbox.sent[1].text
