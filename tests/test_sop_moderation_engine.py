"""Moderation in the SOP engine, on the bot `bot.factory` assembles (the real moderation service,
a recording outbox, a manual clock): floods, the join check that the welcome waits for, buttons
only their member may press, `checks` triggers, `approved` conditions, and each moderation step
as the service records it, dry mode and the missing right included."""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from aiogram.types import User
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.clock import ManualClock
from bot.db import MODERATION_ACTIONS, SOP_RUNS, SOP_STEPS
from bot.factory import Tidepool
from bot.handlers import sops as sops_handlers
from bot.moderation.checks import CHECKS, Post, load_checks
from bot.sop.engine import JOIN_GATHER
from bot.sop.format import CHECK_NAMES
from tests.sop_harness import (
    GROUP,
    OWNER,
    QUEUES,
    ROOT,
    START,
    RecordingOutbox,
    assembled,
    copy_sops,
    eventually,
    settle,
    user,
)

ANN, BOB = user(11, "Ann"), user(12, "Bob")
MESSAGES = itertools.count(500)
Bot = tuple[Tidepool, RecordingOutbox, ManualClock]


@contextlib.asynccontextmanager
async def running(db: AsyncEngine, sops: Path) -> AsyncIterator[Bot]:
    """The assembled bot over `sops` (every file loads) in GROUP, its timer and push queue
    running; the shipped content."""
    async with assembled(db, sops, content=ROOT / "content", quiet_hours="22:00-08:00") as (
        app,
        outbox,
        clock,
    ):
        assert not app.engine.library.broken, [
            b.summary() for b in app.engine.library.broken.values()
        ]
        app.pushes.start()
        QUEUES[app.engine] = app.pushes
        await app.registry.save_group(GROUP)
        app.engine.start()
        yield app, outbox, clock


def shipped(tmp_path: Path, *names: str) -> Path:
    return copy_sops(tmp_path, *names, source=ROOT / "sops")


def written(tmp_path: Path, sop: str) -> Path:
    folder = tmp_path / "sops"
    folder.mkdir(exist_ok=True)
    (folder / "modtest.yaml").write_text(sop)
    return folder


async def rows(db: AsyncEngine, table: Any, *where: Any) -> list[dict[str, Any]]:
    async with db.connect() as conn:
        found = await conn.execute(select(table).where(*where).order_by(*table.primary_key))
        return [dict(row._mapping) for row in found]


async def runs_of(db: AsyncEngine, sop_id: str) -> list[dict[str, Any]]:
    return await rows(db, SOP_RUNS, SOP_RUNS.c.sop_id == sop_id)


async def waits_at(db: AsyncEngine, sop_id: str, position: str) -> bool:
    """A run of the SOP waits at the step at `position` (its timed wait saved)."""
    return any(
        run["status"] == "waiting" and run["position"] == position and run["wake_at"]
        for run in await runs_of(db, sop_id)
    )


async def journal(db: AsyncEngine, run_id: int) -> list[tuple[str, str, str | None]]:
    """(step, status, error) of a run's steps, in order."""
    found = await rows(db, SOP_STEPS, SOP_STEPS.c.run_id == run_id)
    return [(row["step"], row["status"], row["error"]) for row in found]


async def write(bot: Bot, member: User, count: int, every: timedelta) -> None:
    """`member` writes `count` messages in the group, `every` apart (the last one now)."""
    app, _outbox, clock = bot
    for index in range(count):
        if index:
            clock.advance(every)
        await app.engine.message(GROUP.id, member.id, next(MESSAGES), "hi", "tidepool_bot")
    await app.engine.starts_written()
    await settle(app.engine)


def moderated(outbox: RecordingOutbox, method: str, member: User) -> list[Any]:
    return [
        what for name, chat, who, what in outbox.moderated if (name, who) == (method, member.id)
    ]


# -- floods --------------------------------------------------------------------------------------


async def test_eight_messages_within_ten_seconds_mute_once_per_burst(
    engine: AsyncEngine, tmp_path: Path
) -> None:
    async with running(engine, shipped(tmp_path, "flood.yaml")) as bot:
        app, outbox, clock = bot
        await app.registry.member_joined(GROUP.id, ANN, START, source="test")
        await write(bot, ANN, 7, timedelta(seconds=1))
        assert await runs_of(engine, "flood") == [], "7 messages are not a flood"

        clock.advance(timedelta(seconds=1))
        await write(bot, ANN, 1, timedelta(0))  # the 8th, 7 seconds after the first
        [run] = await runs_of(engine, "flood")
        assert run["trigger"] == "flood" and run["user_id"] == ANN.id
        [(permissions, until)] = moderated(outbox, "restrictChatMember", ANN)
        assert not any(dict(permissions).values()) and until == clock.now() + timedelta(minutes=10)
        await eventually(lambda: len(outbox.sent) == 1, what="the note")
        assert "muted for 10 minutes" in outbox.sent[0].text
        assert outbox.sent[0].chat_id == GROUP.id
        [action] = await rows(engine, MODERATION_ACTIONS)
        assert (action["action"], action["by"], action["check"], action["user_id"]) == (
            "mute",
            "sop:flood",
            "flood",
            ANN.id,
        )
        assert action["reason"] == "8 messages within 10 seconds"

        # The burst goes on: it fired once; only 8 messages more count again.
        await write(bot, ANN, 7, timedelta(seconds=1))
        assert len(await runs_of(engine, "flood")) == 1, "once per burst"
        clock.advance(timedelta(seconds=1))
        await write(bot, ANN, 1, timedelta(0))
        assert len(await runs_of(engine, "flood")) == 2


async def test_messages_spread_out_or_from_several_members_are_no_flood(
    engine: AsyncEngine, tmp_path: Path
) -> None:
    async with running(engine, shipped(tmp_path, "flood.yaml")) as bot:
        _app, outbox, clock = bot
        await write(bot, ANN, 20, timedelta(seconds=2))  # at most 6 within any 10 seconds
        clock.advance(timedelta(minutes=1))
        for _ in range(5):  # two members, 10 messages within 5 seconds together
            await write(bot, ANN, 1, timedelta(0))
            await write(bot, BOB, 1, timedelta(0))
            clock.advance(timedelta(seconds=1))
        assert await runs_of(engine, "flood") == []
        assert outbox.moderated == [] and outbox.sent == []


async def test_an_admins_flood_never_counts_and_is_asked_about_once_per_burst(
    engine: AsyncEngine, tmp_path: Path
) -> None:
    async with running(engine, shipped(tmp_path, "flood.yaml")) as bot:
        app, outbox, _clock = bot
        asked: list[int] = []
        is_admin = app.admins.is_admin

        async def counting(chat_id: int, user_id: int) -> bool:
            asked.append(user_id)
            return await is_admin(chat_id, user_id)

        app.admins.is_admin = counting  # type: ignore[method-assign]
        await write(bot, user(OWNER, "Owner"), 16, timedelta(milliseconds=500))
        assert await runs_of(engine, "flood") == [] and outbox.moderated == []
        assert asked == [OWNER, OWNER], "asked when a burst reaches 8, not at every message"


# -- the join check ------------------------------------------------------------------------------


async def join(bot: Bot, member: User) -> None:
    app, _outbox, clock = bot
    await app.registry.member_joined(GROUP.id, member, clock.now(), source="chat_member")
    await app.engine.starts_written()
    await settle(app.engine)


async def gate(bot: Bot) -> None:
    """The join check switched on in GROUP, as `/sop_on join_check` does."""
    app, _outbox, clock = bot
    await app.engine.library.switch(app.db, "join_check", GROUP.id, True, None, clock.now())


def greetings(outbox: RecordingOutbox) -> list[str]:
    return [text for text in outbox.texts(GROUP.id) if text.startswith("Welcome to")]


def prompt_of(outbox: RecordingOutbox, member: User) -> Any:
    return next(s for s in outbox.sent if s.markup is not None and member.first_name in s.text)


async def test_the_welcome_waits_for_the_join_check_and_follows_the_joiners_own_press(
    engine: AsyncEngine, tmp_path: Path
) -> None:
    async with running(engine, shipped(tmp_path, "join_check.yaml", "welcome.yaml")) as bot:
        app, outbox, clock = bot
        await gate(bot)
        await join(bot, ANN)
        [(nothing, until)] = moderated(outbox, "restrictChatMember", ANN)
        assert not any(dict(nothing).values()) and until == clock.now() + timedelta(minutes=10)
        await eventually(lambda: len(outbox.sent) == 1, what="the prompt")
        prompt = outbox.sent[0]
        button = prompt.markup.inline_keyboard[0][0]
        assert button.callback_data == f"s:join_check:passed:{ANN.id}"
        clock.advance(JOIN_GATHER + timedelta(minutes=1))
        await settle(app.engine)
        assert greetings(outbox) == [], "the welcome waits for the check"

        # Someone else's press is refused and changes nothing.
        answer = await app.engine.button(GROUP.id, BOB.id, prompt.message_id, button.callback_data)
        assert answer == "sop.not_for_you"
        await settle(app.engine)
        assert len(moderated(outbox, "restrictChatMember", ANN)) == 1 and outbox.deleted == []
        [check] = await runs_of(engine, "join_check")
        assert check["status"] == "waiting"

        # Her own press frees her, deletes the prompt, and the welcome goes on.
        answer = await app.engine.button(GROUP.id, ANN.id, prompt.message_id, button.callback_data)
        assert answer is None
        await settle(app.engine)
        freed = moderated(outbox, "restrictChatMember", ANN)
        assert len(freed) == 2 and all(dict(freed[1][0]).values()), "the group's permissions"
        assert (GROUP.id, prompt.message_id) in outbox.deleted
        [check] = await runs_of(engine, "join_check")
        assert check["status"] == "done"
        # The welcome's run is made first: made after the move, it would greet later.
        await eventually(lambda: runs_of(engine, "welcome"), what="the welcome's run")
        clock.advance(JOIN_GATHER)
        await eventually(lambda: len(greetings(outbox)) == 1, what="the welcome")
        assert "Ann" in greetings(outbox)[0]
        assert moderated(outbox, "banChatMember", ANN) == []

        # The prompt, were it still there, continues her check only: that ended.
        clock.advance(timedelta(minutes=2))
        again = await app.engine.button(GROUP.id, ANN.id, prompt.message_id, button.callback_data)
        assert again == "sop.button_gone"
        await settle(app.engine)
        assert len(moderated(outbox, "restrictChatMember", ANN)) == 2
        assert len(await runs_of(engine, "join_check")) == 1


async def test_a_joiner_who_never_presses_is_kicked_after_five_minutes_and_never_welcomed(
    engine: AsyncEngine, tmp_path: Path
) -> None:
    async with running(engine, shipped(tmp_path, "join_check.yaml", "welcome.yaml")) as bot:
        app, outbox, clock = bot
        await gate(bot)
        await join(bot, ANN)
        await eventually(lambda: len(outbox.sent) == 1, what="the prompt")
        prompt = outbox.sent[0]
        # The clock moves once the run waits: a wait begun after the move would end later.
        await eventually(lambda: waits_at(engine, "join_check", "2"), what="the first wait")
        clock.advance(timedelta(minutes=3))
        await eventually(lambda: len(outbox.sent) == 2, what="the reminder")
        reminder = outbox.sent[1]
        assert "2 minutes left" in reminder.text
        await eventually(lambda: waits_at(engine, "join_check", "4"), what="the second wait")
        clock.advance(timedelta(minutes=2))
        await eventually(lambda: moderated(outbox, "unbanChatMember", ANN), what="the kick")
        await settle(app.engine)
        assert len(moderated(outbox, "banChatMember", ANN)) == 1, "kicked: banned, then unbanned"
        assert {(GROUP.id, prompt.message_id), (GROUP.id, reminder.message_id)} <= set(
            outbox.deleted
        )
        [check] = await runs_of(engine, "join_check")
        assert check["status"] == "done" and check["variables"]["_removed"] is True
        # Telegram's word that she left has not come yet: the welcome must not start anyway.
        clock.advance(timedelta(minutes=2))
        await settle(app.engine)
        assert greetings(outbox) == [] and await runs_of(engine, "welcome") == []
        [action] = [a for a in await rows(engine, MODERATION_ACTIONS) if a["action"] == "kick"]
        assert (action["by"], action["check"]) == ("sop:join_check", "join_check")


async def test_a_member_the_check_skips_is_welcomed_at_once(
    engine: AsyncEngine, tmp_path: Path
) -> None:
    async with running(engine, shipped(tmp_path, "join_check.yaml", "welcome.yaml")) as bot:
        app, outbox, clock = bot
        await gate(bot)
        await app.moderation.approve(GROUP.id, BOB.id, "admin:1")  # approved before
        await join(bot, BOB)
        # The welcome's run is made first: made after the move, it would greet later.
        await eventually(lambda: runs_of(engine, "welcome"), what="the welcome's run")
        clock.advance(JOIN_GATHER)
        await eventually(lambda: len(greetings(outbox)) == 1, what="the welcome")
        assert outbox.moderated == [] and await runs_of(engine, "join_check") == []


async def test_without_the_right_to_restrict_the_check_stands_down_and_the_welcome_goes_on(
    engine: AsyncEngine, tmp_path: Path
) -> None:
    async with running(engine, shipped(tmp_path, "join_check.yaml", "welcome.yaml")) as bot:
        app, outbox, clock = bot
        outbox.unrestrictable.add(GROUP.id)
        await gate(bot)
        await join(bot, ANN)
        [check] = await runs_of(engine, "join_check")
        assert (check["status"], check["error"]) == ("done", None), "stood down, not failed"
        assert await journal(engine, check["id"]) == [
            ("hold", "stood_down", "stood down: the bot may not restrict members here")
        ]
        # The welcome's run is made first: made after the move, it would greet later.
        await eventually(lambda: runs_of(engine, "welcome"), what="the welcome's run")
        clock.advance(JOIN_GATHER)
        await eventually(lambda: len(greetings(outbox)) == 1, what="the welcome")
        clock.advance(timedelta(minutes=10))
        await settle(app.engine)
        assert outbox.moderated == [], "nobody restricted, nobody kicked"
        assert not any(s.markup for s in outbox.sent if "tap the button" in s.text)


async def test_a_press_after_a_restart_still_lets_the_welcome_start(
    engine: AsyncEngine, tmp_path: Path
) -> None:
    sops = shipped(tmp_path, "join_check.yaml", "welcome.yaml")
    async with running(engine, sops) as bot:
        await gate(bot)
        await join(bot, ANN)
        await eventually(lambda: len(bot[1].sent) == 1, what="the prompt")
        data = bot[1].sent[0].markup.inline_keyboard[0][0].callback_data
        message_id = bot[1].sent[0].message_id
    async with running(engine, sops) as bot:  # the bot restarted: the check waits in the database
        app, outbox, clock = bot
        assert await app.engine.button(GROUP.id, ANN.id, message_id, data) is None
        await settle(app.engine)
        # The welcome's run is made first: made after the move, it would greet later.
        await eventually(lambda: runs_of(engine, "welcome"), what="the welcome's run")
        clock.advance(JOIN_GATHER)
        await eventually(lambda: len(greetings(outbox)) == 1, what="the welcome")


async def test_a_press_not_for_the_presser_is_answered_with_an_alert(
    engine: AsyncEngine, tmp_path: Path
) -> None:
    """What the presser sees: an alert to close, in the group's language, not a passing note."""
    answers: list[tuple[str | None, bool]] = []

    class Query:
        message = SimpleNamespace(chat=SimpleNamespace(id=GROUP.id), message_id=5)
        from_user = SimpleNamespace(id=BOB.id)
        data = f"s:join_check:passed:{ANN.id}"

        async def answer(self, text: str | None = None, show_alert: bool = False) -> None:
            answers.append((text, show_alert))

    async with running(engine, shipped(tmp_path, "join_check.yaml")) as (app, _outbox, _clock):
        say = sops_handlers.Say(app.outbox, app.texts, app.registry)
        await sops_handlers.pressed(Query(), app.engine, say)  # type: ignore[arg-type]
        Query.data = "s:join_check:gone"
        await sops_handlers.pressed(Query(), app.engine, say)  # type: ignore[arg-type]
    assert answers == [
        ("This button is not for you.", True),
        ("This button no longer works.", False),
    ]


# -- checks and approved -------------------------------------------------------------------------


@dataclass(frozen=True)
class Judged:
    spam: bool
    fired: list[str] = field(default_factory=list)


CHECKED = """\
schema_version: 1
id: modtest
name: Links from newcomers
groups: all
mode: parallel
triggers:
  - type: message
    checks: {fired: [links, chat_mentions]}
steps:
  - delete: {reason: a newcomer's link}
  - warn: {reason: no links yet}
"""


async def test_a_checks_trigger_starts_on_the_judgement_it_names(
    engine: AsyncEngine, tmp_path: Path
) -> None:
    async with running(engine, written(tmp_path, CHECKED)) as bot:
        app, outbox, _clock = bot
        for message_id, judgement in (
            (701, None),  # not a newcomer's checked message
            (702, Judged(True, ["emoji", "stop_words"])),
            (703, Judged(False)),
        ):
            await app.engine.message(GROUP.id, ANN.id, message_id, "hi", "x", judgement=judgement)
        await app.engine.message(
            GROUP.id, ANN.id, 704, None, "x", judgement=Judged(True, ["links"])
        )  # a forward without text
        await app.engine.starts_written()
        await settle(app.engine)
        [run] = await runs_of(engine, "modtest")
        assert run["variables"]["trigger"]["message_id"] == 704
        assert outbox.deleted == [(GROUP.id, 704)]
        actions = await rows(engine, MODERATION_ACTIONS)
        assert [(a["action"], a["check"], a["reason"]) for a in actions] == [
            ("delete", "links", "a newcomer's link"),
            ("warn", None, "no links yet"),
        ]


async def test_the_checks_judgement_is_what_a_checks_trigger_reads(
    engine: AsyncEngine, tmp_path: Path
) -> None:
    """The first-message checks' own judgement, as the message path hands it to the engine."""
    assert CHECK_NAMES == CHECKS  # the names `checks: {fired: …}` takes are the checks' own
    checks = load_checks(ROOT / "content")
    spam = checks.judge(Post("兼职日结，加微信 abc123 领福利 https://spam.example/x"))
    plain = checks.judge(Post("大家好，我是新来的，请多关照"))
    assert spam.spam and "links" in spam.fired and not plain.spam
    async with running(engine, written(tmp_path, CHECKED)) as bot:
        app, outbox, _clock = bot
        await app.engine.message(GROUP.id, ANN.id, 901, "大家好", "x", judgement=plain)
        await app.engine.message(GROUP.id, BOB.id, 902, "兼职", "x", judgement=spam)
        await app.engine.starts_written()
        await settle(app.engine)
        [run] = await runs_of(engine, "modtest")
        assert run["user_id"] == BOB.id and outbox.deleted == [(GROUP.id, 902)]


APPROVED = """\
schema_version: 1
id: modtest
name: Approved or not
groups: all
triggers:
  - type: command
    command: who
steps:
  - if:
      conditions:
        - type: member
          approved: true
      then:
        - send: {template: t.approved}
      else:
        - send: {template: t.newcomer}
texts:
  en:
    t:
      approved: "{{ member.name }} is approved"
      newcomer: "{{ member.name }} is new here"
"""


async def test_approved_is_whom_moderation_approved(engine: AsyncEngine, tmp_path: Path) -> None:
    async with running(engine, written(tmp_path, APPROVED)) as bot:
        app, outbox, clock = bot
        await app.registry.member_joined(GROUP.id, ANN, clock.now(), source="chat_member")
        await app.moderation.approve(GROUP.id, BOB.id, "checks")
        await app.registry.member_joined(GROUP.id, BOB, clock.now(), source="chat_member")
        for member in (ANN, BOB):
            await app.engine.message(GROUP.id, member.id, next(MESSAGES), "/who", "tidepool_bot")
        await eventually(lambda: len(outbox.sent) == 2, what="both answers")
        assert sorted(outbox.texts()) == ["Ann is new here", "Bob is approved"]


# -- each step through the service -------------------------------------------------------------

EVERY_STEP = """\
schema_version: 1
id: modtest
name: Every step
groups: all
mode: parallel
triggers:
  - type: command
    command: moderate
steps:
  - restrict:
      permissions: {can_send_messages: true}
      for: 1h
      reason: r1
  - unrestrict: {reason: r2}
  - mute: {for: 10m, reason: r3}
  - warn: {reason: r4}
  - ban: {for: 7d, reason: r5}
  - kick: {reason: r6}
  - delete: {reason: r7}
  - id: said
    send: {template: t.said}
  - delete: {step: said, reason: r8}
texts:
  en:
    t:
      said: "Done"
"""


async def test_every_moderation_step_asks_the_service_as_the_sop(
    engine: AsyncEngine, tmp_path: Path
) -> None:
    async with running(engine, written(tmp_path, EVERY_STEP)) as bot:
        app, outbox, clock = bot
        await app.engine.message(GROUP.id, ANN.id, 801, "/moderate", "tidepool_bot")
        await eventually(lambda: len(outbox.deleted) == 2, what="both deletions")
        await settle(app.engine)
        now = clock.now()
        assert [(name, who) for name, _chat, who, _what in outbox.moderated] == [
            ("restrictChatMember", ANN.id),
            ("restrictChatMember", ANN.id),
            ("restrictChatMember", ANN.id),
            ("banChatMember", ANN.id),
            ("banChatMember", ANN.id),
            ("unbanChatMember", ANN.id),
        ]
        restricted, until = outbox.moderated[0][3]
        assert dict(restricted)["can_send_messages"] is True
        assert dict(restricted)["can_send_photos"] is False and until == now + timedelta(hours=1)
        assert outbox.moderated[2][3][1] == now + timedelta(minutes=10)
        assert outbox.moderated[3][3] == now + timedelta(days=7)
        said = next(s for s in outbox.sent if s.text == "Done")
        assert outbox.deleted == [(GROUP.id, 801), (GROUP.id, said.message_id)]
        actions = await rows(engine, MODERATION_ACTIONS)
        assert [(a["action"], a["by"], a["reason"], a["check"]) for a in actions] == [
            ("restrict", "sop:modtest", "r1", "modtest"),
            ("unrestrict", "sop:modtest", "r2", None),
            ("mute", "sop:modtest", "r3", "modtest"),
            ("warn", "sop:modtest", "r4", None),
            ("ban", "sop:modtest", "r5", "modtest"),
            ("kick", "sop:modtest", "r6", "modtest"),
            ("delete", "sop:modtest", "r7", "modtest"),
        ]  # deleting the bot's own message (r8) is tidying up, not moderation: not logged
        [run] = await runs_of(engine, "modtest")
        assert run["status"] == "done"
        assert {status for _step, status, _error in await journal(engine, run["id"])} == {"done"}


async def test_in_dry_mode_the_steps_change_nothing_and_the_run_goes_on(
    engine: AsyncEngine, tmp_path: Path
) -> None:
    async with running(engine, written(tmp_path, EVERY_STEP)) as bot:
        app, outbox, _clock = bot
        await app.moderation.set_mode(GROUP.id, "dry", None)
        await app.engine.message(GROUP.id, ANN.id, 801, "/moderate", "tidepool_bot")
        await eventually(lambda: len(outbox.sent) == 1, what="the send after the steps")
        await settle(app.engine)
        said = next(s for s in outbox.sent if s.text == "Done")
        # Only the bot's own message goes: tidying up happens in every mode.
        assert outbox.moderated == [] and outbox.deleted == [(GROUP.id, said.message_id)]
        [run] = await runs_of(engine, "modtest")
        assert run["status"] == "done"
        steps = await journal(engine, run["id"])
        assert [status for _step, status, _error in steps] == [
            *["dry"] * 7,
            "done",  # the send
            "done",  # its deletion
        ]
        assert all(a["dry"] for a in await rows(engine, MODERATION_ACTIONS))


async def test_with_moderation_off_the_run_stands_down_at_its_first_step(
    engine: AsyncEngine, tmp_path: Path
) -> None:
    async with running(engine, written(tmp_path, EVERY_STEP)) as bot:
        app, outbox, _clock = bot
        await app.moderation.set_mode(GROUP.id, "off", None)
        await app.engine.message(GROUP.id, ANN.id, 801, "/moderate", "tidepool_bot")
        await app.engine.starts_written()
        await settle(app.engine)
        [run] = await runs_of(engine, "modtest")
        assert (run["status"], run["error"]) == ("done", None)
        assert run["variables"]["stop_reason"] == "stood down: moderation is off in this group"
        assert await journal(engine, run["id"]) == [
            ("steps.0", "stood_down", "stood down: moderation is off in this group")
        ]
        assert outbox.moderated == [] and outbox.sent == []
        assert await rows(engine, MODERATION_ACTIONS) == []
