"""The `review` step and `send: {to: admins}`: the shipped weekly review on the engine, with a
Telegram that lists the group's admins, and the review's figures on known data."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from http import HTTPStatus
from pathlib import Path
from typing import Any, cast
from zoneinfo import ZoneInfo

import pytest
from aiogram import Bot
from aiogram.methods import GetChatAdministrators, TelegramMethod
from aiogram.methods.base import TelegramType
from aiogram.types import User
from pydantic import ValidationError
from sqlalchemy import insert, select
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.db import BOT_USERS, EVENTS, SOP_STEPS, EventType, writing
from bot.sop.engine import Engine
from bot.sop.format import SendAction
from bot.sop.simulate._telegram import Unreachable
from bot.sop.steps._send import NO_ADMIN
from bot.stats.metrics import StepResponse
from bot.stats.review import change, peak_hours, ranked_steps, week_of
from tests.sop_harness import (
    GROUP,
    QUEUES,
    ROOT,
    RecordingOutbox,
    assembled,
    copy_sops,
    eventually,
    settle,
    user,
)

SHANGHAI = ZoneInfo("Asia/Shanghai")
TOKEN = "123456:TEST-telegram"  # the shape aiogram checks; never sent anywhere
OWNER_OF_GROUP, ADMIN, BOT_ADMIN = 501, 502, 503
# The harness starts on Monday 2026-11-02, 09:00 in Shanghai: the review's week is the one before.
LAST_WEEK = datetime(2026, 10, 26, 20, 15, tzinfo=SHANGHAI)  # a Monday evening
WEEK_BEFORE = LAST_WEEK - timedelta(days=7)


class Telegram(Unreachable):
    """A Telegram that lists the group's admins (a person who owns it, an admin, a bot);
    every other request fails at once, as an unreachable server does."""

    def bot(self) -> tuple[Bot, User]:
        bot = Bot(TOKEN, session=self)
        return bot, User(id=bot.id, is_bot=True, first_name="Tidepool", username="tidepool_bot")

    async def make_request(
        self,
        bot: Bot,
        method: TelegramMethod[TelegramType],
        timeout: int | None = None,  # noqa: ASYNC109  (the session interface)
    ) -> TelegramType:
        if isinstance(method, GetChatAdministrators):
            admins = [
                _admin("creator", OWNER_OF_GROUP, "Mei"),
                _admin("administrator", ADMIN, "Kai"),
                _admin("administrator", BOT_ADMIN, "Helper", is_bot=True),
            ]
            answer = self.json_dumps({"ok": True, "result": admins})
            response = self.check_response(bot, method, HTTPStatus.OK, answer)
            return cast(TelegramType, response.result)
        return await super().make_request(bot, method, timeout)


def _admin(status: str, user_id: int, name: str, *, is_bot: bool = False) -> dict[str, Any]:
    rights = {} if status == "creator" else {"can_be_edited": False, "can_manage_chat": True}
    return {
        "status": status,
        "user": {"id": user_id, "is_bot": is_bot, "first_name": name},
        "is_anonymous": False,
        **rights,
        **(
            {
                "can_delete_messages": True,
                "can_manage_video_chats": True,
                "can_restrict_members": True,
                "can_promote_members": False,
                "can_change_info": True,
                "can_invite_users": True,
                "can_post_stories": False,
                "can_edit_stories": False,
                "can_delete_stories": False,
                "can_send_welcome_messages": False,
            }
            if status == "administrator"
            else {}
        ),
    }


Running = tuple[Engine, RecordingOutbox]


@contextlib.asynccontextmanager
async def review_bot(engine: AsyncEngine, tmp_path: Path) -> AsyncIterator[Running]:
    """The bot over the shipped weekly review (switched on in GROUP), asking `Telegram`."""
    sops = copy_sops(tmp_path, "weekly_review.yaml", source=ROOT / "sops")
    async with assembled(engine, sops, bot=Telegram().bot()) as (app, outbox, clock):
        app.pushes.start()
        QUEUES[app.engine] = app.pushes
        sop = app.engine
        await sop.registry.save_group(GROUP)
        for member_id, name in ((1, "Ann"), (2, "Bob"), (3, "Cy")):
            await sop.registry.member_joined(
                GROUP.id,
                user(member_id, name),
                WEEK_BEFORE - timedelta(days=3),
                source="chat_member",
            )
        await sop.library.switch(
            sop.db, "weekly_review", GROUP.id, True, OWNER_OF_GROUP, clock.now()
        )
        sop.start()
        yield sop, outbox


async def started(engine: AsyncEngine, *user_ids: int) -> None:
    async with writing(engine) as conn:
        for user_id in user_ids:
            await conn.execute(
                insert(BOT_USERS).values(
                    user_id=user_id, started_at=datetime(2026, 10, 1, tzinfo=UTC)
                )
            )


async def messages(engine: AsyncEngine, *written: tuple[int, datetime]) -> None:
    async with writing(engine) as conn:
        await conn.execute(
            insert(EVENTS),
            [
                {
                    "chat_id": GROUP.id,
                    "user_id": user_id,
                    "at": at,
                    "type": EventType.MESSAGE.value,
                    "data": None,
                    "is_reply": False,
                    "is_forward": False,
                }
                for user_id, at in written
            ],
        )


async def test_the_weekly_review_goes_privately_to_each_admin_who_started_the_bot(
    engine: AsyncEngine, tmp_path: Path
) -> None:
    await started(engine, OWNER_OF_GROUP, BOT_ADMIN)  # Kai never started the bot
    await messages(
        engine,
        (1, LAST_WEEK),
        (2, LAST_WEEK + timedelta(minutes=5)),
        (1, LAST_WEEK + timedelta(days=2)),
        (3, LAST_WEEK + timedelta(days=3, hours=-10)),  # 10:15
        (1, WEEK_BEFORE),
    )
    async with review_bot(engine, tmp_path) as (sop, outbox):
        await sop.fire_schedule("weekly_review", GROUP.id)
        await eventually(lambda: outbox.sent, what="the review")
        await settle(sop)
    [review] = outbox.sent
    assert review.chat_id == OWNER_OF_GROUP, "to the owner only: Kai cannot be reached, bots never"
    text = review.text
    assert "(2026-10-26 to 2026-11-01)" in text
    assert "3 members, 3 active (100%); the week before 1 (+200%)" in text
    assert "4 messages; the week before 1 (+300%)" in text
    assert "Peak hours: 20:00-21:00 (3 messages), 10:00-11:00 (1 message)" in text
    assert "Too few SOP steps were sent this week" in text
    async with engine.connect() as conn:
        statuses = (await conn.execute(select(SOP_STEPS.c.step, SOP_STEPS.c.status))).all()
    assert sorted(statuses) == [("figures", "done"), ("report", "done")]


async def test_with_no_admin_to_reach_the_review_is_not_sent_and_the_journal_says_so(
    engine: AsyncEngine, tmp_path: Path
) -> None:
    await messages(engine, (1, LAST_WEEK))
    async with review_bot(engine, tmp_path) as (sop, outbox):
        await sop.fire_schedule("weekly_review", GROUP.id)
        await eventually(lambda: _journal(engine, "report"), what="the report step")
        await settle(sop)
    assert outbox.sent == [], "never posted in the group instead"
    [(status, error)] = await _journal(engine, "report")
    assert status == "skipped" and error == NO_ADMIN


async def _journal(engine: AsyncEngine, step: str) -> list[tuple[str, str | None]]:
    async with engine.connect() as conn:
        rows = await conn.execute(
            select(SOP_STEPS.c.status, SOP_STEPS.c.error).where(SOP_STEPS.c.step == step)
        )
        return [(status, error) for status, error in rows]


def test_a_figure_changes_in_percent_or_from_nothing() -> None:
    assert [change(12, 10), change(9, 10), change(5, 5), change(3, 0), change(0, 4)] == [
        "+20%",
        "-10%",
        "±0",
        "+3",
        "-100%",
    ]
    assert change(1001, 1000) == "+<1%"


def test_peak_hours_sum_the_week_and_skip_silent_hours() -> None:
    heatmap = [[0] * 24 for _ in range(7)]
    heatmap[0][20], heatmap[3][20], heatmap[1][9], heatmap[6][23] = 4, 3, 5, 5
    assert [peak["label"] for peak in peak_hours(heatmap)] == [
        "20:00-21:00",
        "09:00-10:00",
        "23:00-00:00",
    ]
    assert peak_hours([[0] * 24 for _ in range(7)]) == []


def test_steps_are_ranked_by_answer_rate_with_their_variants_together() -> None:
    steps = [
        StepResponse("welcome", "greet", "a", 4, 3),
        StepResponse("welcome", "greet", "b", 4, 1),  # greet: 4 of 8
        StepResponse("welcome", "nudge", None, 5, 1),
        StepResponse("launch", "intro", None, 3, 3),
        StepResponse("launch", "follow_up", None, 2, 2),  # too few sends to count
    ]
    ranked = ranked_steps(steps, min_sends=3)
    assert [(s["sop"], s["step"], s["rate"]) for s in ranked] == [
        ("launch", "intro", 100),
        ("welcome", "greet", 50),
        ("welcome", "nudge", 20),
    ]


@pytest.mark.parametrize(
    ("today", "period", "expected"),
    [
        ("2026-11-02", "last_week", ("2026-10-26", "2026-11-01")),
        ("2026-11-08", "last_week", ("2026-10-26", "2026-11-01")),
        ("2026-11-04", "week", ("2026-11-02", "2026-11-08")),
    ],
)
def test_the_week_runs_monday_to_sunday(today: str, period: str, expected: tuple[str, str]) -> None:
    first, last = week_of(datetime.fromisoformat(today).date(), period)
    assert (first.isoformat(), last.isoformat()) == expected


def test_a_send_to_admins_cannot_be_a_reply_pinned_or_deleted() -> None:
    assert SendAction.model_validate({"template": "a.b", "to": "admins"}).to == "admins"
    for extra in ({"reply": True}, {"pin": True}, {"delete_after": "1h"}):
        with pytest.raises(ValidationError, match="'to: admins' goes privately"):
            SendAction.model_validate({"template": "a.b", "to": "admins", **extra})
