"""Handlers' gates and replies: group-only and admin-only commands, and the group's language."""

from __future__ import annotations

from aiogram.types import Chat

from bot.db import GroupStatus
from bot.registry import Registry


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
