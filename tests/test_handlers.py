"""Handlers' gates and replies: group-only and admin-only commands, and the group's language."""

from __future__ import annotations

import itertools
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest
from aiogram import Bot, Dispatcher
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.telegram import TelegramAPIServer
from aiogram.dispatcher.event.bases import UNHANDLED
from aiogram.dispatcher.event.handler import FilterObject
from aiogram.filters import Command
from aiogram.types import Chat, Message, Update
from sqlalchemy import select

from bot.admins import Admins
from bot.db import POINTS, GroupStatus
from bot.delivery import Delivery
from bot.emulator import EmulatorClient, EmulatorServer
from bot.handlers import points
from bot.handlers.filters import AdminsOnly, InGroup
from bot.handlers.sops import Say
from bot.points import Ledger
from bot.push import broadcasts
from bot.registry import Registry
from bot.texts import Texts
from tests.conftest import ROOT, at
from tests.updates import user

TOKEN = "123456:TEST-token"
OWNER = 7


async def test_the_registry_answers_a_groups_language_and_title(registry: Registry) -> None:
    chat = Chat(id=-1001, type="supergroup", title="Readers")
    assert registry.language(chat.id, "en") == "en"
    assert registry.language(chat.id, None) is None
    assert registry.title(chat.id) == "-1001"
    await registry.save_group(chat, status=GroupStatus.ACTIVE, language="zh")
    assert registry.language(chat.id, "en") == "zh"
    assert registry.title(chat.id) == "Readers"
    await registry.save_group(Chat(id=-1002, type="supergroup"))  # no title: its id
    assert registry.title(-1002) == "-1002"


@dataclass
class Stage:
    """The emulator, a bot talking to it, and a dispatcher with the handlers under test."""

    ctl: EmulatorClient
    bot: Bot
    registry: Registry
    dispatcher: Dispatcher
    updates: itertools.count[int]

    async def group(self, language: str | None) -> tuple[int, int, int]:
        """A group in `language` with an admin and a member (@alice): their ids."""
        chat = await self.ctl.create_chat("Readers")
        owner = await self.ctl.create_user("Olga")
        await self.ctl.set_member(chat["id"], owner["id"], "creator")
        await self.ctl.set_bot_status(chat["id"], "administrator", by=owner["id"])
        admin = (await self.ctl.create_user("Ada"))["id"]
        await self.ctl.set_member(chat["id"], admin, "administrator")
        alice = (await self.ctl.create_user("Alice", username="alice"))["id"]
        await self.ctl.set_member(chat["id"], alice)
        group = Chat(id=chat["id"], type="supergroup", title="Readers")
        await self.registry.save_group(group, status=GroupStatus.ACTIVE, language=language)
        member = user(alice, "Alice").model_copy(update={"username": "alice"})
        await self.registry.member_joined(group.id, member, at(0), source="chat_member")
        return group.id, admin, alice

    async def send(self, chat_id: int, user_id: int, text: str) -> Any:
        """`user_id` writes `text` in the chat; what the dispatcher's handling returns."""
        sent = await self.ctl.send_message(chat_id, user_id, text)
        message = Message.model_validate(sent["message"])
        update = Update(update_id=next(self.updates), message=message)
        return await self.dispatcher.feed_update(self.bot, update)

    async def said(self, chat_id: int) -> list[str]:
        return [str(message.get("text", "")) for message in await self.ctl.sent(chat_id)]


@pytest.fixture
async def stage(registry: Registry) -> AsyncIterator[Stage]:
    async with EmulatorServer(token=TOKEN) as server:
        api = TelegramAPIServer.from_base(server.base_url)
        bot = Bot(TOKEN, session=AiohttpSession(api=api))
        delivery = Delivery(bot, registry, registry.engine)
        delivery.start()
        texts = Texts.load(ROOT / "content", "en")
        dispatcher = Dispatcher(
            registry=registry,
            say=Say(delivery, texts, registry),
            admins=Admins(bot, [OWNER]),
            ledger=Ledger(registry.engine),
        )
        points.register(dispatcher)
        yield Stage(server.client, bot, registry, dispatcher, itertools.count(1))
        await delivery.close()
        await bot.session.close()


async def test_points_are_for_admins_and_answered_in_the_groups_language(stage: Stage) -> None:
    chat_id, admin, alice = await stage.group("zh")
    await stage.send(chat_id, alice, "/points @alice +1000")
    assert await stage.said(chat_id) == ["只有本群管理员可以这样做。"]
    await stage.send(chat_id, admin, "/points @alice +5")
    assert (await stage.said(chat_id))[-1] == "@alice：+5 积分（管理员调整）。当前积分：5。"
    async with stage.registry.engine.connect() as conn:
        ledger = (await conn.execute(select(POINTS.c.delta, POINTS.c.reason))).all()
    assert ledger == [(5, "管理员调整")], "the reason is stored as the group was told it"


async def test_a_group_command_elsewhere_gets_no_answer(stage: Stage) -> None:
    await stage.ctl.create_user("Owen", id=OWNER)
    await stage.ctl.start(OWNER)
    assert await stage.send(OWNER, OWNER, "/points @alice +5") is UNHANDLED
    assert await stage.said(OWNER) == []


class Recorded:
    """Stands in for `Say` and `Admins` in the filters: who is an admin, and what was said."""

    def __init__(self, admins: set[int]) -> None:
        self.admins = admins
        self.said: list[str] = []

    async def __call__(self, message: Message, *replies: tuple[str, dict[str, Any]]) -> None:
        self.said.extend(key for key, _ in replies)

    async def may_command(self, message: Message) -> bool:
        return message.from_user is not None and message.from_user.id in self.admins


async def passes(message: Message, *gates: Any, recorded: Recorded) -> bool:
    """Whether `message` gets past `Command(...)` and the gates, as a dispatcher checks them."""
    data: dict[str, Any] = {"bot": None, "say": recorded, "admins": recorded}
    for gate in (Command("orders", "rewards", "lives", "live"), *gates):
        passed = await FilterObject(gate).call(message, **data)
        if not passed:
            return False
        if isinstance(passed, dict):
            data.update(passed)
    return True


def message(text: str, *, chat: Chat, sender: int) -> Message:
    return Message(message_id=1, date=at(0), chat=chat, from_user=user(sender), text=text)


async def test_gates_answer_what_they_turn_away() -> None:
    group = Chat(id=-1001, type="supergroup", title="Readers")
    private = Chat(id=5, type="private", first_name="Bo")
    recorded = Recorded(admins={1})
    where = InGroup(otherwise={"orders": "orders.in_groups_only"})
    for_admins = AdminsOnly("orders", "live")

    assert not await passes(message("/orders", chat=private, sender=5), where, recorded=recorded)
    assert not await passes(message("/rewards", chat=private, sender=5), where, recorded=recorded)
    assert recorded.said == ["orders.in_groups_only"], "a command without a key: no answer"

    recorded.said.clear()
    gates = (where, for_admins)
    assert await passes(message("/rewards", chat=group, sender=5), *gates, recorded=recorded)
    assert await passes(message("/lives", chat=group, sender=5), *gates, recorded=recorded)
    assert not await passes(message("/live", chat=group, sender=5), *gates, recorded=recorded)
    assert await passes(message("/orders", chat=group, sender=1), *gates, recorded=recorded)
    assert recorded.said == ["sop.admins_only"]

    recorded.said.clear()
    reload = InGroup(private=("rewards",))
    assert await passes(message("/rewards", chat=private, sender=5), reload, recorded=recorded)
    assert not await passes(message("/orders", chat=private, sender=5), reload, recorded=recorded)
    assert recorded.said == []


def test_every_text_key_the_handlers_name_is_in_both_languages() -> None:
    texts = Texts.load(ROOT / "content")
    sections = {key.split(".")[0] for key in texts.catalogues["en"]}
    sources = [*(ROOT / "bot" / "handlers").glob("*.py"), ROOT / "bot" / "push" / "broadcasts.py"]
    named = {
        key
        for source in sources
        for key in re.findall(r'"((?:[a-z_]+\.)+[a-z_]+)"', source.read_text(encoding="utf-8"))
        if key.split(".")[0] in sections and key != "stats.png"
    }
    named |= {broadcasts.reason(None)[0], broadcasts.reason("Telegram's own words")[0]}
    named |= {f"broadcasting.notes.{name}" for _, name in broadcasts._NOTES}
    assert {"points.default_reason", "broadcasting.errors.no_target", "sop.admins_only"} <= named
    for language in ("zh", "en"):
        assert named <= set(texts.catalogues[language]), named - set(texts.catalogues[language])
