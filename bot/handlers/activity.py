"""Middlewares that put every group message and button press into the activity log.

A member's message is also shown to the SOP engine when something waits for it (a flow waiting
for the member's reply, a keyword or command trigger): a cheap check on the hot path.

Handlers see a group's commands (messages starting with "/") and nothing else of its chatter:
a plain message ends with the activity log and the SOP engine, which is where keywords trigger
things. Most group traffic is plain messages, so the gateway sits on the update itself, right
after aiogram's error and user-context middlewares: a plain message never reaches the routing
of updates to messages, whose middleware chains aiogram builds anew for every event and which
cost more than the activity log itself.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from aiogram import BaseMiddleware, Dispatcher
from aiogram.dispatcher.event.bases import UNHANDLED
from aiogram.filters import Command
from aiogram.types import CallbackQuery, TelegramObject, Update

from bot.activity import ActivityLog
from bot.db import utcnow
from bot.handlers.filters import GROUP_TYPES
from bot.handlers.membership import membership_service_message
from bot.moderation.screening import Screening
from bot.registry import Registry
from bot.sop.engine import Engine

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
    """Outer middleware on updates: the gateway every group message passes first.

    A member's message goes into the activity log and, when wanted, to the SOP engine; a service
    message about membership (joins, leaves, migration, title) goes to the registry. Commands,
    every message outside groups and every other kind of update then go on to the handlers.
    """

    def __init__(
        self,
        registry: Registry,
        activity: ActivityLog,
        bot_id: int,
        engine: Engine | None = None,
        screening: Screening | None = None,
        bot_username: str = "",
        commands: frozenset[str] | None = None,
    ) -> None:
        self.registry = registry
        self.activity = activity
        self.bot_id = bot_id
        self.engine = engine
        self.screening = screening  # newcomers' first messages, and their edits, are checked
        self.bot_username = bot_username
        # The commands some handler takes (`handled_commands`); None: hand every one on. A
        # group's other commands (an SOP's /checkin) end here: each would otherwise pass every
        # handler's Command filter, which costs more than the bare dispatcher's whole update.
        self.commands = commands

    async def __call__(self, handler: Handler, update: TelegramObject, data: dict[str, Any]) -> Any:
        assert isinstance(update, Update)
        event = update.message
        if event is None:
            edited, screening = update.edited_message, self.screening
            if (
                edited is not None
                and edited.from_user is not None
                and screening is not None
                and screening.wants(edited.chat.id, edited.from_user.id)
            ):
                await screening.message(edited, edited=True)
            return await handler(update, data)
        chat = event.chat
        if chat.type in GROUP_TYPES:
            if not self.registry.is_active(chat.id):
                await self.registry.group_seen(chat)
            if event.content_type in MEMBERSHIP_CONTENT:
                await membership_service_message(event, self.registry, self.bot_id)
            else:
                self.activity.message(event)
                await self.activity.make_room()
                user = event.from_user
                screening = self.screening
                judgement = None  # what the checks found, for `message` triggers with `checks`
                if screening is not None and user is not None and screening.wants(chat.id, user.id):
                    judgement = await screening.message(event)
                engine = self.engine
                if (
                    engine is not None
                    and user is not None
                    and not user.is_bot
                    and event.sender_chat is None
                    and engine.watches_messages(chat.id, user.id)
                ):
                    text = event.text if event.text is not None else event.caption
                    await engine.message(
                        chat.id,
                        user.id,
                        event.message_id,
                        text,
                        self.bot_username,
                        judgement=judgement,
                        sent_at=event.date,
                    )
                if not self._handled(event.text):
                    return UNHANDLED
        return await handler(update, data)

    def _handled(self, text: str | None) -> bool:
        """Whether a group message is a command that a handler may take."""
        if text is None or not text.startswith("/"):
            return False
        if self.commands is None:
            return True
        words = text[1:].split(maxsplit=1)
        return bool(words) and words[0].partition("@")[0].lower() in self.commands


def handled_commands(dispatcher: Dispatcher) -> frozenset[str] | None:
    """The commands (lower case) that the dispatcher's message handlers take, when each has a
    `Command` filter of plain names; None when one may take other messages."""
    names: set[str] = set()
    for handler in dispatcher.message.handlers:
        commands = [f.callback for f in handler.filters or () if isinstance(f.callback, Command)]
        if not commands:
            return None
        for command in commands:
            for name in command.commands:
                if not isinstance(name, str):  # a pattern: any command may match
                    return None
                names.add(name.lower())
    return frozenset(names)


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
