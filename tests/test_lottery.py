"""Lotteries: who may enter, one entry each, a draw that happens once, rerolls and verifying."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import timedelta
from http import HTTPStatus
from pathlib import Path
from typing import cast

import pytest
from aiogram import Bot
from aiogram.methods import GetChatMember, TelegramMethod
from aiogram.methods.base import TelegramType
from aiogram.types import Chat, ChatMemberMember, User
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from bot import points
from bot.activity import ActivityLog, event_row
from bot.clock import ManualClock
from bot.db import (
    CHECKINS,
    EVENTS,
    LOTTERIES,
    LOTTERY_ENTRIES,
    LOTTERY_PICKS,
    MEMBER_TAGS,
    MEMBERS,
    POINTS,
    PUSHES,
    EventType,
    PushStatus,
    writing,
)
from bot.events import Happened
from bot.factory import Tidepool, member_status
from bot.lottery import draw as drawing
from bot.lottery.command import BadCommand, read_lottery
from bot.lottery.rules import Refusal
from bot.lottery.service import Lotteries
from bot.lottery.store import Drawn, Entered, Rerolled, Verification
from bot.push.queue import INTERRUPTED, PushQueue
from bot.registry import Registry
from bot.sop.format import LotteryRules
from bot.sop.simulate import Unreachable
from tests.sop_harness import (
    ROOT,
    START,
    RecordingOutbox,
    assembled,
    copy_sops,
    drain,
    eventually,
    make_engine,
    nobody_asked,
    settle,
    user,
)

GROUP = Chat(id=-1001, type="supergroup", title="Readers")
TOKEN = "123456:TEST-telegram"  # the shape aiogram checks; never sent anywhere


class Telegram(Unreachable):
    """A Telegram that answers getChatMember as a test says (by default: it cannot say), read
    by aiogram as it reads Telegram's answers; a question it cannot answer, and every other
    request, fail at once, as an unreachable server does."""

    def __init__(self) -> None:
        super().__init__()
        self.says: Callable[[int, int], Awaitable[str | None]] = nobody_asked

    def bot(self) -> tuple[Bot, User]:
        """A Bot that asks this Telegram, and the bot's own user as getMe would give it."""
        bot = Bot(TOKEN, session=self)
        return bot, User(id=bot.id, is_bot=True, first_name="Tidepool", username="tidepool_bot")

    async def make_request(
        self,
        bot: Bot,
        method: TelegramMethod[TelegramType],
        timeout: int | None = None,  # noqa: ASYNC109  (the session interface)
    ) -> TelegramType:
        if isinstance(method, GetChatMember):
            status = await self.says(int(method.chat_id), method.user_id)
            if status is not None:
                member = {
                    "status": status,
                    "user": {"id": method.user_id, "is_bot": False, "first_name": "M"},
                }
                answer = self.json_dumps({"ok": True, "result": member})
                response = self.check_response(bot, method, HTTPStatus.OK, answer)
                return cast(TelegramType, response.result)
        return await super().make_request(bot, method, timeout)  # fails: it cannot say


@dataclass
class Setup:
    """The bot assembled as `tidepool run` assembles it (`assembled`), its loops not started,
    asking `telegram` about members; `stop()` and `start()` restart it on the same database."""

    engine: AsyncEngine
    sops: Path
    telegram: Telegram
    clock: ManualClock
    outbox: RecordingOutbox
    running: contextlib.AsyncExitStack = field(default_factory=contextlib.AsyncExitStack)
    app: Tidepool = field(init=False)

    async def start(self) -> None:
        self.app, _, _ = await self.running.enter_async_context(
            assembled(
                self.engine,
                self.sops,
                clock=self.clock,
                outbox=self.outbox,
                bot=self.telegram.bot(),
            )
        )

    async def stop(self) -> None:
        await self.running.aclose()

    @property
    def lotteries(self) -> Lotteries:
        return self.app.lotteries

    @property
    def registry(self) -> Registry:
        return self.app.registry

    @property
    def activity(self) -> ActivityLog:
        return self.app.activity

    @property
    def queue(self) -> PushQueue:
        return self.app.pushes

    async def flush(self) -> None:
        """Send the posts and announcements queued so far."""
        await drain(self.queue)


@pytest.fixture
async def setup(engine: AsyncEngine, tmp_path: Path) -> AsyncIterator[Setup]:
    clock = ManualClock(START)
    sops = tmp_path / "no_sops"
    sops.mkdir()
    setup = Setup(engine, sops, Telegram(), clock, RecordingOutbox(clock))
    await setup.start()
    await setup.registry.save_group(GROUP)
    yield setup
    await setup.stop()


async def join(setup: Setup, *user_ids: int, days_ago: int = 30) -> None:
    for user_id in user_ids:
        await setup.registry.member_joined(
            GROUP.id, user(user_id, f"M{user_id}"), START - timedelta(days=days_ago), source="test"
        )


async def leave(setup: Setup, user_id: int) -> None:
    await setup.registry.member_left(
        GROUP.id, user(user_id, f"M{user_id}"), setup.clock.now(), source="test"
    )


async def create(setup: Setup, winners: int = 1, **rules: object) -> int:
    lottery = await setup.lotteries.create(
        GROUP.id,
        prize="Signed book",
        winners=winners,
        duration=timedelta(hours=2),
        rules=LotteryRules.model_validate(rules),
        by=1,
    )
    await setup.flush()
    return lottery.id


async def enter(setup: Setup, lottery_id: int, *user_ids: int) -> list[Entered | Refusal]:
    return list(
        await asyncio.gather(*(setup.lotteries.enter(GROUP.id, lottery_id, u) for u in user_ids))
    )


# --- the command ----------------------------------------------------------------------------


def test_the_command_reads_winners_duration_prize_and_rules() -> None:
    order = read_lottery("3 2h Three course vouchers tenure=7d messages=3/7d cost=20 tier=seed")
    assert (order.winners, order.duration, order.prize) == (
        3,
        timedelta(hours=2),
        "Three course vouchers",
    )
    assert order.rules.min_tenure == timedelta(days=7)
    assert order.rules.min_messages is not None and order.rules.min_messages.count == 3
    assert (order.rules.entry_cost, order.rules.tiers) == (20, ["seed"])


@pytest.mark.parametrize(
    ("args", "key"),
    [
        ("", "usage"),
        ("3 2h", "usage"),
        ("three 2h Book", "bad_winners"),
        ("0 2h Book", "bad_winners"),
        ("3 soon Book", "bad_duration"),
        ("3 90d Book", "bad_duration"),
        ("3 2h tenure=7d", "no_prize"),
        ("3 2h Book colour=red", "bad_option"),
        ("3 2h Book tier=gold", "bad_value"),
        ("3 2h Book messages=x/7d", "bad_value"),
        ("3 2h Book cost=-5", "bad_value"),
        ("51 2h Book", "bad_winners"),
        ("² 2h Book", "bad_winners"),
        ("3 99999999999999d Book", "bad_duration"),
        ("3 2h Book max=30000000000", "bad_value"),
        ("3 2h Book exclude_winners=999999d", "bad_value"),
        ("3 2h Book messages=1/400d", "bad_value"),
        ("3 2h " + "Book " * 50, "long_prize"),
    ],
)
def test_a_bad_command_says_what_is_wrong(args: str, key: str) -> None:
    with pytest.raises(BadCommand) as bad:
        read_lottery(args)
    assert bad.value.key == key


# --- opening and entering ---------------------------------------------------------------------


async def test_the_post_publishes_the_commitment_and_the_rules(setup: Setup) -> None:
    lottery_id = await create(setup, 3, min_tenure="7d", entry_cost=5)
    post = setup.outbox.sent[-1]
    stored = await setup.lotteries.store.get(lottery_id)
    assert stored is not None and stored.message_id == post.message_id
    assert stored.commitment == drawing.commitment(stored.seed)
    assert stored.commitment in post.text and stored.seed not in post.text
    assert "at least 7d" in post.text and "costs 5 points" in post.text
    assert post.markup.inline_keyboard[0][0].callback_data == f"lottery:enter:{lottery_id}"


async def test_each_member_enters_once_however_often_they_press(setup: Setup) -> None:
    await join(setup, *range(1, 11))
    lottery_id = await create(setup)
    outcomes = await enter(setup, lottery_id, *range(1, 11), *range(1, 11), 3, 3, 3)
    assert sum(isinstance(o, Entered) for o in outcomes) == 10
    assert sum(isinstance(o, Refusal) and o.reason == "entered" for o in outcomes) == 13
    async with setup.engine.connect() as conn:
        rows = (await conn.execute(select(func.count()).select_from(LOTTERY_ENTRIES))).scalar_one()
        count = (await conn.execute(select(LOTTERIES.c.entry_count))).scalar_one()
    assert rows == count == 10
    await setup.activity.flush()
    async with setup.engine.connect() as conn:
        events = await conn.execute(
            select(func.count()).where(EVENTS.c.type == EventType.LOTTERY_ENTERED.value)
        )
        assert events.scalar_one() == 10
    # the post shows the count, edited after the entries
    await asyncio.sleep(0.05)
    assert any("Entries so far: <b>10</b>" in edit.text for edit in setup.outbox.edited)


async def test_the_cap_holds_when_many_press_at_once(setup: Setup) -> None:
    await join(setup, *range(1, 31))
    lottery_id = await create(setup, max_entries=12)
    outcomes = await enter(setup, lottery_id, *range(1, 31))
    assert sum(isinstance(o, Entered) for o in outcomes) == 12
    assert {o.reason for o in outcomes if isinstance(o, Refusal)} == {"full"}


async def test_entry_cost_is_spent_and_refunded_when_cancelled(setup: Setup) -> None:
    await join(setup, 1, 2)
    async with writing(setup.engine) as conn:
        await points.apply(conn, [points.Change(GROUP.id, 1, 30, "gift", "test", START)])
    lottery_id = await create(setup, entry_cost=20)
    first, second = await enter(setup, lottery_id, 1, 2)
    assert isinstance(first, Entered) and first.cost == 20
    assert isinstance(second, Refusal) and second.reason == "points"
    assert second.values == {"needed": 20, "balance": 0}
    async with setup.engine.connect() as conn:
        assert await points.balance(conn, GROUP.id, 1) == 10
    cancelled = await setup.lotteries.cancel(lottery_id, by=99)
    assert not isinstance(cancelled, Refusal)
    async with setup.engine.connect() as conn:
        assert await points.balance(conn, GROUP.id, 1) == 30
        reasons = [row.reason for row in await conn.execute(select(POINTS.c.reason))]
    assert reasons == [
        "gift",
        f"lottery #{lottery_id} entry",
        f"lottery #{lottery_id} cancelled: entry refunded",
    ]
    assert "Cancelled by an admin" in setup.outbox.edited[-1].text
    assert setup.outbox.edited[-1].markup is None
    late = await enter(setup, lottery_id, 1)
    assert isinstance(late[0], Refusal) and late[0].reason == "closed"


async def test_eligibility_rules_each_refuse_with_their_reason(setup: Setup) -> None:
    await join(setup, 1, 2, 3, 4, 5, 6, 7)
    await join(setup, 8, days_ago=1)  # too new
    now = setup.clock.now()
    async with writing(setup.engine) as conn:
        await conn.execute(
            update(MEMBERS).where(MEMBERS.c.user_id.in_([1, 2, 3, 5, 6, 7])).values(tier="seed")
        )
        await conn.execute(
            MEMBER_TAGS.insert(),
            [
                {"chat_id": GROUP.id, "user_id": u, "tag": "vip", "source": "t", "added_at": now}
                for u in (1, 2, 3, 4, 6, 7)
            ],
        )
        await conn.execute(
            CHECKINS.insert(),
            [
                {
                    "chat_id": GROUP.id,
                    "user_id": u,
                    "day": (now - timedelta(days=d)).date(),
                    "at": now - timedelta(days=d),
                    "streak": 1,
                }
                for u in (1, 2, 3, 4, 5, 7)
                for d in (1, 2)
            ],
        )
        await points.apply(
            conn, [points.Change(GROUP.id, u, 50, "gift", "test", now) for u in (1, 3, 4, 5, 6, 7)]
        )
    for u in (1, 2, 4, 5, 6, 7, 8):  # 3 wrote nothing
        setup.activity.add(
            event_row(
                chat_id=GROUP.id, user_id=u, at=now - timedelta(hours=1), type=EventType.MESSAGE
            )
        )
    # 7 won a lottery here last week
    earlier = await create(setup)
    await enter(setup, earlier, 7)
    await setup.lotteries.draw(earlier)
    await leave(setup, 6)  # not in the group any more
    lottery_id = await create(
        setup,
        min_tenure="7d",
        tiers=["seed", "value"],
        tags=["vip"],
        min_messages={"count": 1, "window": "7d"},
        min_checkins={"count": 2, "window": "7d"},
        min_points=40,
        exclude_winners_within="7d",
    )
    outcomes = dict(zip(range(1, 10), await enter(setup, lottery_id, *range(1, 10)), strict=True))
    reasons = {u: o.reason if isinstance(o, Refusal) else "entered" for u, o in outcomes.items()}
    assert reasons == {
        1: "entered",
        2: "points",
        3: "messages",
        4: "tier",
        5: "tag",
        6: "not_member",
        7: "recent_winner",
        8: "tenure",
        9: "tenure",  # never seen: counted from when the bot came to the group, just now
    }
    assert outcomes[3] == Refusal("messages", {"needed": 1, "window": "7d", "have": 0})


# --- the draw ---------------------------------------------------------------------------------


async def test_the_draw_happens_once_and_leavers_are_out(setup: Setup) -> None:
    await join(setup, *range(1, 21))
    lottery_id = await create(setup, 3)
    await enter(setup, lottery_id, *range(1, 21))
    await leave(setup, 5)
    setup.clock.advance(timedelta(hours=2))
    results = await asyncio.gather(*(setup.lotteries.draw(lottery_id) for _ in range(4)))
    await setup.flush()
    drawn = [r for r in results if isinstance(r, Drawn)]
    assert len(drawn) == 1
    assert {r.reason for r in results if isinstance(r, Refusal)} == {"already_drawn"}
    entrants = [u for u in range(1, 21) if u != 5]
    assert drawn[0].winners == drawing.draw(drawn[0].lottery.seed, entrants, 3)
    assert drawn[0].lottery.entrants == 19
    assert drawn[0].lottery.entrants_digest == drawing.entrants_digest(entrants)
    announcements = [s for s in setup.outbox.sent if "is drawn" in s.text]
    assert len(announcements) == 1
    text = announcements[0].text
    assert drawn[0].lottery.seed in text and drawn[0].lottery.entrants_digest in text
    assert all(f"tg://user?id={w}" in text for w in drawn[0].winners)
    async with setup.engine.connect() as conn:
        out = (
            await conn.execute(
                select(LOTTERY_ENTRIES.c.user_id, LOTTERY_ENTRIES.c.out_reason).where(
                    LOTTERY_ENTRIES.c.in_draw.is_(False)
                )
            )
        ).all()
    assert [tuple(row) for row in out] == [(5, "left the group")]
    verified = await setup.lotteries.verify(lottery_id)
    assert isinstance(verified, Verification) and verified.ok
    assert verified.winners == drawn[0].winners


async def test_the_loop_draws_at_the_deadline_and_after_a_restart(setup: Setup) -> None:
    await join(setup, 1, 2, 3)
    lottery_id = await create(setup, 2)
    await enter(setup, lottery_id, 1, 2, 3)
    # the bot stops before the deadline and starts again after it
    await setup.stop()
    setup.clock.advance(timedelta(hours=5))
    await setup.start()
    setup.lotteries.start()
    setup.queue.start()
    await eventually(
        lambda: any("is drawn" in text for text in setup.outbox.texts(GROUP.id)),
        what="the announcement",
    )
    await drain(setup.queue)
    stored = await setup.lotteries.store.get(lottery_id)
    assert stored is not None and stored.status == "drawn"
    assert stored.drawn_at == setup.clock.now()
    assert stored.announcement_id is not None
    assert len([s for s in setup.outbox.sent if "is drawn" in s.text]) == 1


async def test_a_draw_whose_announcement_was_not_queued_gets_it_once(setup: Setup) -> None:
    await join(setup, 1)
    lottery_id = await create(setup)
    await enter(setup, lottery_id, 1)
    # the bot stopped right after the draw committed, before it queued the announcement
    drawn = await setup.lotteries.store.draw(lottery_id, setup.clock.now())
    assert isinstance(drawn, Drawn)
    await asyncio.gather(setup.lotteries.recover(), setup.lotteries.recover())
    await setup.lotteries.recover()
    await setup.flush()
    await setup.lotteries.recover()
    await setup.flush()
    assert len([s for s in setup.outbox.sent if "is drawn" in s.text]) == 1
    stored = await setup.lotteries.store.get(lottery_id)
    assert stored is not None and stored.announcement_id == setup.outbox.sent[-1].message_id


async def test_an_announcement_cut_off_mid_send_is_never_sent_again(setup: Setup) -> None:
    await join(setup, 1)
    lottery_id = await create(setup)
    await enter(setup, lottery_id, 1)
    won: list[Happened] = []

    async def winner(event: Happened) -> None:
        won.append(event)

    setup.registry.bus.subscribe(Happened, winner)
    await setup.lotteries.draw(lottery_id)
    # the bot was killed while Telegram was asked for the announcement: `sending`, and noted
    # on the wire as the request went
    announce = PUSHES.c.key == f"lottery:{lottery_id}:announce"
    async with writing(setup.engine) as conn:
        await conn.execute(update(PUSHES).where(announce).values(status=PushStatus.SENDING.value))
        push_id = (await conn.execute(select(PUSHES.c.id).where(announce))).scalar_one()
    setup.queue.wire.note([push_id])
    assert await setup.queue.recover() == 1
    await setup.lotteries.recover()
    await setup.flush()
    await setup.registry.bus.settle()
    assert [s for s in setup.outbox.sent if "is drawn" in s.text] == []
    async with setup.engine.connect() as conn:
        note = (
            await conn.execute(
                select(PUSHES.c.note).where(PUSHES.c.key == f"lottery:{lottery_id}:announce")
            )
        ).scalar_one()
    assert note == INTERRUPTED
    assert [(event.name, event.user_id) for event in won] == [("lottery.won", 1)]


async def test_a_refused_post_is_recorded_failed_and_never_posted_twice(setup: Setup) -> None:
    setup.outbox.refuse.add(GROUP.id)
    lottery_id = await create(setup)
    assert setup.outbox.sent == []
    setup.outbox.refuse.clear()
    await asyncio.gather(setup.lotteries.recover(), setup.lotteries.recover())
    await setup.flush()
    assert setup.outbox.sent == []
    async with setup.engine.connect() as conn:
        status, note = (
            await conn.execute(
                select(PUSHES.c.status, PUSHES.c.note).where(
                    PUSHES.c.key == f"lottery:{lottery_id}:post"
                )
            )
        ).one()
    assert status == PushStatus.FAILED and "kicked" in note


async def test_no_entrants_means_no_winner(setup: Setup) -> None:
    lottery_id = await create(setup, 3)
    drawn = await setup.lotteries.draw(lottery_id)
    await setup.flush()
    assert isinstance(drawn, Drawn) and drawn.winners == []
    assert "without eligible entries" in setup.outbox.sent[-1].text


# --- rerolls and verifying --------------------------------------------------------------------


async def test_a_reroll_never_repeats_a_winner_and_skips_leavers(setup: Setup) -> None:
    await join(setup, *range(1, 9))
    lottery_id = await create(setup, 2)
    await enter(setup, lottery_id, *range(1, 9))
    drawn = await setup.lotteries.draw(lottery_id)
    await setup.flush()
    assert isinstance(drawn, Drawn)
    order = list(drawing.picks(drawn.lottery.seed, range(1, 9)))
    assert drawn.winners == order[:2]
    await leave(setup, order[2])  # the next in line left after the draw
    rerolled = await setup.lotteries.reroll(lottery_id, order[0], "unclaimed", by=99)
    assert isinstance(rerolled, Rerolled)
    assert (rerolled.winner, rerolled.skipped, rerolled.pick) == (order[3], [order[2]], 3)
    assert await setup.lotteries.store.winners(lottery_id) == [order[1], order[3]]
    # the announcement now shows the new winners
    assert f"tg://user?id={order[3]}" in setup.outbox.edited[-1].text
    seen = {order[0], order[1], order[2], order[3]}
    for _ in range(4):
        current = await setup.lotteries.store.winners(lottery_id)
        again = await setup.lotteries.reroll(lottery_id, current[0], "", by=99)
        assert isinstance(again, Rerolled) and again.winner not in seen
        seen.add(again.winner)
    exhausted = await setup.lotteries.reroll(
        lottery_id, (await setup.lotteries.store.winners(lottery_id))[0], "", by=99
    )
    assert isinstance(exhausted, Refusal) and exhausted.reason == "no_one_left"
    not_winner = await setup.lotteries.reroll(lottery_id, order[0], "", by=99)
    assert isinstance(not_winner, Refusal) and not_winner.reason == "not_winner"
    verified = await setup.lotteries.verify(lottery_id)
    assert isinstance(verified, Verification)
    assert verified.ok, verified.checks


async def test_verify_catches_tampering(setup: Setup) -> None:
    await join(setup, *range(1, 6))
    lottery_id = await create(setup, 2)
    await enter(setup, lottery_id, *range(1, 6))
    await setup.lotteries.draw(lottery_id)
    drawn_first = (await setup.lotteries.store.winners(lottery_id))[0]
    async with writing(setup.engine) as conn:  # someone slips an entrant in afterwards
        await conn.execute(
            LOTTERY_ENTRIES.insert().values(
                lottery_id=lottery_id, user_id=77, entered_at=START, cost=0, in_draw=True
            )
        )
    verified = await setup.lotteries.verify(lottery_id)
    assert isinstance(verified, Verification) and not verified.ok
    assert dict(verified.checks)["digest"] is False
    async with writing(setup.engine) as conn:  # or swaps a winner
        await conn.execute(LOTTERY_ENTRIES.delete().where(LOTTERY_ENTRIES.c.user_id == 77))
        await conn.execute(
            update(LOTTERY_PICKS).where(LOTTERY_PICKS.c.pick == 0).values(user_id=77)
        )
    verified = await setup.lotteries.verify(lottery_id)
    assert isinstance(verified, Verification)
    assert dict(verified.checks) == {
        "commitment": True,
        "digest": True,
        "count": True,
        "picks": False,
        "winners": True,
    }
    async with writing(setup.engine) as conn:  # or turns a replaced winner back into one
        await conn.execute(
            update(LOTTERY_PICKS).where(LOTTERY_PICKS.c.pick == 0).values(user_id=drawn_first)
        )
    rerolled = await setup.lotteries.reroll(lottery_id, drawn_first, "unclaimed", by=99)
    assert isinstance(rerolled, Rerolled)
    verified = await setup.lotteries.verify(lottery_id)
    assert isinstance(verified, Verification) and verified.ok
    async with writing(setup.engine) as conn:
        await conn.execute(
            update(LOTTERY_PICKS).where(LOTTERY_PICKS.c.pick == 0).values(outcome="won")
        )
    verified = await setup.lotteries.verify(lottery_id)
    assert isinstance(verified, Verification) and dict(verified.checks)["winners"] is False
    open_id = await create(setup)
    assert await setup.lotteries.verify(open_id) == Refusal("not_drawn")


# --- the SOP step -----------------------------------------------------------------------------


async def test_the_weekly_lottery_sop_opens_a_lottery_once(setup: Setup, tmp_path: Path) -> None:
    sops = copy_sops(tmp_path, "weekly_lottery.yaml", source=ROOT / "sops")
    async with make_engine(setup.engine, sops, content=ROOT / "content") as (engine, outbox, _):
        lotteries = engine.lotteries
        assert isinstance(lotteries, Lotteries)
        await engine.run_by_hand("weekly_lottery", GROUP.id, None)
        await settle(engine)
        opened = await lotteries.store.open_ones(GROUP.id)
        assert len(opened) == 1
        lottery = opened[0]
        assert lottery.prize == "This week's gift: a hand-picked surprise"
        assert (lottery.winners, lottery.draws_at) == (3, START + timedelta(days=2))
        assert lottery.rules.min_messages is not None and lottery.rules.min_tenure is not None
        assert lottery.source == "sop:weekly_lottery" and lottery.message_id is not None
        post = next(s for s in outbox.sent if s.message_id == lottery.message_id)
        assert "at least 1 message(s) in the last 7d" in post.text


async def test_a_member_who_wins_elsewhere_before_the_draw_sits_it_out(setup: Setup) -> None:
    await join(setup, 1, 2)
    weekly = await create(setup, exclude_winners_within="7d")
    await enter(setup, weekly, 1, 2)
    flash = await create(setup)
    await enter(setup, flash, 1)
    await setup.lotteries.draw(flash)  # 1 wins it
    drawn = await setup.lotteries.draw(weekly)
    assert isinstance(drawn, Drawn) and drawn.winners == [2]
    async with setup.engine.connect() as conn:
        out = await conn.execute(
            select(LOTTERY_ENTRIES.c.user_id, LOTTERY_ENTRIES.c.out_reason).where(
                LOTTERY_ENTRIES.c.lottery_id == weekly, LOTTERY_ENTRIES.c.in_draw.is_(False)
            )
        )
        assert [tuple(row) for row in out] == [
            (1, "won another lottery of the group since entering")
        ]
    verified = await setup.lotteries.verify(weekly)
    assert isinstance(verified, Verification) and verified.ok


async def test_pressers_the_bot_does_not_know_are_checked_with_telegram(setup: Setup) -> None:
    await join(setup, 1, 2)
    await leave(setup, 2)  # the bot saw 2 leave, and missed the rejoin
    asked: list[int] = []

    async def telegram_says(chat_id: int, user_id: int) -> str | None:
        asked.append(user_id)
        return {2: "member", 3: "left"}.get(user_id)  # 4: Telegram cannot say

    setup.telegram.says = telegram_says
    lottery_id = await create(setup)
    outcomes = await enter(setup, lottery_id, 1, 2, 3, 4)
    assert [o.reason if isinstance(o, Refusal) else "entered" for o in outcomes] == [
        "entered",
        "entered",
        "not_member",  # a visitor of a public group
        "entered",
    ]
    assert sorted(asked) == [2, 3, 4], "known present members are not asked about"
    await enter(setup, lottery_id, 3)
    assert sorted(asked) == [2, 3, 4], "the answer is remembered for a while"
    drawn = await setup.lotteries.draw(lottery_id)
    assert isinstance(drawn, Drawn) and drawn.lottery.entrants == 3  # 2 counts as present again


async def test_a_visitors_press_written_before_the_entry_is_checked_is_still_refused(
    setup: Setup,
) -> None:
    """The activity log writes a `members` row for whoever presses a button (status member,
    no join seen); when its writer is quicker than the entry's batch, that row is the press
    itself and proves nothing: Telegram is asked, and a visitor is refused."""
    await join(setup, 1)

    async def telegram_says(chat_id: int, user_id: int) -> str | None:
        return "left"  # Vera only visits the public group

    setup.telegram.says = telegram_says
    lottery_id = await create(setup)
    vera = user(9, "Vera")
    for presser in (user(1, "M1"), vera):  # as RecordPresses logs each press, then written
        setup.activity.touch(GROUP.id, presser, setup.clock.now())
    await setup.activity.flush()
    outcomes = await enter(setup, lottery_id, 1, vera.id)
    assert [o.reason if isinstance(o, Refusal) else "entered" for o in outcomes] == [
        "entered",
        "not_member",
    ]


def test_refusals_read_as_plain_text_with_tier_names(setup: Setup) -> None:
    text = setup.lotteries.refusal_text(
        GROUP.id, Refusal("tier", {"tiers": "seed, core", "tier": "new"})
    )
    assert (
        text == "This lottery is only for: seed member, core member. You are currently: newcomer."
    )
    tagged = setup.lotteries.refusal_text(GROUP.id, Refusal("tag", {"tags": "a&b"}))
    assert tagged == "This lottery is for members tagged a&b."


async def test_telegrams_member_status_is_read_as_its_value() -> None:
    class FakeBot:
        async def get_chat_member(self, chat_id: int, user_id: int) -> ChatMemberMember:
            return ChatMemberMember(user=user(user_id, "Frank"))

    status = member_status(FakeBot())  # type: ignore[arg-type]  # a stand-in for aiogram's Bot
    assert await status(GROUP.id, 5) == "member"  # not "ChatMemberStatus.MEMBER"
