"""The SOP engine step by step on a fake clock: modes, variants, branches, events, recovery."""

from __future__ import annotations

import asyncio
import math
import textwrap
from collections import Counter
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.activity import ActivityLog
from bot.db import EVENTS, MEMBER_TAGS, POINTS, SOP_RUNS, SOP_STEPS
from bot.registry import Registry
from bot.sop.admin import SopAdmin
from bot.sop.engine import LOOKAHEAD, MAX_CHAIN, Engine
from bot.sop.format import SendStep
from bot.sop.messages import pick_variant
from tests.sop_harness import (
    GROUP,
    OWNER,
    START,
    engines,
    eventually,
    make_engine,
    queue_of,
    settle,
    user,
)

HEADER = "schema_version: 1\ngroups: all\n"


def write_sop(folder: Path, sop_id: str, body: str) -> None:
    folder.mkdir(exist_ok=True)
    text = f"{HEADER}id: {sop_id}\nname: {sop_id}\n" + textwrap.dedent(body)
    (folder / f"{sop_id}.yaml").write_text(text)


async def rows(db: AsyncEngine, table: Any, *where: Any) -> list[dict[str, Any]]:
    async with db.connect() as conn:
        query = select(table).where(*where) if where else select(table)
        return [dict(r._mapping) for r in await conn.execute(query)]


@pytest.fixture
async def world(engine: AsyncEngine, registry: Registry, activity: ActivityLog, tmp_path: Path):
    """A group with members 1..5 and a function that builds the engine over tmp SOPs."""
    await registry.save_group(GROUP)
    for n in range(1, 6):
        await registry.member_joined(GROUP.id, user(n, f"M{n}"), START, source="chat_member")
    async with engines(engine, tmp_path / "sops") as start:

        async def build(**sops: str) -> tuple[Engine, Any, Any]:
            for sop_id, body in sops.items():
                write_sop(tmp_path / "sops", sop_id, body)
            return await start()

        yield build


GO = """\
mode: {mode}
triggers: [{{type: command, command: go}}]
steps:
  - id: hello
    send: {{template: t.hello}}
  - wait: {{for: 1h}}
  - id: bye
    send: {{template: t.bye}}
"""


@pytest.mark.parametrize(
    ("mode", "expected"),
    [
        ("single", ["Hello M1 ()", "Bye M1"]),
        ("parallel", ["Hello M1 ()", "Hello M1 ()", "Bye M1", "Bye M1"]),
        ("restart", ["Hello M1 ()", "Hello M1 ()", "Bye M1"]),
        ("queued", ["Hello M1 ()", "Bye M1", "Hello M1 ()", "Bye M1"]),
    ],
)
async def test_modes_decide_what_a_second_trigger_does(world, mode: str, expected: list[str]):
    sop, outbox, clock = await world(go=GO.format(mode=mode))
    for message_id in (10, 11):
        await sop.message(GROUP.id, 1, message_id, "/go", "bot")
        await settle(sop)
        clock.advance(timedelta(minutes=1))
    for _ in range(3):
        clock.advance(timedelta(hours=1))
        await settle(sop)
    assert outbox.texts(GROUP.id) == expected


async def test_a_member_always_gets_the_same_variant_and_it_is_recorded(world, engine, activity):
    sop, outbox, _clock = await world(
        ab="""\
        mode: parallel
        triggers: [{type: command, command: ab}]
        steps:
          - id: pitch
            send:
              variants:
                - {id: long, template: t.long, weight: 3}
                - {id: short, template: t.short}
        """
    )
    for _ in range(2):
        for member in range(1, 6):
            await sop.message(GROUP.id, member, 1, "/ab", "bot")
        await settle(sop)
    by_member: dict[str, set[str]] = {}
    for text in outbox.texts(GROUP.id):
        kind, name = text.split(" variant for ")
        by_member.setdefault(name, set()).add(kind)
    assert all(len(kinds) == 1 for kinds in by_member.values()), by_member
    await sop.activity.flush()
    events = await rows(engine, EVENTS, EVENTS.c.type == "sop_sent")
    assert len(events) == 10
    for event in events:
        variant = event["data"]["variant"]
        assert variant == pick_variant_for(sop, event["user_id"])
        assert (event["data"]["sop"], event["data"]["step"]) == ("ab", "pitch")


async def test_sops_start_sops_and_events_go_at_most_max_chain_deep(world, engine):
    sop, outbox, _clock = await world(
        first="""\
        triggers: [{type: command, command: first}]
        steps:
          - start: {sop: second}
        """,
        second="""\
        triggers: [{type: event, event: never.sent}]
        steps:
          - send: {template: t.bye}
        """,
        echo="""\
        mode: parallel
        triggers: [{type: event, event: echo.ping}]
        steps:
          - emit: {event: echo.ping, data: {score: 1}}
        """,
    )
    await sop.message(GROUP.id, 1, 1, "/first", "bot")
    await settle(sop)
    assert outbox.texts(GROUP.id) == ["Bye M1"]
    await sop.emit("echo.ping", GROUP.id, 2)
    await settle(sop)
    echoes = await rows(engine, SOP_RUNS, SOP_RUNS.c.sop_id == "echo")
    assert sorted(run["variables"]["_chain"] for run in echoes) == list(range(1, MAX_CHAIN + 1))


def pick_variant_for(sop: Engine, member: int) -> str:
    procedure = sop.library.get("ab")
    assert procedure is not None
    step = procedure.step("0")
    assert isinstance(step, SendStep) and step.send.variants is not None
    return pick_variant(step.send.variants, "ab", member).id


def test_variant_weights_hold_over_many_members():
    from bot.sop.format import Variant

    variants = [Variant(id="long", template="t.a", weight=3), Variant(id="short", template="t.b")]
    counts = Counter(pick_variant(variants, "sop", member).id for member in range(20_000))
    assert 0.73 < counts["long"] / 20_000 < 0.77
    assert pick_variant(variants, "sop", 42) == pick_variant(variants, "sop", 42)
    assert [pick_variant(variants, "other", m).id for m in range(50)] != [
        pick_variant(variants, "sop", m).id for m in range(50)
    ], "each SOP splits members its own way"


async def test_if_tags_points_emit_and_an_event_wait(world, engine):
    sop, outbox, clock = await world(
        flow="""\
        mode: parallel
        triggers: [{type: command, command: flow}]
        variables: {note: seed}
        steps:
          - if:
              conditions:
                - {type: member, tags: {none: [vip]}}
                - {type: template, value: "vars.note == 'seed'"}
              then:
                - tag: {add: [vip, early]}
                - points: {award: 10, reason: welcome gift}
                - send: {template: t.then}
              else:
                - send: {template: t.else}
          - emit: {event: flow.done, data: {score: 3}}
          - id: wait_checkin
            wait: {event: checkin.done, timeout: 2h}
          - if:
              conditions: [{type: template, value: "run.timed_out"}]
              then:
                - points: {award: -100, reason: too much}
                  continue_on_error: true
                - stop: {reason: no check-in}
          - points: {award: -4, reason: spent}
        """,
        listener="""\
        triggers: [{type: event, event: flow.done}]
        steps:
          - send: {template: t.event}
        """,
    )
    await sop.message(GROUP.id, 1, 1, "/flow", "bot")
    await settle(sop)
    await sop.message(GROUP.id, 2, 2, "/flow", "bot")
    await settle(sop)
    assert outbox.texts(GROUP.id) == [
        "Then branch",
        "Event flow.done for M1 (3)",
        "Then branch",
        "Event flow.done for M2 (3)",
    ]
    await sop.message(GROUP.id, 1, 3, "/flow", "bot")  # M1 is a vip now: else branch
    await settle(sop)
    assert outbox.texts(GROUP.id)[-2:] == ["Else branch", "Event flow.done for M1 (3)"]

    await sop.emit("checkin.done", GROUP.id, 2)  # M2's wait ends by the event
    await settle(sop)
    clock.advance(timedelta(hours=3))  # the others time out
    await settle(sop)
    points = await rows(engine, POINTS)
    balance = Counter[int]()
    for row in points:
        balance[row["user_id"]] += row["delta"]
    assert balance == {1: 10, 2: 6}, "M2 spent 4; the -100 was refused, the run went on"
    tags = {(r["user_id"], r["tag"]) for r in await rows(engine, MEMBER_TAGS)}
    assert tags == {(1, "vip"), (1, "early"), (2, "vip"), (2, "early")}
    runs = await rows(engine, SOP_RUNS, SOP_RUNS.c.sop_id == "flow")
    assert sorted((r["user_id"], r["status"]) for r in runs) == [
        (1, "done"),
        (1, "done"),
        (2, "done"),
    ]
    refused = await rows(engine, SOP_STEPS, SOP_STEPS.c.status == "failed")
    assert {r["error"] for r in refused} == {"not enough points (10) to take 100"}


async def test_tags_are_added_once_and_removed(world, engine):
    sop, _outbox, _clock = await world(
        tags="""\
        mode: parallel
        triggers: [{type: command, command: tags}]
        steps:
          - tag: {add: [a, b, c]}
          - tag: {add: [a]}
          - tag: {remove: [b, c, never_there]}
        """,
    )
    for member in (1, 2):
        await sop.message(GROUP.id, member, member, "/tags", "bot")
    await settle(sop)
    tags = {(r["user_id"], r["tag"], r["source"]) for r in await rows(engine, MEMBER_TAGS)}
    assert tags == {(1, "a", "sop:tags"), (2, "a", "sop:tags")}
    runs = await rows(engine, SOP_RUNS, SOP_RUNS.c.sop_id == "tags")
    assert [r["status"] for r in runs] == ["done", "done"]


async def test_a_failing_step_fails_its_run_only(world, engine):
    sop, outbox, _clock = await world(
        bad="""\
        mode: parallel
        triggers: [{type: command, command: bad}]
        steps:
          - points: {award: -1, reason: fee}
          - send: {template: t.bye}
        """,
        good="""\
        triggers: [{type: command, command: bad}]
        steps:
          - send: {template: t.hello}
        """,
    )
    await sop.message(GROUP.id, 1, 1, "/bad", "bot")
    await settle(sop)
    assert outbox.texts(GROUP.id) == ["Hello M1 ()"]
    [run] = await rows(engine, SOP_RUNS, SOP_RUNS.c.sop_id == "bad")
    assert run["status"] == "failed" and run["error"] == "steps.0: not enough points (0) to take 1"


async def test_the_timer_passes_over_runs_in_hand_however_many(world, engine, monkeypatch):
    sop, outbox, clock = await world(go=GO.format(mode="parallel"))
    for member in (1, 2, 3):
        await sop.message(GROUP.id, member, member, "/go", "bot")
    await settle(sop)
    first = min(r["id"] for r in await rows(engine, SOP_RUNS))
    # Past HELD_IN_QUERY runs in hand, the timer skips them by their ids after reading.
    monkeypatch.setattr("bot.sop.runs.HELD_IN_QUERY", 0)
    sop._shared.leases.busy.add(first)  # as if another task were working on M1's run
    clock.advance(timedelta(hours=2))
    await eventually(lambda: len(outbox.texts(GROUP.id)) == 5, what="the other two runs")
    await settle(sop)
    assert sorted(outbox.texts(GROUP.id)[3:]) == ["Bye M2", "Bye M3"]
    sop._shared.leases.busy.discard(first)  # let go without being saved: still due, taken again
    await eventually(lambda: "Bye M1" in outbox.texts(GROUP.id), what="the run let go")


async def test_the_timer_goes_on_after_a_database_error(world, monkeypatch):
    sop, outbox, clock = await world(go=GO.format(mode="single"))
    await sop.message(GROUP.id, 1, 1, "/go", "bot")
    await settle(sop)
    # Like the system clock, sleep until the next wake-up only: no polling to hide a stall.
    clock.max_sleep = math.inf
    claim_due, failures = sop.runs.claim_due, list[int]()

    async def fails_once(*args: Any) -> Any:
        if not failures:
            failures.append(1)
            raise OSError("disk I/O error")
        return await claim_due(*args)

    monkeypatch.setattr(sop.runs, "claim_due", fails_once)
    clock.advance(timedelta(hours=2))
    await eventually(lambda: "Bye M1" in outbox.texts(GROUP.id), what="the wait to end")
    assert failures == [1]


READ_AHEAD = """\
mode: parallel
triggers: [{type: command, command: w}]
steps:
  - wait: {event: checkin.done, timeout: 1h}
  - if:
      conditions: [{type: template, value: "run.timed_out"}]
      then: [{send: {template: t.then}}]
      else: [{send: {template: t.else}}]
"""


async def test_runs_read_ahead_are_taken_on_time_and_yield_to_events_and_leaving(
    world, engine, registry
):
    sop, outbox, clock = await world(ahead=READ_AHEAD)
    for member in (1, 2, 3):
        await sop.message(GROUP.id, member, member, "/w", "bot")
    await settle(sop)
    clock.advance(timedelta(hours=1) - LOOKAHEAD / 2)
    await eventually(lambda: len(sop._timer.ahead) == 3, what="the timer to read the runs ahead")
    await settle(sop)
    assert outbox.texts(GROUP.id) == [], "read ahead, not taken before their time"
    runs = await rows(engine, SOP_RUNS)
    assert {r["status"] for r in runs} == {"waiting"}, "reading ahead changes nothing stored"

    await sop.emit("checkin.done", GROUP.id, 2)  # M2's event comes just before the timeout
    await sop.member_left(GROUP.id, 3)  # M3 leaves just before it
    await settle(sop)
    assert outbox.texts(GROUP.id) == ["Else branch"]
    clock.advance(LOOKAHEAD)
    await eventually(lambda: len(outbox.texts(GROUP.id)) == 2, what="M1's timeout")
    await settle(sop)
    assert outbox.texts(GROUP.id) == ["Else branch", "Then branch"]
    assert [s.chat_id for s in outbox.sent] == [GROUP.id, GROUP.id]
    by_member = {r["user_id"]: r["status"] for r in await rows(engine, SOP_RUNS)}
    assert by_member == {1: "done", 2: "done", 3: "cancelled"}
    waits = await rows(engine, SOP_STEPS, SOP_STEPS.c.action == "wait")
    assert sorted(w["status"] for w in waits) == ["cancelled", "done", "timed_out"]


async def test_leaving_ends_the_members_runs_and_joins_batch(world, engine, registry):
    sop, outbox, clock = await world(
        hi="""\
        triggers: [{type: member_joined, batch_window: 30s}]
        steps:
          - send: {template: t.digest}
          - wait: {for: 1d}
          - send: {template: t.bye}
        """
    )
    for member in (6, 7, 8):
        await sop.registry.member_joined(
            GROUP.id, user(member, f"N{member}"), clock.now(), source="x"
        )
        await sop.member_joined(GROUP.id, member)
        clock.advance(timedelta(milliseconds=300))  # joins in the same moment
    await settle(sop)
    clock.advance(timedelta(seconds=1))
    await eventually(lambda: len(outbox.texts(GROUP.id)) == 1, what="one greeting for the batch")
    assert outbox.texts(GROUP.id) == ["Missed you: N6, N7, N8"]
    await settle(sop)
    await sop.member_left(GROUP.id, 7)
    clock.advance(timedelta(days=1))
    await settle(sop)
    assert sorted(outbox.texts(GROUP.id)[1:]) == ["Bye N6", "Bye N8"]
    [left] = await rows(engine, SOP_RUNS, SOP_RUNS.c.user_id == 7)
    assert (left["status"], left["error"]) == ("cancelled", "the member left the group")


async def test_silent_members_get_one_digest(world, engine, registry, activity):
    sop, outbox, clock = await world(
        quiet="""\
        triggers: [{type: silent, days: 14}]
        conditions: [{type: member, tags: {none: [nudged]}}]
        steps:
          - tag: {add: [nudged]}
          - send: {template: t.digest}
        """
    )
    clock.advance(timedelta(days=20))
    sop.activity.touch(GROUP.id, user(3, "M3"), clock.now(), 1)  # M3 spoke today
    await sop.activity.flush()
    assert await sop.check_silent("quiet", GROUP.id, 14) == 4
    await settle(sop)
    assert outbox.texts(GROUP.id) == ["Missed you: M1, M2, M4, M5"]
    clock.advance(timedelta(days=1))
    assert await sop.check_silent("quiet", GROUP.id, 14) == 0, "the condition keeps them out"


async def test_sop_run_for_the_group_does_a_silent_sops_daily_check(world, activity):
    sop, outbox, clock = await world(
        quiet="""\
        triggers: [{type: silent, days: 14}]
        concurrency_key: member
        conditions: [{type: member, tags: {none: [nudged]}}]
        steps:
          - tag: {add: [nudged]}
          - send: {template: t.digest}
        """
    )
    admin = SopAdmin(sop)
    clock.advance(timedelta(days=20))
    sop.activity.touch(GROUP.id, user(3, "M3"), clock.now(), 1)  # M3 spoke today
    await sop.activity.flush()
    assert await admin.run(GROUP.id, "quiet", None, "") == (
        "sop.run_done",
        {"id": "quiet", "who": ""},
    )
    assert outbox.texts(GROUP.id) == ["Missed you: M1, M2, M4, M5"], "one digest, M3 left out"
    assert await admin.run(GROUP.id, "quiet", None, "") == (
        "sop.none_silent",
        {"id": "quiet", "days": 14},
    )
    assert len(outbox.texts(GROUP.id)) == 1, "nobody nudged twice"


async def test_a_schedule_run_is_for_the_whole_group(world):
    sop, outbox, _clock = await world(
        morning="""\
        triggers: [{type: schedule, cron: "0 9 * * *"}]
        steps:
          - send: {template: t.broadcast}
        """
    )
    await sop.fire_schedule("morning", GROUP.id)
    await settle(sop)
    assert outbox.texts(GROUP.id) == ["Good morning, Tea &lt;lovers&gt;"]


SKIPPED = (
    "SOP <code>later</code> in Tea &lt;lovers&gt;: 2 run(s) fell due while I was down, "
    "beyond the catch-up grace; I skipped them."
)


async def test_catch_up_skip_policy_skips_and_reports(world, engine):
    sop, outbox, clock = await world(
        later="""\
        triggers: [{type: command, command: later}]
        catch_up: {policy: run_late, grace: 30m}
        steps:
          - wait: {for: 1h}
          - send: {template: t.bye}
        """
    )
    await sop.message(GROUP.id, 1, 1, "/later", "bot")
    await sop.message(GROUP.id, 2, 2, "/later", "bot")
    await settle(sop)
    await sop.drain(1)  # the bot stops...
    clock.advance(timedelta(hours=2))  # ...and comes back an hour after the waits ended
    sop._shared.tasks.stopping = False
    sop.start()
    await settle(sop)
    await eventually(lambda: outbox.texts(OWNER), what="the report")
    assert outbox.texts(GROUP.id) == []
    assert outbox.texts(OWNER) == [SKIPPED]
    runs = await rows(engine, SOP_RUNS)
    assert {r["status"] for r in runs} == {"skipped"}


async def test_a_send_cut_off_by_a_crash_is_never_repeated(world, engine):
    sop, outbox, _clock = await world(
        two="""\
        triggers: [{type: command, command: two}]
        steps:
          - id: first
            send: {template: t.hello}
          - id: second
            send: {template: t.bye}
        """
    )
    outbox.stall = True  # Telegram is asked and the bot dies before it answers
    await sop.message(GROUP.id, 1, 1, "/two", "bot")
    await eventually(lambda: outbox.stalled == 1, what="the first send to start")
    await queue_of(sop).close(grace=0)  # the process dies
    for task in sop.tasks:
        task.cancel()
    await asyncio.sleep(0.05)

    async with make_engine(engine, sop.library.sops_dir) as (again, outbox2, _):
        again.start()
        await eventually(lambda: outbox2.texts(GROUP.id) == ["Bye M1"], what="the run to go on")
        await settle(again)  # the send is journaled as done right after it returns
        steps = await rows(engine, SOP_STEPS)
        assert [(s["step"], s["status"]) for s in sorted(steps, key=lambda s: s["seq"])] == [
            ("first", "interrupted"),
            ("second", "done"),
        ]
        overview = await SopAdmin(again).overview(GROUP.id)
        assert ("sop.list_interrupted", {"count": 1, "at": "2026-11-02 09:00"}) in overview


async def test_switching_off_in_a_group_stops_its_runs(world, engine):
    sop, outbox, clock = await world(go=GO.format(mode="single"))
    await sop.message(GROUP.id, 1, 1, "/go", "bot")
    await settle(sop)
    await sop.library.switch(engine, "go", GROUP.id, False, 1, clock.now())
    await sop.stop_runs("go", GROUP.id, "switched off")
    clock.advance(timedelta(hours=2))
    await sop.message(GROUP.id, 2, 2, "/go", "bot")
    await settle(sop)
    assert outbox.texts(GROUP.id) == ["Hello M1 ()"]
    await sop.library.switch(engine, "go", GROUP.id, True, 1, clock.now())
    await sop.message(GROUP.id, 2, 3, "/go", "bot")
    await settle(sop)
    assert outbox.texts(GROUP.id) == ["Hello M1 ()", "Hello M2 ()"]


async def test_reload_keeps_the_last_good_version_of_a_broken_file(world, tmp_path):
    sop, outbox, _clock = await world(go=GO.format(mode="single"))
    (tmp_path / "sops" / "go.yaml").write_text("schema_version: 1\nid: go\n  bad: [\n")
    report = sop.reload_files()
    assert [b.sop_id for b in report.broken] == ["go"]
    assert sop.library.get("go") is not None
    await sop.message(GROUP.id, 1, 1, "/go", "bot")
    await settle(sop)
    assert outbox.texts(GROUP.id) == ["Hello M1 ()"]


async def test_a_run_queued_while_the_one_before_ends_still_starts(world) -> None:
    """Mode queued: the run a new one queues behind ends while the new one is being written
    (seen under load with referral.yaml); the new one must start, not stay queued forever."""
    sop, outbox, _clock = await world(
        gate="""\
        mode: queued
        triggers: [{type: command, command: go}]
        steps:
          - wait: {event: gate.open, timeout: 24h}
          - id: bye
            send: {template: t.bye}
        """
    )
    await sop.message(GROUP.id, 1, 10, "/go", "bot")
    await settle(sop)
    runs = sop._shared.runs
    create = runs.create

    async def first_over() -> bool:
        return [row["status"] for row in await rows(sop.db, SOP_RUNS)] == ["done"]

    async def create_after_the_first_ended(rows: list[dict[str, Any]]) -> Any:
        if any(row["status"] == "queued" for row in rows):
            await sop.emit("gate.open", GROUP.id, 1)  # the first run moves on and ends ...
            await eventually(first_over, what="the first run to end")
        return await create(rows)  # ... before the second is written, queued behind it

    runs.create = create_after_the_first_ended
    await sop.message(GROUP.id, 1, 11, "/go", "bot")
    await settle(sop)
    runs.create = create
    statuses = [row["status"] for row in await rows(sop.db, SOP_RUNS)]
    assert "queued" not in statuses, statuses
    await sop.emit("gate.open", GROUP.id, 1)
    await eventually(lambda: outbox.texts(GROUP.id).count("Bye M1") == 2, what="the second run")


async def test_a_restart_starts_a_run_left_queued_behind_nothing(world) -> None:
    """A run a version before the fix left queued with nothing before it starts at the restart."""
    gate = """\
        mode: queued
        triggers: [{type: command, command: go}]
        steps:
          - id: bye
            send: {template: t.bye}
        """
    sop, before, clock = await world(gate=gate)
    await sop._shared.runs.create(
        [
            {
                "sop_id": "gate",
                "chat_id": GROUP.id,
                "user_id": 2,
                "status": "queued",
                "position": "0",
                "seq": 0,
                "variables": {"trigger": {"type": "command"}},
                "batch": None,
                "trigger": "command",
                "sop_digest": sop.library.get("gate").digest,
                "wake_at": None,
                "created_at": clock.now(),
                "updated_at": clock.now(),
            }
        ]
    )
    restarted, after, _clock = await world()

    async def over() -> bool:
        return [row["status"] for row in await rows(restarted.db, SOP_RUNS)] == ["done"]

    await eventually(over, what="the stranded run")
    # Both bots (the first is still running, on the same database) send from the one queue.
    await eventually(lambda: "Bye M2" in before.texts(GROUP.id) + after.texts(GROUP.id))
