"""Middlewares that put every group message and button press into the activity log."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from aiogram import BaseMiddleware
from aiogram.types import CallbackQuery, Message, TelegramObject

from bot.activity import ActivityLog
from bot.db import utcnow
from bot.handlers.filters import GROUP_TYPES
from bot.handlers.membership import membership_service_message
from bot.registry import Registry

MEMBERSHIP_CONTENT = frozenset(
    {
        "new_chat_members",
        "left_chat_member",
        "migrate_to_chat_id",
        "migrate_from_chat_id",
        "new_chat_title",
    }
)
Handler = Callable[[TelegramObject, dict[str, Any]], Awaitable[Any]]


class RecordMessages(BaseMiddleware):
    """Outer middleware on messages: the gateway every group message passes first.

    A member's message goes into the activity log; a service message about membership
    (joins, leaves, migration, title) goes to the registry. Then handlers run as usual.
    """

    def __init__(self, registry: Registry, activity: ActivityLog, bot_id: int) -> None:
        self.registry = registry
        self.activity = activity
        self.bot_id = bot_id

    async def __call__(self, handler: Handler, event: TelegramObject, data: dict[str, Any]) -> Any:
        assert isinstance(event, Message)
        chat = event.chat
        if chat.type in GROUP_TYPES:
            if not self.registry.is_active(chat.id):
                await self.registry.group_seen(chat)
            if event.content_type in MEMBERSHIP_CONTENT:
                await membership_service_message(event, self.registry, self.bot_id)
            else:
                self.activity.message(event)
        return await handler(event, data)


class RecordPresses(BaseMiddleware):
    """Outer middleware on callback queries: log button presses on group messages."""

    def __init__(self, activity: ActivityLog) -> None:
        self.activity = activity

    async def __call__(self, handler: Handler, event: TelegramObject, data: dict[str, Any]) -> Any:
        assert isinstance(event, CallbackQuery)
        message = event.message
        if message is not None and message.chat.type in GROUP_TYPES:
            self.activity.callback(event, utcnow())
        return await handler(event, data)
