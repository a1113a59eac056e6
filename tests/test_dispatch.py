"""The assembled dispatcher and the poller: presses are logged, chats keep their order."""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from aiogram import Bot, Dispatcher
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.telegram import TelegramAPIServer
from aiogram.types import CallbackQuery, Chat, Message, Update
from sqlalchemy import select

from bot.app import ALWAYS_ALLOWED, allowed_updates
from bot.clock import ManualClock
from bot.db import EVENTS
from bot.emulator import EmulatorClient, EmulatorServer
from bot.factory import Tidepool, assemble
from bot.handlers.activity import RecordMessages as Record
from bot.handlers.activity import handled_commands
from bot.polling import Poller
from bot.settings import Settings
from tests.conftest import ROOT, at
from tests.updates import GROUP, group_message, user

TOKEN = "123456:TEST-token"
TYPED = ("message", "command")  # what a member wrote, in the activity log


@contextlib.asynccontextmanager
async def assembled(tmp_path: Path) -> AsyncIterator[tuple[Tidepool, EmulatorClient]]:
    """The application as `tidepool run` builds it, with Telegram played by the emulator."""
    settings = Settings(
        bot_token=TOKEN,
        database_url=f"sqlite+aiosqlite:///{tmp_path}/t.db",
        content_dir=ROOT / "content",
        sops_dir=ROOT / "sops",
    )
    async with EmulatorServer(token=TOKEN) as server:
        session = AiohttpSession(api=TelegramAPIServer.from_base(server.base_url))
        bot = Bot(TOKEN, session=session)
        try:
            me = await bot.me()
            async with assemble(settings, bot, ManualClock(at(0)), me) as app:
                yield app, server.client
        finally:
            await bot.session.close()


async def test_button_press_in_a_group_is_an_event(tmp_path: Path) -> None:
    async with assembled(tmp_path) as (app, _):
        assert set(ALWAYS_ALLOWED) <= set(allowed_updates(app.dispatcher))
        post = group_message(7, user(BOT := 123456, "Tidepool", is_bot=True), at(0))
        query = CallbackQuery(
            id="q1", from_user=user(11, "Alice"), chat_instance="ci", message=post, data="checkin"
        )
        await app.dispatcher.feed_update(app.bot, Update(update_id=1, callback_query=query))
        await app.activity.flush()
        async with app.db.connect() as conn:
            rows = (await conn.execute(select(EVENTS))).mappings().all()
        presses = [row for row in rows if row["type"] == "callback"]
        assert [(r["user_id"], r["message_id"], r["data"]) for r in presses] == [
            (11, 7, {"data": "checkin"})
        ]
        assert app.bot.id == BOT


async def test_commands_are_answered_while_group_chatter_is_only_logged(tmp_path: Path) -> None:
    async with assembled(tmp_path) as (app, ctl):
        await ctl.create_chat(GROUP.title or "", id=GROUP.id)
        await ctl.create_user("Alice", id=11)
        await ctl.join(GROUP.id, 11)
        await ctl.set_bot_status(GROUP.id, "administrator")
        alice = user(11, "Alice")
        private = Chat(id=11, type="private", first_name="Alice")
        messages = [
            group_message(1, alice, at(0), text="good morning"),
            group_message(2, alice, at(1), text="/top month"),
            group_message(3, alice, at(2), text=None, caption="/not a command"),
            group_message(4, alice, at(3), chat=private, text="hello bot"),
        ]
        for n, message in enumerate(messages, start=1):
            await app.dispatcher.feed_update(app.bot, Update(update_id=n, message=message))
        await app.activity.flush()
        async with app.db.connect() as conn:
            logged = (
                (await conn.execute(select(EVENTS.c.message_id).where(EVENTS.c.type.in_(TYPED))))
                .scalars()
                .all()
            )
        assert sorted(logged) == [1, 2, 3], "every group message is logged, commands too"
        replies = [
            call["params"].get("reply_parameters", {}).get("message_id")
            or call["params"].get("reply_to_message_id")
            for call in await ctl.calls(method="sendMessage")
            if int(call["params"]["chat_id"]) == GROUP.id
        ]
        assert replies == [2], "the command is answered; chatter and captions are not"


async def test_poller_keeps_each_chats_order_and_runs_chats_side_by_side() -> None:
    seen: dict[int, list[int]] = {}
    running: set[int] = set()
    overlapped = False
    dispatcher = Dispatcher()

    @dispatcher.message()
    async def slow(message: Message) -> None:
        nonlocal overlapped
        running.add(message.chat.id)
        overlapped = overlapped or len(running) > 1
        await asyncio.sleep(random.random() / 200)
        seen.setdefault(message.chat.id, []).append(message.message_id)
        running.discard(message.chat.id)

    bot = Bot(TOKEN)
    poller = Poller(bot, dispatcher, allowed_updates=["message"])
    other = GROUP.model_copy(update={"id": -1002})
    updates: list[Any] = []
    for n in range(1, 61):
        chat = GROUP if n % 3 else other
        updates.append(Update(update_id=n, message=group_message(n, user(11), at(0), chat=chat)))
    for update in updates:
        poller._submit(update)
    await poller._drain()
    assert seen[GROUP.id] == [n for n in range(1, 61) if n % 3]
    assert seen[other.id] == [n for n in range(1, 61) if not n % 3]
    assert overlapped, "different chats are handled concurrently"
    assert poller.handled == 60
    await bot.session.close()


async def test_lottery_presses_in_one_chat_run_side_by_side_but_each_member_in_order() -> None:
    log: list[tuple[str, int, int]] = []
    running = 0
    most = 0
    dispatcher = Dispatcher()

    @dispatcher.message()
    async def written(message: Message) -> None:
        await asyncio.sleep(0.02)
        log.append(("message", message.from_user.id if message.from_user else 0, 0))

    @dispatcher.callback_query()
    async def pressed(query: CallbackQuery) -> None:
        nonlocal running, most
        running += 1
        most = max(most, running)
        await asyncio.sleep(random.random() / 100)
        log.append(("press", query.from_user.id, int((query.data or "").rsplit(":", 1)[-1])))
        running -= 1

    bot = Bot(TOKEN)
    poller = Poller(bot, dispatcher, allowed_updates=["message", "callback_query"])
    post = group_message(1, user(11), at(0))
    poller._submit(Update(update_id=1, message=post))
    for n in range(2, 42):
        query = CallbackQuery(
            id=str(n),
            from_user=user(20 + n % 4),
            chat_instance="1",
            message=post,
            data=f"lottery:enter:{n}",
        )
        poller._submit(Update(update_id=n, callback_query=query))
    other = CallbackQuery(id="99", from_user=user(30), chat_instance="1", message=post, data="s:9")
    poller._submit(Update(update_id=99, callback_query=other))
    poller._submit(Update(update_id=100, message=group_message(100, user(12), at(1))))
    await poller._drain()
    assert log[0] == ("message", 11, 0), "presses wait for the chat's updates before them"
    for member in range(20, 24):
        mine = [data for kind, who, data in log if kind == "press" and who == member]
        assert mine == sorted(mine) and len(mine) == 10
    assert most > 1, "different members' presses overlap"
    order = [who for _, who, _ in log]
    assert order.index(30) < order.index(12), "other buttons keep the chat's order"
    await bot.session.close()


async def test_handlers_see_only_the_group_commands_they_take(tmp_path: Path) -> None:
    async with assembled(tmp_path) as (app, _):
        taken = handled_commands(app.dispatcher)
        assert taken is not None and {"top", "me", "sop_run", "stats"} <= taken
        assert "checkin" not in taken, "an SOP's command ends with the activity log and the SOPs"
        [record] = [m for m in app.dispatcher.update.outer_middleware if isinstance(m, Record)]
        assert record.commands == taken
        assert record._handled("/TOP@tidepool_bot week")
        assert (
            not record._handled("/checkin")
            and not record._handled("/")
            and not record._handled("hi")
        )


def test_a_handler_without_a_command_filter_sees_every_command() -> None:
    dispatcher = Dispatcher()

    @dispatcher.message()
    async def anything(message: Message) -> None:
        return None

    assert handled_commands(dispatcher) is None
