"""The delivery service against the emulator: paced without 429s, fair, and never losing track."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import datetime
from types import SimpleNamespace
from typing import Any

import pytest
from aiogram import Bot
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.telegram import TelegramAPIServer
from aiogram.types import Chat, InlineKeyboardButton, InlineKeyboardMarkup
from sqlalchemy import select

from bot.db import DELIVERIES, GroupStatus
from bot.delivery import Delivered, Delivery
from bot.emulator import EmulatorClient, EmulatorServer, _state
from bot.outbox import Asking, Before
from bot.registry import Registry

TOKEN = "123456:TEST-token"
SPEED = 30.0  # the paced test runs Telegram's clock and ours 30 times faster than real time

World = tuple[EmulatorClient, Bot]


@pytest.fixture
async def world() -> AsyncIterator[World]:
    async with EmulatorServer(token=TOKEN) as server:
        bot = Bot(TOKEN, session=AiohttpSession(api=TelegramAPIServer.from_base(server.base_url)))
        yield server.client, bot
        await bot.session.close()


@asynccontextmanager
async def delivering(world: World, registry: Registry, **limits: Any) -> AsyncIterator[Delivery]:
    delivery = Delivery(world[1], registry, registry.engine, **limits)
    delivery.start()
    try:
        yield delivery
    finally:
        await delivery.close()


def fast_clock(monkeypatch: pytest.MonkeyPatch) -> Callable[[], float]:
    """A monotonic clock running SPEED times faster, shared with the emulator's flood limits."""
    began = time.monotonic()

    def clock() -> float:
        return began + (time.monotonic() - began) * SPEED

    monkeypatch.setattr(_state, "time", SimpleNamespace(monotonic=clock, time=time.time))
    return clock


async def group(
    ctl: EmulatorClient, registry: Registry, title: str = "Shop fans", *, kind: str = "supergroup"
) -> int:
    """A group with the bot in it, known to the registry."""
    chat = await ctl.create_chat(title, type=kind)  # type: ignore[arg-type]
    await ctl.set_bot_status(chat["id"], "member")
    await registry.save_group(
        Chat(id=chat["id"], type=kind, title=title), status=GroupStatus.ACTIVE
    )
    return int(chat["id"])


async def member(ctl: EmulatorClient, name: str, *, started: bool = True) -> int:
    user = await ctl.create_user(name)
    if started:
        await ctl.start(user["id"])
    return int(user["id"])


async def records(delivery: Delivery) -> list[dict[str, Any]]:
    await delivery.flush()
    async with delivery.engine.connect() as conn:
        rows = await conn.execute(select(DELIVERIES).order_by(DELIVERIES.c.id))
        return [dict(row) for row in rows.mappings()]


async def test_paced_within_every_limit_in_order(
    world: World, registry: Registry, monkeypatch: pytest.MonkeyPatch
) -> None:
    ctl, _ = world
    clock = fast_clock(monkeypatch)
    await ctl.set_rate_limits(True)
    groups = [await group(ctl, registry, f"Group {n}") for n in range(3)]
    people = [await member(ctl, f"Member {n}") for n in range(5)]
    plan = {**{chat: 10 for chat in groups}, **{chat: 6 for chat in people}}
    async with delivering(world, registry, per_group_minute=5, clock=clock) as delivery:
        results = await asyncio.gather(
            *(
                delivery.send_message(chat, f"{chat} #{i}", source="test")
                for i in range(10)
                for chat, count in plan.items()
                if i < count
            )
        )
        rows = await records(delivery)

    assert len(results) == 60
    assert all(r.ok and r.attempts == 1 for r in results), [r.error for r in results]
    calls = await ctl.calls(method="sendMessage")
    assert [c for c in calls if c.get("error_code") == 429] == []
    for chat, count in plan.items():
        texts = [m["text"] for m in await ctl.sent(chat)]
        assert texts == [f"{chat} #{i}" for i in range(count)], "each chat in the order asked"
    window = 60 / SPEED
    sent_at: dict[int, list[datetime]] = {}
    for row in rows:
        sent_at.setdefault(row["chat_id"], []).append(row["sent_at"])
    for chat in groups:
        times = sorted(sent_at[chat])
        gaps = [(times[i + 5] - times[i]).total_seconds() for i in range(len(times) - 5)]
        assert min(gaps) >= window, "no more than 5 in any (scaled) minute in a group"
    for chat in people:
        times = sorted(sent_at[chat])
        assert (times[-1] - times[0]).total_seconds() < window, "no group limit in private"


async def test_waits_out_a_429_in_that_chat_only(world: World, registry: Registry) -> None:
    ctl, _ = world
    chat = await group(ctl, registry)
    other = await group(ctl, registry, "Other")
    await ctl.add_fault("sendMessage", 429, "Too Many Requests: retry after 1", retry_after=1)
    async with delivering(world, registry) as delivery:
        began = time.monotonic()
        paused = asyncio.create_task(delivery.send_message(chat, "Welcome!", source="test"))
        await asyncio.sleep(0.1)
        elsewhere = await delivery.send_message(other, "Hello", source="test")
        other_took = time.monotonic() - began
        result = await paused
        waited = time.monotonic() - began
    assert (result.ok, result.attempts, result.chat_id) == (True, 2, chat)
    assert waited >= 1.0
    [message] = await ctl.sent(chat)
    assert (message["text"], message["message_id"]) == ("Welcome!", result.message_id)
    assert (elsewhere.ok, elsewhere.attempts) == (True, 1)
    assert other_took < 0.5, "another group does not wait for this one's pause"


async def test_429s_in_several_chats_pause_everything(world: World, registry: Registry) -> None:
    ctl, _ = world
    first, second, third = [await group(ctl, registry, f"Group {n}") for n in range(3)]
    for chat in (first, second):
        await ctl.add_fault(
            "sendMessage", 429, "Too Many Requests: retry after 1", retry_after=1, chat_id=chat
        )
    async with delivering(world, registry) as delivery:
        began = time.monotonic()
        hit = [
            asyncio.create_task(delivery.send_message(chat, "Hi", source="test"))
            for chat in (first, second)
        ]
        await asyncio.sleep(0.2)
        later = await delivery.send_message(third, "Hi", source="test")
        waited = time.monotonic() - began
        results = await asyncio.gather(*hit)
    assert [r.attempts for r in results] == [2, 2]
    assert (later.ok, later.attempts) == (True, 1)
    assert waited >= 0.9, "the third group waited for the global pause"


async def test_server_errors_are_retried(world: World, registry: Registry) -> None:
    ctl, _ = world
    chat = await group(ctl, registry)
    await ctl.add_fault("sendMessage", 500, "Internal Server Error")
    async with delivering(world, registry) as delivery:
        result = await delivery.send_message(chat, "Hello", source="test")
    assert (result.ok, result.attempts) == (True, 2)
    assert len(await ctl.sent(chat)) == 1


async def test_kicked_group_fails_now_and_later_without_calls(
    world: World, registry: Registry
) -> None:
    ctl, _ = world
    chat = await group(ctl, registry)
    await ctl.set_bot_status(chat, "kicked")
    async with delivering(world, registry) as delivery:
        first, *queued = await asyncio.gather(
            *(delivery.send_message(chat, f"#{i}", source="test") for i in range(3))
        )
        calls = len(await ctl.calls(chat_id=chat))
        later = await delivery.send_message(chat, "again", source="test")

    assert not first.ok and first.error is not None and "kicked" in first.error
    assert all(not r.ok and r.attempts == 0 for r in queued), "queued ones failed without a call"
    assert registry.groups[chat].status is GroupStatus.KICKED
    assert (later.ok, later.attempts) == (False, 0)
    assert later.error == "not sent: the bot is no longer in this group (kicked)"
    assert len(await ctl.calls(chat_id=chat)) == calls == 1


async def test_migrated_group_gets_the_message_at_its_new_id(
    world: World, registry: Registry
) -> None:
    ctl, _ = world
    old = await group(ctl, registry, kind="group")
    new = int((await ctl.migrate(old))["new_chat_id"])
    async with delivering(world, registry, per_chat_second=50) as delivery:
        result = await delivery.send_message(old, "Live at 8!", source="test")
        again = await delivery.send_message(old, "Starting now", source="test")
        rows = await records(delivery)

    assert (result.ok, result.chat_id, result.attempts) == (True, new, 2)
    assert (again.ok, again.chat_id, again.attempts) == (True, new, 1), "no second detour"
    assert [m["text"] for m in await ctl.sent(new)] == ["Live at 8!", "Starting now"]
    assert registry.groups[old].status is GroupStatus.MIGRATED
    assert registry.groups[new].status is GroupStatus.ACTIVE
    assert [(r["requested_chat_id"], r["chat_id"]) for r in rows] == [(old, new), (old, new)]


async def test_private_chat_with_someone_who_never_started_the_bot(
    world: World, registry: Registry
) -> None:
    ctl, _ = world
    stranger = await member(ctl, "Stranger", started=False)
    async with delivering(world, registry) as delivery:
        result = await delivery.send_message(stranger, "Your points", source="test")
    assert not result.ok
    assert result.error is not None
    assert result.error.startswith("the user has not started the bot or has blocked it")
    assert registry.groups == {}, "nothing is marked"


async def test_every_delivery_is_recorded(world: World, registry: Registry) -> None:
    ctl, _ = world
    chat = await group(ctl, registry)
    stranger = await member(ctl, "Stranger", started=False)
    async with delivering(world, registry) as delivery:
        sent = await delivery.send_message(chat, "Tip of the day", source="sop:tips:run:42")
        await delivery.send_message(stranger, "Hi", source="sop:welcome:run:7")
        rows = await records(delivery)

    assert [
        (r["method"], r["source"], r["status"], r["chat_id"], r["message_id"], r["attempts"])
        for r in rows
    ] == [
        ("sendMessage", "sop:tips:run:42", "sent", chat, sent.message_id, 1),
        ("sendMessage", "sop:welcome:run:7", "failed", stranger, None, 1),
    ]
    assert rows[0]["error"] is None and rows[1]["error"].startswith("the user has not started")
    assert rows[0]["queued_at"] <= rows[0]["sent_at"]
    assert rows[1]["sent_at"] is None


async def test_one_busy_group_does_not_hold_up_another(world: World, registry: Registry) -> None:
    ctl, _ = world
    busy = await group(ctl, registry, "Busy")
    quiet = await group(ctl, registry, "Quiet")
    limits = {"per_second": 100, "per_chat_second": 1000, "per_group_minute": 1000}
    async with delivering(world, registry, **limits) as delivery:
        await asyncio.gather(
            *(delivery.send_message(busy, f"#{i}", source="test") for i in range(40)),
            delivery.send_message(quiet, "Hello", source="test"),
        )
    order = [int(c["params"]["chat_id"]) for c in await ctl.calls(method="sendMessage")]
    assert len(order) == 41
    assert order.index(quiet) <= 2, "the quiet group's message went out in its turn"


async def test_photos_edits_pins_and_deletes(world: World, registry: Registry) -> None:
    ctl, _ = world
    chat = await group(ctl, registry)
    await ctl.set_bot_status(chat, "administrator", rights={"can_pin_messages": True})
    async with delivering(world, registry, per_chat_second=50) as delivery:
        photo = await delivery.send_photo(chat, "AgACPhoto", caption="Prize", source="test")
        assert photo.ok and photo.message_id is not None
        edited = await delivery.edit_text(chat, photo.message_id, "x", source="test")
        notice = await delivery.send_message(chat, "Draw at 8", source="test")
        assert notice.message_id is not None
        pinned = await delivery.pin(chat, notice.message_id, source="test")
        unpinned = await delivery.unpin(chat, notice.message_id, source="test")
        deleted = await delivery.delete(chat, photo.message_id, source="test")
        methods = [(r["method"], r["status"]) for r in await records(delivery)]

    assert not edited.ok and edited.error is not None, "a photo has no text to edit"
    assert (pinned.ok, unpinned.ok, deleted.ok) == (True, True, True)
    assert methods == [
        ("sendPhoto", "sent"),
        ("editMessageText", "failed"),
        ("sendMessage", "sent"),
        ("pinChatMessage", "sent"),
        ("unpinChatMessage", "sent"),
        ("deleteMessage", "sent"),
    ]


async def test_close_waits_then_records_what_could_not_be_sent(
    world: World, registry: Registry
) -> None:
    ctl, _ = world
    chat = await group(ctl, registry)
    await ctl.add_fault("sendMessage", 429, "Too Many Requests: retry after 30", retry_after=30)
    delivery = Delivery(world[1], registry, registry.engine)
    delivery.start()
    waiting = asyncio.create_task(delivery.send_message(chat, "Later", source="test"))
    await asyncio.sleep(0.2)
    await delivery.close(grace=0.2)
    result: Delivered = await waiting
    refused = await delivery.send_message(chat, "After", source="test")

    assert (result.ok, result.error) == (False, "not sent: the bot stopped first")
    assert (refused.ok, refused.error) == (False, "not sent: the bot is stopping")
    async with registry.engine.connect() as conn:
        statuses = (await conn.execute(select(DELIVERIES.c.status))).scalars().all()
    assert statuses == ["failed"], "recorded on close"
    assert await ctl.sent(chat) == []


def counted(text: str) -> int:
    """Length as Telegram limits it, for texts without markup: UTF-16 units."""
    return len(text.encode("utf-16-le")) // 2


def lines(sent: list[dict[str, Any]]) -> list[str]:
    return [line for message in sent for line in message["text"].split("\n")]


async def test_a_burst_of_replies_shares_messages_within_every_limit(
    world: World, registry: Registry, monkeypatch: pytest.MonkeyPatch
) -> None:
    ctl, _ = world
    clock = fast_clock(monkeypatch)
    await ctl.set_rate_limits(True)
    chat = await group(ctl, registry)
    # Long enough that the replies need more messages than the group may get in a minute.
    texts = [f"Member {i} ✅ +10 points, #{i} today " + "·" * (i % 9 * 250) for i in range(100)]
    async with delivering(world, registry, per_group_minute=20, clock=clock) as delivery:
        results = await asyncio.gather(
            *(
                delivery.send_message(chat, text, source=f"sop:checkin:run:{i}", combine="checkin")
                for i, text in enumerate(texts)
            )
        )
        rows = await records(delivery)

    assert all(r.ok and r.attempts == 1 for r in results), [r.error for r in results]
    calls = await ctl.calls(method="sendMessage")
    assert [c for c in calls if c.get("error_code") == 429] == []
    sent = await ctl.sent(chat)
    assert 20 < len(sent) == len(calls) < 40, "far fewer messages than replies"
    assert lines(sent) == texts, "every reply exactly once, in the order asked"
    assert max(counted(m["text"]) for m in sent) <= 4096
    carried_by = {line: m["message_id"] for m in sent for line in m["text"].split("\n")}
    size = {m["message_id"]: len(m["text"].split("\n")) for m in sent}
    assert [(r.message_id, r.combined) for r in results] == [
        (carried_by[text], size[carried_by[text]]) for text in texts
    ]
    assert [(r["source"], r["message_id"]) for r in rows] == [
        (f"sop:checkin:run:{i}", carried_by[text]) for i, text in enumerate(texts)
    ], "one record per reply"
    first_sent: dict[int, datetime] = {}
    for row in rows:
        first_sent.setdefault(row["message_id"], row["sent_at"])
    times = sorted(first_sent.values())
    gaps = [(times[i + 20] - times[i]).total_seconds() for i in range(len(times) - 20)]
    assert min(gaps) >= 60 / SPEED, "no more than 20 messages in any (scaled) minute"


async def test_a_lone_reply_goes_as_asked(world: World, registry: Registry) -> None:
    ctl, _ = world
    chat = await group(ctl, registry)
    async with delivering(world, registry, per_chat_second=50) as delivery:
        question = await delivery.send_message(chat, "Check in below", source="test")
        reply = await delivery.send_message(
            chat,
            "<b>Ann</b> ✅ +10 points",
            source="test",
            combine="checkin",
            reply_to_message_id=question.message_id,
        )

    assert (reply.ok, reply.combined) == (True, 1)
    assert [(m["text"], m["reply_to_message_id"]) for m in await ctl.sent(chat)] == [
        ("Check in below", None),
        ("<b>Ann</b> ✅ +10 points", question.message_id),
    ]


async def test_only_replies_alike_share_a_message(world: World, registry: Registry) -> None:
    ctl, _ = world
    chat = await group(ctl, registry)

    def buttons(label: str) -> InlineKeyboardMarkup:
        button = InlineKeyboardButton(text=label, callback_data=label)
        return InlineKeyboardMarkup(inline_keyboard=[[button]])

    asked = [
        ("Ann checked in", "checkin", None),
        ("Ann +10 points", "points", None),
        ("Bob checked in", "checkin", None),
        ("Cy checked in", "checkin", buttons("Me too")),
        ("Dee checked in", "checkin", None),
        ("Eve checked in", "checkin", buttons("Me too")),
        ("Fay checked in", "checkin", buttons("Not me")),
    ]
    async with delivering(world, registry, per_chat_second=10) as delivery:
        results = await asyncio.gather(
            delivery.send_message(chat, "Good morning!", source="test"),
            *(
                delivery.send_message(chat, text, source="test", combine=key, reply_markup=markup)
                for text, key, markup in asked
            ),
        )

    sent = await ctl.sent(chat)
    assert [m["text"] for m in sent] == [
        "Good morning!",
        "Ann checked in\nBob checked in\nDee checked in",
        "Ann +10 points",
        "Cy checked in\nEve checked in",
        "Fay checked in",
    ]
    assert [m["reply_markup"] is not None for m in sent] == [False, False, False, True, True]
    ids = [m["message_id"] for m in sent]
    assert [(r.message_id, r.combined) for r in results] == [
        (ids[0], 1),
        (ids[1], 3),
        (ids[2], 1),
        (ids[1], 3),
        (ids[3], 2),
        (ids[1], 3),
        (ids[3], 2),
        (ids[4], 1),
    ]


async def test_a_reply_nobody_waits_for_is_left_out(world: World, registry: Registry) -> None:
    ctl, _ = world
    chat = await group(ctl, registry)
    async with delivering(world, registry, per_chat_second=10) as delivery:
        first = asyncio.create_task(delivery.send_message(chat, "Good morning!", source="test"))
        replies = [
            asyncio.create_task(
                delivery.send_message(chat, f"Member {i} ✅", source=f"run:{i}", combine="checkin")
            )
            for i in range(4)
        ]
        await asyncio.sleep(0)  # all queued behind the first message
        replies[0].cancel()
        replies[2].cancel()
        await first
        kept = await asyncio.gather(replies[1], replies[3])
        rows = await records(delivery)

    assert replies[0].cancelled() and replies[2].cancelled()
    sent = await ctl.sent(chat)
    assert [m["text"] for m in sent] == ["Good morning!", "Member 1 ✅\nMember 3 ✅"]
    assert [(r.ok, r.message_id, r.combined) for r in kept] == [
        (True, sent[1]["message_id"], 2)
    ] * 2
    assert [r["source"] for r in rows] == ["test", "run:1", "run:3"]


async def test_a_shared_message_is_retried_as_one(world: World, registry: Registry) -> None:
    ctl, _ = world
    chat = await group(ctl, registry)
    async with delivering(world, registry) as delivery:
        await delivery.send_message(chat, "Good morning!", source="test")
        await ctl.add_fault("sendMessage", 429, "Too Many Requests: retry after 1", retry_after=1)
        results = await asyncio.gather(
            *(
                delivery.send_message(chat, f"Member {i} ✅", source="test", combine="checkin")
                for i in range(3)
            )
        )
        rows = await records(delivery)

    sent = await ctl.sent(chat)
    assert [m["text"] for m in sent] == ["Good morning!", "Member 0 ✅\nMember 1 ✅\nMember 2 ✅"]
    assert set(results) == {Delivered(True, sent[1]["message_id"], chat, attempts=2, combined=3)}
    assert [(r["message_id"], r["attempts"]) for r in rows[1:]] == [(sent[1]["message_id"], 2)] * 3


async def test_a_shared_message_awaits_the_before_of_every_text_it_carries(
    world: World, registry: Registry
) -> None:
    ctl, _ = world
    chat = await group(ctl, registry)
    asked: list[int] = []
    sent_when_asked: list[int] = []
    on_the_wire: list[int] = []

    def noting(i: int) -> Before:
        async def before() -> Asking:  # the push queue marks its push `sending` here
            asked.append(i)
            sent_when_asked.append(len(await ctl.sent(chat)))
            return lambda: on_the_wire.append(i)  # and notes it here, as Telegram is asked

        return before

    async with delivering(world, registry) as delivery:
        results = await asyncio.gather(
            *(
                delivery.send_message(
                    chat, f"reply {i}", source="sop:x", combine="x", before=noting(i)
                )
                for i in range(10)
            )
        )
    sent = await ctl.sent(chat)
    assert all(r.ok for r in results)
    assert len(sent) < 10, "the replies share messages"
    assert lines(sent) == [f"reply {i}" for i in range(10)]
    assert sorted(asked) == list(range(10)), "each text's before, once"
    carried = {r.message_id for r in results}
    assert len(carried) == len(sent)
    assert max(sent_when_asked) < len(sent), "every before ran before its message went"
    assert sorted(on_the_wire) == list(range(10)), "each text noted once, as its message went"
