"""Handlers' gates and replies: group-only and admin-only commands, and the group's language."""

from __future__ import annotations

from typing import Any

from aiogram.dispatcher.event.handler import FilterObject
from aiogram.filters import Command
from aiogram.types import Chat, Message

from bot.db import GroupStatus
from bot.handlers.filters import AdminsOnly, InGroup
from bot.registry import Registry
from tests.conftest import at
from tests.updates import user


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
