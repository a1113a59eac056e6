"""The push queue: quiet hours, daily caps, de-duplication, restarts; reminder times; broadcasts."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, time, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from aiogram.types import Chat
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.clock import ManualClock
from bot.db import BROADCASTS, PUSHES, GroupStatus, PushKind, PushStatus, writing
from bot.delivery import Delivered
from bot.push import broadcasts
from bot.push._commit import GroupCommit
from bot.push.broadcasts import BroadcastError, Target
from bot.push.queue import INTERRUPTED, PushQueue, add_pushes, push_row
from bot.push.rules import QuietHours, day_start, next_day, reminder_at
from bot.push.wire import WireNotes, wire_notes_path
from bot.registry import Registry
from bot.texts import Texts
from tests.sop_harness import DATA_DIR, OWNER, RecordingOutbox, assembled

ROOT = Path(__file__).resolve().parent.parent
SHANGHAI = ZoneInfo("Asia/Shanghai")
NEW_YORK = ZoneInfo("America/New_York")
NOON = datetime(2026, 11, 2, 4, 0, tzinfo=UTC)  # 12:00 in Shanghai
GROUP, OTHER = -1001, -1002


# -- the rules -------------------------------------------------------------------------------


def test_quiet_hours_parse_and_refuse_nonsense() -> None:
    assert str(QuietHours.parse("22:00-08:00")) == "22:00-08:00"
    assert str(QuietHours.parse(" 9:30 - 12:00 ")) == "09:30-12:00"
    assert QuietHours.parse("off") is None
    for bad in ("22-08", "25:00-08:00", "08:00-08:00", "soon"):
        with pytest.raises(ValueError):
            QuietHours.parse(bad)


@pytest.mark.parametrize(
    ("local", "ends"),
    [
        ("21:59", None),
        ("22:00", "2026-11-03 08:00"),  # wraps midnight: ends tomorrow morning
        ("23:30", "2026-11-03 08:00"),
        ("03:00", "2026-11-02 08:00"),  # after midnight: ends this morning
        ("08:00", None),
    ],
)
def test_quiet_hours_end_in_the_group_time(local: str, ends: str | None) -> None:
    window = QuietHours(time(22), time(8))
    hour, minute = map(int, local.split(":"))
    moment = datetime(2026, 11, 2, hour, minute, tzinfo=SHANGHAI)
    until = window.until(moment, SHANGHAI)
    if ends is None:
        assert until is None
    else:
        assert until is not None
        assert f"{until.astimezone(SHANGHAI):%Y-%m-%d %H:%M}" == ends


def test_a_daytime_window_does_not_wrap() -> None:
    window = QuietHours(time(12), time(14))
    assert window.until(datetime(2026, 11, 2, 13, tzinfo=SHANGHAI), SHANGHAI) == datetime(
        2026, 11, 2, 14, tzinfo=SHANGHAI
    )
    assert window.until(datetime(2026, 11, 2, 23, tzinfo=SHANGHAI), SHANGHAI) is None


def test_reminders_keep_the_wall_clock_across_daylight_saving() -> None:
    # New York springs forward on 2026-03-08: a live at 20:00 that Sunday.
    start = datetime(2026, 3, 8, 20, tzinfo=NEW_YORK)
    day_before = reminder_at(start, NEW_YORK, timedelta(days=1))
    assert day_before == datetime(2026, 3, 7, 20, tzinfo=NEW_YORK)
    assert start - day_before == timedelta(hours=23)  # the day was an hour short
    assert start - reminder_at(start, NEW_YORK, timedelta(hours=1)) == timedelta(hours=1)
    # ... and falls back on 2026-11-01: that day is 25 hours long.
    start = datetime(2026, 11, 1, 20, tzinfo=NEW_YORK)
    day_before = reminder_at(start, NEW_YORK, timedelta(days=1))
    assert day_before == datetime(2026, 10, 31, 20, tzinfo=NEW_YORK)
    assert start - day_before == timedelta(hours=25)
    # A day and a half: the day on the wall clock, the half in elapsed time.
    mixed = reminder_at(start, NEW_YORK, timedelta(days=1, hours=12))
    assert mixed == day_before - timedelta(hours=12)


def test_the_cap_day_is_the_group_day() -> None:
    moment = datetime(2026, 11, 2, 17, tzinfo=UTC)  # 01:00 on the 3rd in Shanghai
    assert day_start(moment, SHANGHAI) == datetime(2026, 11, 3, tzinfo=SHANGHAI)
    assert next_day(moment, SHANGHAI) == datetime(2026, 11, 4, tzinfo=SHANGHAI)
    assert day_start(moment, UTC) == datetime(2026, 11, 2, tzinfo=UTC)


# -- the queue -------------------------------------------------------------------------------


@pytest.fixture
async def groups(registry: Registry) -> Registry:
    for chat_id, title, tags in ((GROUP, "Readers", ["vip"]), (OTHER, "Writers", [])):
        await registry.save_group(Chat(id=chat_id, type="supergroup", title=title), tags=tags)
    return registry


Queues = Callable[..., Awaitable[tuple[PushQueue, RecordingOutbox]]]


@pytest.fixture
async def queues(engine: AsyncEngine, groups: Registry, tmp_path: Path) -> AsyncIterator[Queues]:
    """queues(clock, outbox=None, **settings): the push queue of the bot assembled with
    `settings` (quiet hours 22:00-08:00 and a cap of 6 unless given), its loop not started,
    and the outbox it sends to. Each call assembles the bot again, as a restart does."""
    (tmp_path / "sops").mkdir()
    async with contextlib.AsyncExitStack() as stack:

        async def make(
            clock: ManualClock, outbox: RecordingOutbox | None = None, **settings: Any
        ) -> tuple[PushQueue, RecordingOutbox]:
            settings = {"quiet_hours": "22:00-08:00", "daily_cap": 6, **settings}
            app, sends_to, _ = await stack.enter_async_context(
                assembled(engine, tmp_path / "sops", clock=clock, outbox=outbox, **settings)
            )
            return app.pushes, sends_to

        yield make


async def add(engine: AsyncEngine, now: datetime, *rows: dict[str, Any]) -> None:
    async with writing(engine) as conn:
        await add_pushes(conn, list(rows))


def text_push(key: str, chat_id: int, now: datetime, **values: Any) -> dict[str, Any]:
    return push_row(
        key=key,
        kind=PushKind.TEXT,
        chat_id=chat_id,
        source="test",
        due_at=now,
        now=now,
        text=f"hello {key}",
        **values,
    )


async def run(queue: PushQueue) -> None:
    await queue.run_due()
    await queue.settle()


async def statuses(engine: AsyncEngine) -> dict[str, tuple[str, str | None, datetime]]:
    async with engine.connect() as conn:
        rows = await conn.execute(
            select(PUSHES.c.key, PUSHES.c.status, PUSHES.c.note, PUSHES.c.due_at)
        )
        return {row.key: (row.status, row.note, row.due_at) for row in rows}


async def test_a_push_in_quiet_hours_waits_for_their_end(
    engine: AsyncEngine, groups: Registry, queues: Queues
) -> None:
    late = datetime(2026, 11, 2, 23, 30, tzinfo=SHANGHAI)
    clock = ManualClock(late)
    queue, outbox = await queues(clock)
    await add(engine, late, text_push("a", GROUP, late), text_push("b", GROUP, late, urgent=True))
    await run(queue)
    assert outbox.texts(GROUP) == ["hello b"]  # urgent goes at once
    status, note, due = (await statuses(engine))["a"]
    assert status == PushStatus.PENDING
    assert due == datetime(2026, 11, 3, 8, tzinfo=SHANGHAI)
    assert note == "postponed: quiet hours (22:00-08:00)"
    clock.set(datetime(2026, 11, 3, 7, 59, tzinfo=SHANGHAI))
    await run(queue)
    assert outbox.texts(GROUP) == ["hello b"]
    clock.set(datetime(2026, 11, 3, 8, tzinfo=SHANGHAI))
    await run(queue)
    assert outbox.texts(GROUP) == ["hello b", "hello a"]
    assert (await statuses(engine))["a"][0] == PushStatus.SENT


async def test_each_group_keeps_its_own_quiet_hours_and_zone(
    engine: AsyncEngine, groups: Registry, queues: Queues
) -> None:
    await groups.set_group(OTHER, timezone="Europe/Berlin", quiet_hours="off")
    await groups.set_group(GROUP, quiet_hours="12:00-14:00")
    clock = ManualClock(NOON)  # 12:00 in Shanghai, 05:00 in Berlin
    queue, outbox = await queues(clock)
    await add(engine, NOON, text_push("a", GROUP, NOON), text_push("b", OTHER, NOON))
    await run(queue)
    assert outbox.texts(OTHER) == ["hello b"]
    assert outbox.texts(GROUP) == []
    assert (await statuses(engine))["a"][2] == datetime(2026, 11, 2, 14, tzinfo=SHANGHAI)


async def test_over_the_daily_cap_a_push_waits_a_day_or_is_dropped(
    engine: AsyncEngine, groups: Registry, queues: Queues
) -> None:
    clock = ManualClock(NOON)
    queue, outbox = await queues(clock, daily_cap=2)
    await add(
        engine,
        NOON,
        text_push("1", GROUP, NOON),
        text_push("2", GROUP, NOON),
        text_push("3", GROUP, NOON, broadcast_id=7),
        text_push("4", GROUP, NOON, broadcast_id=8, over_cap="drop"),
        text_push("5", GROUP, NOON, urgent=True),
        text_push("6", OTHER, NOON),
    )
    await run(queue)
    await run(queue)  # two at a time per chat
    assert sorted(outbox.texts(GROUP)) == ["hello 1", "hello 2", "hello 5"]
    assert outbox.texts(OTHER) == ["hello 6"]
    found = await statuses(engine)
    assert found["3"][0] == PushStatus.PENDING
    assert found["3"][2] == datetime(2026, 11, 3, tzinfo=SHANGHAI)  # the group's next day
    assert found["3"][1] == "postponed: the group's daily cap of 2 was reached"
    assert found["4"][:2] == (PushStatus.DROPPED, "the group's daily cap of 2 was reached")
    told = sorted(outbox.texts(OWNER))  # each broadcast's owners are told privately
    assert [text.split(": ")[0] for text in told] == ["⚠️ #7", "⚠️ #8"]
    assert "postponed to the next day: Readers" in told[0] and "dropped: Readers" in told[1]
    # Midnight is in quiet hours: it moves on to 08:00, and then goes (a new day's count).
    clock.set(datetime(2026, 11, 3, tzinfo=SHANGHAI))
    await run(queue)
    clock.set(datetime(2026, 11, 3, 8, tzinfo=SHANGHAI))
    await run(queue)
    assert outbox.texts(GROUP)[-1] == "hello 3"
    assert len(outbox.texts(OWNER)) == 2  # told once a day per broadcast


async def test_a_push_key_is_queued_once(
    engine: AsyncEngine, groups: Registry, queues: Queues
) -> None:
    await add(engine, NOON, text_push("same", GROUP, NOON))
    await add(engine, NOON, text_push("same", GROUP, NOON, urgent=True))
    async with engine.connect() as conn:
        assert (await conn.execute(select(PUSHES.c.urgent))).scalars().all() == [False]
    clock = ManualClock(NOON)
    queue, outbox = await queues(clock)
    await run(queue)
    await run(queue)
    assert outbox.texts(GROUP) == ["hello same"]


async def test_a_group_that_removed_the_bot_is_skipped_and_marked(
    engine: AsyncEngine, groups: Registry, queues: Queues
) -> None:
    await groups.bot_removed(OTHER, GroupStatus.KICKED, "Forbidden: bot was kicked")
    clock = ManualClock(NOON)
    queue, outbox = await queues(clock)
    await add(engine, NOON, text_push("a", GROUP, NOON), text_push("b", OTHER, NOON))
    await run(queue)
    assert outbox.texts(OTHER) == []
    assert (await statuses(engine))["b"][:2] == (
        PushStatus.FAILED,
        "not sent: the bot is no longer in this group (kicked)",
    )
    # Telegram's 403 on sending is recorded with its reason too.
    outbox.refuse.add(GROUP)
    await add(engine, NOON, text_push("c", GROUP, NOON))
    await run(queue)
    assert (await statuses(engine))["c"][:2] == (PushStatus.FAILED, "Forbidden: bot was kicked")


def wire_notes(engine: AsyncEngine) -> WireNotes:
    """The wire notes of the bot the harness assembles on `engine`."""
    url = engine.url.render_as_string(hide_password=False)
    return WireNotes(wire_notes_path(url, DATA_DIR))


async def crashed(engine: AsyncEngine, statuses: dict[str, PushStatus], asked: list[str]) -> None:
    """As a crash leaves them: pushes of these `statuses`, and Telegram asked for `asked`."""
    async with writing(engine) as conn:
        for key, status in statuses.items():
            await conn.execute(
                update(PUSHES).where(PUSHES.c.key == key).values(status=status.value)
            )
        ids = await conn.execute(select(PUSHES.c.id).where(PUSHES.c.key.in_(asked)))
    notes = wire_notes(engine)
    notes.clear()
    notes.note(ids.scalars())
    notes.close()


async def test_a_crash_mid_send_never_sends_twice_and_loses_only_what_was_on_the_wire(
    engine: AsyncEngine, groups: Registry, queues: Queues
) -> None:
    clock = ManualClock(NOON)
    rows = [text_push(key, GROUP, NOON) for key in ("asked", "prepared", "waiting", "due")]
    await add(engine, NOON, *rows)
    # The crash: Telegram was asked for one; another was marked but its request never went.
    sending, queued = PushStatus.SENDING, PushStatus.QUEUED
    await crashed(engine, {"asked": sending, "prepared": sending, "waiting": queued}, ["asked"])
    queue, outbox = await queues(clock)  # the start after it recovers
    found = await statuses(engine)
    assert found["prepared"][0] == found["waiting"][0] == PushStatus.PENDING
    assert found["asked"][:2] == (PushStatus.FAILED, INTERRUPTED)
    await run(queue)
    await run(queue)  # PER_CHAT at a time
    assert sorted(outbox.texts(GROUP)) == ["hello due", "hello prepared", "hello waiting"]
    found = await statuses(engine)
    assert found["asked"][:2] == (PushStatus.FAILED, INTERRUPTED)
    assert {found[key][0] for key in ("prepared", "waiting", "due")} == {PushStatus.SENT}
    async with engine.connect() as conn:
        sent = await conn.execute(select(PUSHES.c.id).where(PUSHES.c.key != "asked"))
    assert wire_notes(engine).asked() == set(sent.scalars()), "noted as each was asked for"


async def test_without_wire_notes_every_push_left_sending_is_in_doubt(
    engine: AsyncEngine, groups: Registry, queues: Queues
) -> None:
    """As after an upgrade from a version that kept none: nothing may be sent twice."""
    await add(engine, NOON, *(text_push(key, GROUP, NOON) for key in ("a", "b")))
    await crashed(engine, {"a": PushStatus.SENDING, "b": PushStatus.SENDING}, [])
    path = wire_notes(engine).path
    assert path is not None
    path.unlink()
    queue, outbox = await queues(ManualClock(NOON))
    await run(queue)
    assert outbox.texts(GROUP) == []
    found = await statuses(engine)
    assert found["a"][:2] == found["b"][:2] == (PushStatus.FAILED, INTERRUPTED)


@dataclass
class Marks(RecordingOutbox):
    """Notes the push's status before and after `before`, as Telegram is asked."""

    db: AsyncEngine | None = None
    seen: list[str] = field(default_factory=list)

    async def status(self) -> str:
        assert self.db is not None
        async with self.db.connect() as conn:
            return str((await conn.execute(select(PUSHES.c.status))).scalar())

    async def send_message(self, chat_id: int, text: str, **options: Any) -> Delivered:
        self.seen.append(await self.status())
        await options["before"]()
        self.seen.append(await self.status())
        return await super().send_message(chat_id, text, source="test")


async def test_a_push_is_sending_only_once_telegram_is_asked(
    engine: AsyncEngine, groups: Registry, queues: Queues
) -> None:
    clock = ManualClock(NOON)
    await add(engine, NOON, text_push("a", GROUP, NOON))
    outbox = Marks(clock, db=engine)
    queue, _ = await queues(clock, outbox)
    await run(queue)
    assert outbox.seen == [PushStatus.QUEUED, PushStatus.SENDING]
    assert (await statuses(engine))["a"][0] == PushStatus.SENT


class Stopping(RecordingOutbox):
    """A delivery service that is stopping: it refuses without trying."""

    @property
    def closing(self) -> bool:
        return True

    async def send_message(self, chat_id: int, text: str, **_: Any) -> Delivered:
        return Delivered(False, None, chat_id, "not sent: the bot is stopping", 0)


async def test_what_a_stop_kept_from_trying_goes_after_the_restart(
    engine: AsyncEngine, groups: Registry, queues: Queues
) -> None:
    clock = ManualClock(NOON)
    await add(engine, NOON, text_push("a", GROUP, NOON))
    queue, _ = await queues(clock, Stopping(clock))
    await run(queue)
    assert (await statuses(engine))["a"][0] == PushStatus.PENDING
    queue, outbox = await queues(clock)  # the restart
    await run(queue)
    assert outbox.texts(GROUP) == ["hello a"]


async def test_one_busy_chat_does_not_hold_up_the_others(
    engine: AsyncEngine, groups: Registry, queues: Queues
) -> None:
    clock = ManualClock(NOON)
    queue, outbox = await queues(clock, daily_cap=0)
    rows = [text_push(f"g{n}", GROUP, NOON) for n in range(5)] + [text_push("o", OTHER, NOON)]
    await add(engine, NOON, *rows)
    await queue.run_due()
    assert queue.busy == 3  # two of the busy group's (PER_CHAT), and the other group's
    await queue.settle()
    while len(outbox.sent) < 6:
        await run(queue)
    assert outbox.texts(OTHER) == ["hello o"]


# -- broadcasts ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def texts() -> Texts:
    return Texts.load(ROOT / "content", "en")


def test_targets_read_as_operators_write_them() -> None:
    assert Target.parse("all") == Target()
    assert Target.parse("vip") == Target(tags=("vip",))
    assert Target.parse("tag:vip,course") == Target(tags=("vip", "course"))
    assert Target.parse("-1001,-1002") == Target(ids=(-1001, -1002))
    assert str(Target.parse("tag:vip,course")) == "tag:vip,course"
    with pytest.raises(BroadcastError) as bad:
        Target.parse("v i p")
    assert (bad.value.key, bad.value.values) == ("broadcasting.errors.no_target", {"text": "v i p"})


async def test_a_broadcast_reaches_each_target_group_once(
    engine: AsyncEngine, groups: Registry, queues: Queues, texts: Texts
) -> None:
    await groups.set_group(OTHER, language="zh")
    broadcast_id = await broadcasts.create(
        engine, texts, target=Target(), template="sample", source="cli", now=NOON, confirm=False
    )
    assert await broadcasts.confirm_broadcast(engine, texts, broadcast_id, NOON) == 2
    assert await broadcasts.confirm_broadcast(engine, texts, broadcast_id, NOON) == 0  # double tap
    clock = ManualClock(NOON)
    queue, outbox = await queues(clock)
    await run(queue)
    assert "Hello Readers" in outbox.texts(GROUP)[0]
    assert "Writers 的朋友们好" in outbox.texts(OTHER)[0]  # in the group's language
    [progress] = await broadcasts.progress(engine, broadcast_id)
    assert (progress.groups, progress.counts["sent"], progress.pending, progress.done) == (
        2,
        2,
        0,
        True,
    )


async def test_broadcast_targets_and_templates_are_checked(
    engine: AsyncEngine, groups: Registry, texts: Texts
) -> None:
    vip = await broadcasts.target_groups(engine, Target(tags=("vip",)))
    assert [group.id for group in vip] == [GROUP]
    with pytest.raises(BroadcastError) as no_template:
        await broadcasts.create(
            engine, texts, target=Target(), template="nope", source="cli", now=NOON
        )
    assert no_template.value.key == "broadcasting.errors.no_template"
    assert "no template nope" in no_template.value.text(texts)
    assert "没有模板 nope" in no_template.value.text(texts, "zh")
    assert "sample" in no_template.value.text(texts, "zh")
    with pytest.raises(BroadcastError) as no_groups:
        await broadcasts.create(
            engine, texts, target=Target(tags=("ghost",)), template="sample", source="cli", now=NOON
        )
    assert no_groups.value.text(texts) == "no active group matches tag:ghost"
    assert str(no_groups.value) == "broadcasting.errors.no_groups (target=tag:ghost)"
    draft = await broadcasts.create(
        engine, texts, target=Target(), text="<b>Hi</b>", source="cli", now=NOON, confirm=False
    )
    assert await broadcasts.discard(engine, draft)
    async with engine.connect() as conn:
        assert (await conn.execute(select(BROADCASTS.c.id))).all() == []


async def test_progress_lists_failures_with_their_reasons(
    engine: AsyncEngine, groups: Registry, queues: Queues, texts: Texts
) -> None:
    # Made while both groups were active; then one removes the bot before it goes.
    broadcast_id = await broadcasts.create(
        engine, texts, target=Target(), template="sample", source="cli", now=NOON
    )
    await groups.bot_removed(OTHER, GroupStatus.KICKED, "kicked")
    clock = ManualClock(NOON)
    queue, _ = await queues(clock)
    await run(queue)
    [progress] = await broadcasts.progress(engine, broadcast_id)
    assert progress.counts["sent"] == 1
    assert progress.failed_groups == [
        (OTHER, "Writers", "not sent: the bot is no longer in this group (kicked)")
    ]
    lines = broadcasts.summary_lines(progress)
    assert "sent 1, pending 0, failed 1, dropped 0, done" in lines[0]
    key, values = broadcasts.reason(progress.failed_groups[0][2])
    assert texts(key, "zh", **values) == "未发送：机器人已被移出本群"


@pytest.mark.parametrize(
    ("note", "en"),
    [
        (
            "not sent: the bot is no longer in this group (left)",
            "not sent: the bot has left this group",
        ),
        ("the group's daily cap of 5 was reached", "the group's daily cap of 5 was reached"),
        (
            INTERRUPTED,
            "the bot stopped while sending it; it may have arrived, so it is not sent again",
        ),
        (
            "the bot was removed from this group: Forbidden: bot was kicked",
            "the bot was removed from this group (Forbidden: bot was kicked)",
        ),
        ("Bad Request: chat not found", "Bad Request: chat not found"),
        (None, "no reason noted"),
    ],
)
def test_why_a_push_did_not_go_is_said_in_the_operators_language(
    note: str | None, en: str, texts: Texts
) -> None:
    key, values = broadcasts.reason(note)
    assert texts(key, "en", **values) == en
    assert texts(key, "zh", **values)  # every reason has its Chinese text


async def test_a_burst_of_writes_shares_a_few_transactions() -> None:
    batches: list[list[int]] = []

    async def write(items: list[int]) -> None:
        batches.append(items)
        await asyncio.sleep(0.01)  # a transaction takes a moment; more arrive meanwhile
        if 13 in items:
            raise RuntimeError("the database is gone")

    commit = GroupCommit[int](write)
    first = await asyncio.gather(*(commit.add(i) for i in range(10)), return_exceptions=True)
    assert first == [None] * 10 and batches == [list(range(10))], "one transaction for ten"
    later = await asyncio.gather(*(commit.add(i) for i in range(10, 20)), return_exceptions=True)
    assert all(isinstance(result, RuntimeError) for result in later), "each writer hears of it"
    await commit.add(99)
    assert batches[-1] == [99], "a lone write goes at once"


def test_wire_notes_live_beside_the_database_and_forget_on_clear(tmp_path: Path) -> None:
    db = tmp_path / "data" / "tidepool.db"
    assert wire_notes_path(f"sqlite+aiosqlite:///{db}", tmp_path) == Path(f"{db}-wire")
    assert wire_notes_path("sqlite+aiosqlite://", tmp_path) is None  # in memory: nothing to keep
    server = "postgresql+asyncpg://bot:secret@db.example:5432/tidepool"
    assert wire_notes_path(server, tmp_path) == tmp_path / "pushes-db.example-tidepool.wire"
    notes = WireNotes(wire_notes_path(f"sqlite+aiosqlite:///{db}", tmp_path))
    assert notes.asked() is None, "no notes yet: every push left sending is in doubt"
    notes.note([7, 8])
    notes.note([9])
    assert notes.asked() == {7, 8, 9}
    notes.settled()  # a few bytes: kept until there is more to clear
    assert notes.asked() == {7, 8, 9}
    notes.clear()
    notes.note([10])
    notes.close()
    assert notes.path is not None
    with notes.path.open("ab") as file:
        file.write(b"\x00\x00garbage\n")  # what a power cut may leave: passed over
    assert WireNotes(notes.path).asked() == {10}
    assert WireNotes(None).asked() is None
    WireNotes(None).note([1])  # nothing to keep: noting costs nothing


class Sharing(RecordingOutbox):
    """Texts sent with a `combine` key go out as one message (as the delivery service joins
    those queued together): each is answered with that message's id."""

    async def send_message(self, chat_id: int, text: str, **options: Any) -> Delivered:
        if options.get("combine") is None:
            return await super().send_message(chat_id, text, **options)
        await self._ready(chat_id, options.get("before"))
        return Delivered(True, 77, chat_id, None, 1, combined=3)


async def test_pushes_that_shared_a_message_are_recorded_with_it(
    engine: AsyncEngine, groups: Registry, queues: Queues
) -> None:
    clock = ManualClock(NOON)
    shared = [text_push(f"s{i}", GROUP, NOON, combine="checkin") for i in range(3)]
    await add(engine, NOON, *shared, text_push("alone", OTHER, NOON))
    queue, _ = await queues(clock, Sharing(clock))
    await run(queue)
    await run(queue)  # PER_CHAT at a time
    async with engine.connect() as conn:
        rows = await conn.execute(select(PUSHES.c.key, PUSHES.c.status, PUSHES.c.message_id))
        found = {row.key: (row.status, row.message_id) for row in rows}
    assert {found[f"s{i}"] for i in range(3)} == {(PushStatus.SENT, 77)}
    assert found["alone"][0] == PushStatus.SENT and found["alone"][1] != 77
