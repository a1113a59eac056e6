"""Who may use admin commands in a group: its admins (from Telegram, cached briefly) and owners."""

from __future__ import annotations

import time
from collections.abc import Callable

from aiogram import Bot
from aiogram.exceptions import TelegramAPIError
from aiogram.types import Message
from loguru import logger

CACHE_SECONDS = 60.0


class Admins:
    """Answers "is this user an admin here?", asking Telegram at most once a minute per group.

    `OWNER_IDS` are admins everywhere. A message sent on behalf of the group itself comes from
    an anonymous admin (Telegram hides who), so it counts as an admin's.
    """

    def __init__(
        self,
        bot: Bot,
        owner_ids: list[int],
        *,
        ttl: float = CACHE_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.bot = bot
        self.owner_ids = frozenset(owner_ids)
        self.ttl = ttl
        self.clock = clock
        self._cache: dict[int, tuple[float, frozenset[int]]] = {}
        self._bots: dict[int, frozenset[int]] = {}  # bots among each group's admins

    async def is_admin(self, chat_id: int, user_id: int) -> bool:
        if user_id in self.owner_ids:
            return True
        return user_id in await self.admins_of(chat_id)

    async def may_command(self, message: Message) -> bool:
        """The sender of `message` may use admin commands in its chat."""
        chat = message.chat
        if message.sender_chat is not None:
            return message.sender_chat.id == chat.id  # an anonymous admin
        user = message.from_user
        if user is None:
            return False
        if chat.type == "private":
            return user.id in self.owner_ids
        return await self.is_admin(chat.id, user.id)

    async def admins_of(self, chat_id: int) -> frozenset[int]:
        now = self.clock()
        cached = self._cache.get(chat_id)
        if cached is not None and now - cached[0] < self.ttl:
            return cached[1]
        try:
            members = await self.bot.get_chat_administrators(chat_id)
        except TelegramAPIError as exc:
            logger.bind(chat_id=chat_id).warning("cannot list the group's admins: {}", exc)
            return cached[1] if cached is not None else frozenset()
        admins = frozenset(member.user.id for member in members)
        self._cache[chat_id] = (now, admins)
        self._bots[chat_id] = frozenset(member.user.id for member in members if member.user.is_bot)
        return admins

    async def people_of(self, chat_id: int) -> list[int]:
        """The group's admins who are people, not bots: whom to tell of something privately."""
        admins = await self.admins_of(chat_id)
        return sorted(admins - self._bots.get(chat_id, frozenset()))

    def forget(self, chat_id: int) -> None:
        """The group's admins changed (a promotion or demotion was seen): ask again next time."""
        self._cache.pop(chat_id, None)
