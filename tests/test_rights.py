"""The rights check: what is missing, said once, again after a re-add, and 429s waited out."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from aiogram import Bot
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.telegram import TelegramAPIServer
from aiogram.types import Chat

from bot.db import GroupStatus
from bot.delivery import Delivery
from bot.emulator import EmulatorClient, EmulatorServer
from bot.registry import Registry
from bot.rights import RightsCheck, missing_rights
from bot.texts import Texts
from tests.conftest import ROOT

TOKEN = "123456:TEST-token"


@pytest.fixture
async def world() -> AsyncIterator[tuple[EmulatorClient, Bot]]:
    async with EmulatorServer(token=TOKEN) as server:
        bot = Bot(TOKEN, session=AiohttpSession(api=TelegramAPIServer.from_base(server.base_url)))
        yield server.client, bot
        await bot.session.close()


@pytest.fixture
async def delivery(
    world: tuple[EmulatorClient, Bot], registry: Registry
) -> AsyncIterator[Delivery]:
    delivery = Delivery(world[1], registry, registry.engine)
    delivery.start()
    yield delivery
    await delivery.close()


async def group(ctl: EmulatorClient, status: str, **rights: bool) -> Chat:
    owner = await ctl.create_user("Olga")
    chat = await ctl.create_chat("Shop fans")
    await ctl.set_member(chat["id"], owner["id"], "creator")
    await ctl.set_bot_status(chat["id"], status, rights=rights or None)  # type: ignore[arg-type]
    return Chat(id=chat["id"], type="supergroup", title="Shop fans")


async def test_missing_rights_of_an_admin(world: tuple[EmulatorClient, Bot]) -> None:
    ctl, bot = world
    chat = await group(ctl, "administrator", can_pin_messages=False)
    member = await bot.get_chat_member(chat.id, bot.id)
    assert missing_rights(member) == ["can_pin_messages"]


async def test_notice_once_and_again_after_readding(
    world: tuple[EmulatorClient, Bot], registry: Registry, delivery: Delivery
) -> None:
    ctl, bot = world
    rights = RightsCheck(
        delivery.bot, delivery, registry, Texts.load(ROOT / "content", "en"), [], registry.bus
    )
    chat = await group(ctl, "member")
    await registry.save_group(chat, status=GroupStatus.ACTIVE)
    await ctl.add_fault("sendMessage", 429, "Too Many Requests: retry after 1", retry_after=1)
    member = await bot.get_chat_member(chat.id, bot.id)

    assert await rights.review(chat, member) == ["administrator"]
    assert await rights.review(chat, member) == ["administrator"]
    [notice] = await ctl.sent(chat.id)
    assert "be an administrator" in notice["text"], "sent after waiting out the 429"

    await registry.save_group(chat, status=GroupStatus.KICKED, missing_rights=[])
    await registry.save_group(chat, status=GroupStatus.ACTIVE)
    await rights.review(chat, member)
    assert len(await ctl.sent(chat.id)) == 2


async def test_review_all_marks_groups_the_bot_was_removed_from(
    world: tuple[EmulatorClient, Bot], registry: Registry, delivery: Delivery
) -> None:
    ctl, _ = world
    rights = RightsCheck(
        delivery.bot, delivery, registry, Texts.load(ROOT / "content", "zh"), [], registry.bus
    )
    kept = await group(ctl, "administrator")
    gone = await group(ctl, "administrator")
    await ctl.set_bot_status(gone.id, "kicked")
    for chat in (kept, gone, Chat(id=-100999, type="supergroup", title="deleted")):
        await registry.save_group(chat, status=GroupStatus.ACTIVE)
    await rights.review_all()
    assert registry.groups[kept.id].status is GroupStatus.ACTIVE
    assert registry.groups[kept.id].bot_status == "administrator"
    assert registry.groups[gone.id].status is GroupStatus.KICKED
    assert registry.groups[-100999].status is GroupStatus.LEFT
    assert await ctl.sent(kept.id) == []
