"""Who may see what in the console: owners every group, a group's admins that group.

"Admin" is what Telegram says now: at sign-in the bot asks Telegram (getChatMember) about each
active group it knows the person in, and asks again once `RECHECK` has passed, so an admin who
was demoted loses the group within ten minutes. Anyone who is neither an owner nor an admin of
any group is refused.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import timedelta

from aiogram import Bot
from aiogram.exceptions import TelegramAPIError
from loguru import logger
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.db import GROUPS, MEMBERS, GroupStatus

RECHECK = timedelta(minutes=10)
ADMIN_STATUSES = frozenset({"administrator", "creator"})
ASKING_AT_ONCE = 8


@dataclass(frozen=True)
class Viewer:
    """The person behind a request: an owner (sees every group) or an admin of `groups`."""

    user_id: int
    name: str
    groups: frozenset[int] | None  # None: an owner
    session_id: str | None = None  # None: an API token
    csrf: str = ""

    @property
    def owner(self) -> bool:
        return self.groups is None

    def sees(self, chat_id: int) -> bool:
        return self.groups is None or chat_id in self.groups


class Access:
    """Asks Telegram which groups a person administers; knows the owners."""

    def __init__(self, db: AsyncEngine, bot: Bot, owner_ids: list[int]) -> None:
        self.db = db
        self.bot = bot
        self.owner_ids = frozenset(owner_ids)

    async def groups_of(self, user_id: int) -> frozenset[int] | None:
        """None for an owner; else the active groups where Telegram says the person is an admin."""
        if user_id in self.owner_ids:
            return None
        async with self.db.connect() as conn:
            candidates = (
                await conn.scalars(
                    select(MEMBERS.c.chat_id)
                    .join(GROUPS, GROUPS.c.id == MEMBERS.c.chat_id)
                    .where(MEMBERS.c.user_id == user_id, GROUPS.c.status == GroupStatus.ACTIVE)
                )
            ).all()
        asking = asyncio.Semaphore(ASKING_AT_ONCE)

        async def admin_in(chat_id: int) -> bool:
            async with asking:
                try:
                    member = await self.bot.get_chat_member(chat_id, user_id)
                except TelegramAPIError as exc:
                    logger.bind(chat_id=chat_id).warning(
                        "console: cannot ask whether {} is an admin: {}", user_id, exc
                    )
                    return False
            return str(getattr(member.status, "value", member.status)) in ADMIN_STATUSES

        found = await asyncio.gather(*(admin_in(int(chat_id)) for chat_id in candidates))
        return frozenset(int(c) for c, admin in zip(candidates, found, strict=True) if admin)

    async def name_of(self, user_id: int) -> str:
        """How the console greets the person: their name as the groups know it."""
        async with self.db.connect() as conn:
            row = (
                await conn.execute(
                    select(MEMBERS.c.first_name, MEMBERS.c.last_name, MEMBERS.c.username)
                    .where(MEMBERS.c.user_id == user_id)
                    .limit(1)
                )
            ).first()
        if row is not None:
            first, last, username = row.first_name, row.last_name, row.username
        else:  # in no group the bot knows: their private chat with the bot says
            try:
                chat = await self.bot.get_chat(user_id)
            except TelegramAPIError:
                return str(user_id)
            first, last, username = chat.first_name, chat.last_name, chat.username
        name = " ".join(part for part in (first, last) if part)
        return name or (f"@{username}" if username else str(user_id))
