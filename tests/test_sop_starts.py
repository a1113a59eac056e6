"""Starting runs in batches: what members ask for at once is written together and stepped as one
cohort; a message does not wait for its run; a clean stop writes what was handed over."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiogram.types import Chat
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.clock import ManualClock
from bot.db import CHECKINS, SOP_RUNS, SOP_STEPS, RunStatus
from bot.sop.conditions import needs
from bot.sop.engine import Engine
from bot.sop.format import IfStep
from tests.sop_harness import ROOT, RecordingOutbox, copy_sops, make_engine, settle, user

GROUPS = [Chat(id=-1001 - n, type="supergroup", title=f"Group {n}") for n in range(3)]
Checkins = tuple[Engine, RecordingOutbox, ManualClock]


@pytest.fixture
async def checkins(engine: AsyncEngine, tmp_path: Path) -> AsyncIterator[Checkins]:
    """The shipped daily check-in in three groups of five members each."""
    sops = copy_sops(tmp_path, "daily_checkin.yaml", source=ROOT / "sops")
    async with make_engine(engine, sops, content=ROOT / "content") as (sop, outbox, clock):
        for chat in GROUPS:
            await sop.registry.save_group(chat)
            for member in range(5):
                who = user(100 * (GROUPS.index(chat) + 1) + member, f"M{member}")
                await sop.registry.member_joined(chat.id, who, clock.now(), source="chat_member")
        sop.start()
        yield sop, outbox, clock


class Counting:
    """Counts the calls of a RunStore method and the runs each was given."""

    def __init__(self, method: Any) -> None:
        self.method = method
        self.calls: list[int] = []

    async def __call__(self, rows: list[Any], *args: Any, **kwargs: Any) -> Any:
        self.calls.append(len(rows))
        return await self.method(rows, *args, **kwargs)


async def table(db: AsyncEngine, query: Any) -> list[Any]:
    async with db.connect() as conn:
        return list(await conn.execute(query))


def members() -> list[tuple[int, int]]:
    return [(chat.id, 100 * (n + 1) + m) for n, chat in enumerate(GROUPS) for m in range(5)]


async def test_check_ins_asked_for_together_are_one_batch_and_one_cohort(
    checkins: Checkins, engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    sop, outbox, _clock = checkins
    creates = Counting(sop.runs.create)
    saves = Counting(sop.runs.save)
    monkeypatch.setattr(sop.runs, "create", creates)
    monkeypatch.setattr(sop.runs, "save", saves)
    for n, (chat_id, user_id) in enumerate(members()):
        await sop.message(chat_id, user_id, n + 1, "/checkin", "tidepool_bot")
    await sop.starts_written()
    await settle(sop)
    assert creates.calls == [15], "fifteen members in three groups: one insert"
    # One save checks the cohort in (its `if` goes with the next), one claims the replies.
    assert saves.calls[:2] == [15, 15]
    assert len(await table(engine, select(CHECKINS))) == 15
    assert sum("✅" in sent.text for sent in outbox.sent) == 15
    steps = await table(engine, select(SOP_STEPS.c.run_id, SOP_STEPS.c.step, SOP_STEPS.c.seq))
    by_run: dict[int, list[str]] = {}
    for run_id, step, _seq in sorted(steps, key=lambda row: (row.run_id, row.seq)):
        by_run.setdefault(run_id, []).append(step)
    assert len(by_run) == 15
    assert all(labels == ["check_in", "answer", "checked_in"] for labels in by_run.values())


async def test_a_message_does_not_wait_for_its_run(checkins: Checkins, engine: AsyncEngine) -> None:
    sop, outbox, _clock = checkins
    chat_id, user_id = members()[0]
    await sop.message(chat_id, user_id, 1, "/checkin", "tidepool_bot")
    assert await table(engine, select(SOP_RUNS)) == [], "handed over, not written yet"
    await sop.starts_written()
    [run] = await table(engine, select(SOP_RUNS))
    assert (run.chat_id, run.user_id, run.trigger) == (chat_id, user_id, "command")
    await settle(sop)
    assert len(outbox.sent) == 1


async def test_the_same_member_twice_in_a_batch_gets_one_run(
    checkins: Checkins, engine: AsyncEngine
) -> None:
    sop, outbox, _clock = checkins
    chat_id, user_id = members()[0]
    other_chat, other_user = members()[-1]
    await sop.message(chat_id, user_id, 1, "/checkin", "tidepool_bot")
    await sop.message(other_chat, other_user, 2, "/checkin", "tidepool_bot")
    await sop.message(chat_id, user_id, 3, "签到", "tidepool_bot")
    started = await sop.run_by_hand("daily_checkin", chat_id, user_id)  # forced: a run anyway
    await settle(sop)
    runs = await table(engine, select(SOP_RUNS.c.user_id, SOP_RUNS.c.trigger))
    assert sorted(runs) == sorted(
        [(user_id, "command"), (other_user, "command"), (user_id, "manual")]
    )
    assert [run.user_id for run in started] == [user_id], "/sop_run still learns its run"
    assert len(await table(engine, select(CHECKINS))) == 2
    assert sum("already" in sent.text for sent in outbox.sent) == 1


async def test_a_clean_stop_writes_the_starts_handed_over_for_the_restart(
    engine: AsyncEngine, tmp_path: Path
) -> None:
    sops = copy_sops(tmp_path, "daily_checkin.yaml", source=ROOT / "sops")
    chat = GROUPS[0]
    async with make_engine(engine, sops, content=ROOT / "content") as (sop, outbox, _clock):
        await sop.registry.save_group(chat)
        sop.start()
        await sop.message(chat.id, 7, 1, "/checkin", "tidepool_bot")
        await sop.close()  # the stop comes before the start was written
    [run] = await table(engine, select(SOP_RUNS))
    assert run.status == RunStatus.SCHEDULED.value, "waits for the restart, not lost"
    assert outbox.sent == []

    async with make_engine(engine, sops, content=ROOT / "content") as (again, outbox, _clock):
        again.start()
        assert await again.tick() == 1
        await settle(again)
        assert len(await table(engine, select(CHECKINS))) == 1
        assert len(outbox.sent) == 1 and "✅" in outbox.sent[0].text


def test_conditions_read_facts_only_when_they_name_them() -> None:
    def reads(*conditions: dict[str, Any]) -> tuple[bool, bool]:
        then = [{"tag": {"add": ["x"]}}]
        step = IfStep.model_validate({"if": {"conditions": list(conditions), "then": then}})
        found = needs(step.if_.conditions)
        return found.members, found.count

    assert reads({"type": "template", "value": "checkin.new"}) == (False, False)
    assert reads({"type": "template", "value": "member.points > 3"}) == (True, False)
    assert reads({"type": "template", "value": "group.members > 3"}) == (False, True)
    assert reads({"type": "member", "tags": {"any": ["vip"]}}) == (True, False)
    assert reads({"type": "group", "tags": {"any": ["a"]}}) == (False, False)
    assert reads({"type": "group", "members": {"min": 5}}) == (False, True)


async def test_a_reply_names_a_member_whose_first_message_is_the_check_in(
    checkins: Checkins,
) -> None:
    sop, outbox, clock = checkins
    activity = sop.activity
    chat = GROUPS[0]
    newcomer = user(999, "Zoë")
    activity.touch(chat.id, newcomer, clock.now(), 1)  # in the log's buffer, not written yet
    await sop.message(chat.id, newcomer.id, 1, "/checkin", "tidepool_bot")
    await sop.starts_written()
    await settle(sop)
    [reply] = outbox.sent
    assert "Zoë</a> ✅" in reply.text
