"""Checks that the bot has the admin rights it needs in a group, and tells the owners plainly."""

from __future__ import annotations

import asyncio

from aiogram import Bot
from aiogram.exceptions import (
    TelegramAPIError,
    TelegramBadRequest,
    TelegramForbiddenError,
    TelegramMigrateToChat,
    TelegramRetryAfter,
)
from aiogram.types import Chat, ChatMemberAdministrator, ChatMemberOwner, ResultChatMemberUnion
from loguru import logger

from bot.db import GroupStatus
from bot.events import Bus, GroupDiscovered
from bot.outbox import Outbox
from bot.registry import Registry
from bot.texts import Texts

# The rights Tidepool uses: deleting its replies after a delay, pinning announcements, and
# invite links per member for attribution. Being an admin at all lets it see joins and leaves.
REQUIRED_RIGHTS = ("can_delete_messages", "can_pin_messages", "can_invite_users")


def missing_rights(member: ResultChatMemberUnion) -> list[str]:
    """The rights the bot lacks, given its own chat member entry."""
    if isinstance(member, ChatMemberOwner):
        return []
    if isinstance(member, ChatMemberAdministrator):
        return [right for right in REQUIRED_RIGHTS if not getattr(member, right)]
    return ["administrator"]


class RightsCheck:
    """Compares the bot's rights with what it needs and reports changes once, not on every start."""

    def __init__(
        self,
        bot: Bot,
        delivery: Outbox,
        registry: Registry,
        texts: Texts,
        owner_ids: list[int],
        bus: Bus,
    ) -> None:
        self.delivery = delivery
        self.bot = bot
        self.registry = registry
        self.texts = texts
        self.owner_ids = owner_ids
        bus.subscribe(GroupDiscovered, self._discovered)

    async def _discovered(self, event: GroupDiscovered) -> None:
        """A group first seen through a message (the bot was there before this database)."""
        await self.review_group(event.chat_id)

    async def review(
        self, chat: Chat, member: ResultChatMemberUnion, added_by: int | None = None
    ) -> list[str]:
        """Store what is missing; when it changed, say so in the group, to owners and in logs."""
        missing = missing_rights(member)
        known = self.registry.groups.get(chat.id)
        before = known.missing_rights if known is not None else []
        log = logger.bind(chat_id=chat.id)
        if missing:
            log.warning("missing rights in {!r}: {}", chat.title, ", ".join(missing))
        if missing == before:
            return missing
        await self.registry.set_group(chat.id, missing_rights=missing)
        language = self.registry.language(chat.id, None)
        if missing:
            names = [self.texts(f"rights.names.{right}", language) for right in missing]
            bot_name = (await self.bot.me()).full_name
            await self._say(
                chat.id, self.texts("rights.missing", language, missing=names, bot_name=bot_name)
            )
            notice = self.texts(
                "rights.missing_owner",
                language,
                title=chat.title or str(chat.id),
                missing=names,
                bot_name=bot_name,
            )
            for owner in {*self.owner_ids, *([added_by] if added_by else [])}:
                await self._say(owner, notice)
        elif before:
            log.info("all needed rights granted in {!r}", chat.title)
            await self._say(chat.id, self.texts("rights.ok", language))
        return missing

    async def review_all(self) -> None:
        """Check every active group, a few at a time; mark those the bot is no longer in."""
        limit = asyncio.Semaphore(5)

        async def one(chat_id: int) -> None:
            async with limit:
                await self.review_group(chat_id)

        await asyncio.gather(*(one(chat_id) for chat_id in self.registry.active_group_ids()))

    async def review_group(self, chat_id: int) -> None:
        """Ask Telegram for the group and the bot's standing in it, then review the rights."""
        log = logger.bind(chat_id=chat_id)
        me = await self.bot.me()
        for _ in range(3):
            try:
                chat = await self.bot.get_chat(chat_id)
                member = await self.bot.get_chat_member(chat_id, me.id)
                break
            except TelegramRetryAfter as exc:
                await asyncio.sleep(exc.retry_after)
            except TelegramMigrateToChat as exc:
                log.info("group was migrated to {}", exc.migrate_to_chat_id)
                return
            except TelegramForbiddenError as exc:
                await self.registry.bot_removed(chat_id, GroupStatus.KICKED, exc.message)
                return
            except TelegramBadRequest as exc:
                if "chat not found" in exc.message.lower():
                    await self.registry.bot_removed(chat_id, GroupStatus.LEFT, exc.message)
                else:
                    log.warning("could not check rights: {}", exc.message)
                return
            except TelegramAPIError as exc:
                log.warning("could not check rights: {}", exc)
                return
        else:
            log.warning("could not check rights: Telegram kept asking to retry later")
            return
        group = Chat(id=chat.id, type=chat.type, title=chat.title, username=chat.username)
        await self.registry.save_group(group, bot_status=member.status)
        await self.review(group, member)

    async def _say(self, chat_id: int, text: str) -> None:
        """Send a notice through the delivery service, which paces, retries and logs failures."""
        await self.delivery.send_message(chat_id, text, source="rights")
