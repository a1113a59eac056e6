"""The registry of the bot's groups and their members, kept from Telegram's updates."""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field
from datetime import datetime, tzinfo
from typing import Any, TypeVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from aiogram.types import Chat, User
from loguru import logger
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.activity import ActivityLog, event_row
from bot.db import (
    EVENTS,
    GROUPS,
    INVITE_LINKS,
    LIVES,
    LOTTERIES,
    MEMBERS,
    PUSHES,
    REFERRALS,
    TIER_CHANGES,
    EventType,
    GroupStatus,
    MemberStatus,
    insert_for,
    utcnow,
    writing,
)
from bot.events import Bus, GroupDiscovered, GroupsChanged, MemberJoined, MemberLeft
from bot.stats.rollup import move_group

GROUP_TYPES = frozenset({"group", "supergroup"})
PRESENT = [s.value for s in MemberStatus if s.is_present]


@dataclass(slots=True)
class KnownGroup:
    """What the registry keeps in memory about a group, to answer hot-path questions."""

    status: GroupStatus
    bot_status: str | None = None
    title: str = ""
    language: str | None = None
    missing_rights: list[str] = field(default_factory=list)
    timezone: str | None = None
    tags: list[str] = field(default_factory=list)
    quiet_hours: str | None = None  # None: the QUIET_HOURS setting; "off": none
    daily_cap: int | None = None  # None: the DAILY_CAP setting; 0: no cap


Zone = TypeVar("Zone", bound=tzinfo)  # the default's own type: a ZoneInfo stays a ZoneInfo
Language = TypeVar("Language", bound=str | None)  # a str default gives a str, None str | None


class Registry:
    """Groups and members: who is where, since when, and in which state.

    Membership changes are applied with conditional updates, so the same join or leave seen
    twice (a `chat_member` update and the service message) is counted once.
    """

    def __init__(self, engine: AsyncEngine, activity: ActivityLog, bus: Bus) -> None:
        self.engine = engine
        self.activity = activity
        # Told of every counted join and leave (the SOP engine's triggers), of groups first seen
        # through a message (the rights check), and of group status changes (the calendar).
        self.bus = bus
        self.groups: dict[int, KnownGroup] = {}
        self._migrating = asyncio.Lock()

    async def load(self) -> None:
        """Read the known groups into memory."""
        async with self.engine.connect() as conn:
            rows = await conn.execute(
                select(
                    GROUPS.c.id,
                    GROUPS.c.status,
                    GROUPS.c.bot_status,
                    GROUPS.c.title,
                    GROUPS.c.language,
                    GROUPS.c.missing_rights,
                    GROUPS.c.timezone,
                    GROUPS.c.tags,
                    GROUPS.c.quiet_hours,
                    GROUPS.c.daily_cap,
                )
            )
            for row in rows:
                self.groups[row.id] = KnownGroup(
                    GroupStatus(row.status),
                    row.bot_status,
                    row.title,
                    row.language,
                    list(row.missing_rights or []),
                    row.timezone,
                    list(row.tags or []),
                    row.quiet_hours,
                    row.daily_cap,
                )

    def is_active(self, chat_id: int) -> bool:
        known = self.groups.get(chat_id)
        return known is not None and known.status is GroupStatus.ACTIVE

    def is_admin(self, chat_id: int) -> bool:
        """Whether the bot is an administrator there (and so receives `chat_member` updates)."""
        known = self.groups.get(chat_id)
        return known is not None and known.bot_status in ("administrator", "creator")

    def zone(self, chat_id: int, default: Zone) -> ZoneInfo | Zone:
        """The group's time zone (/timezone), else `default`; a zone no longer known to the
        system's database falls back to `default` too."""
        known = self.groups.get(chat_id)
        if known is not None and known.timezone:
            with contextlib.suppress(ZoneInfoNotFoundError, ValueError):
                return ZoneInfo(known.timezone)
        return default

    def language(self, chat_id: int, default: Language) -> str | Language:
        """The group's language (/group language), else `default` (None: the texts' own)."""
        known = self.groups.get(chat_id)
        if known is not None and known.language:
            return known.language
        return default

    def title(self, chat_id: int) -> str:
        """The group's title as last seen, else its id."""
        known = self.groups.get(chat_id)
        return known.title if known is not None and known.title else str(chat_id)

    def active_group_ids(self) -> list[int]:
        return [
            chat_id for chat_id, known in self.groups.items() if known.status is GroupStatus.ACTIVE
        ]

    # -- groups -------------------------------------------------------------------------------

    async def group_seen(self, chat: Chat) -> None:
        """A message arrived from `chat`: make sure it is registered as an active group."""
        known = self.groups.get(chat.id)
        if known is not None and known.status in (GroupStatus.ACTIVE, GroupStatus.MIGRATED):
            return
        await self.save_group(chat, status=GroupStatus.ACTIVE)
        if known is None:
            self.bus.publish_soon(GroupDiscovered(chat.id))

    async def save_group(
        self,
        chat: Chat,
        *,
        status: GroupStatus | None = None,
        bot_status: str | None = None,
        **values: Any,
    ) -> KnownGroup:
        """Insert or update a group from what Telegram says about it."""
        row: dict[str, Any] = {
            "id": chat.id,
            "title": chat.title or "",
            "type": chat.type,
            "username": chat.username,
            "updated_at": utcnow(),
            **values,
        }
        if status is not None:
            row["status"] = status.value
        if bot_status is not None:
            row["bot_status"] = bot_status
        defaults = {"first_seen_at": utcnow(), "tags": [], "missing_rights": [], "status": "active"}
        stmt = insert_for(self.engine, GROUPS).values(**{**defaults, **row})
        stmt = stmt.on_conflict_do_update(
            index_elements=["id"], set_={k: stmt.excluded[k] for k in row if k != "id"}
        )
        async with writing(self.engine) as conn:
            await conn.execute(stmt)
        known = self.groups.get(chat.id)
        if known is None:
            known = self.groups[chat.id] = KnownGroup(status or GroupStatus.ACTIVE)
            self._groups_changed()
        if status is not None and known.status is not status:
            known.status = status
            self._groups_changed()
        if bot_status is not None:
            known.bot_status = bot_status
        known.title = chat.title or known.title
        if "missing_rights" in values:
            known.missing_rights = list(values["missing_rights"])
        for name in ("timezone", "language", "quiet_hours", "daily_cap"):
            if name in values:
                setattr(known, name, values[name])
        if "tags" in values:
            known.tags = list(values["tags"])
        return known

    async def set_group(self, chat_id: int, **values: Any) -> None:
        """Update columns of a known group."""
        async with writing(self.engine) as conn:
            await conn.execute(
                update(GROUPS).where(GROUPS.c.id == chat_id).values(updated_at=utcnow(), **values)
            )
        known = self.groups.get(chat_id)
        if known is not None:
            if "status" in values and known.status is not GroupStatus(values["status"]):
                known.status = GroupStatus(values["status"])
                self._groups_changed()
            if "missing_rights" in values:
                known.missing_rights = list(values["missing_rights"])
            if "bot_status" in values:
                known.bot_status = values["bot_status"]
            for name in ("timezone", "language", "quiet_hours", "daily_cap"):
                if name in values:
                    setattr(known, name, values[name])
            if "tags" in values:
                known.tags = list(values["tags"])
            if "tags" in values or "timezone" in values:
                self._groups_changed()  # the SOPs that run there and their times may change

    async def bot_removed(self, chat_id: int, status: GroupStatus, reason: str) -> None:
        """The bot is no longer in a group (left, kicked, or the chat is gone)."""
        known = self.groups.get(chat_id)
        if known is not None and known.status is status:
            return
        await self.set_group(chat_id, status=status.value, bot_status=status.value)
        logger.bind(chat_id=chat_id).warning(
            "no longer in this group ({}): {}", status.value, reason
        )

    # -- members ------------------------------------------------------------------------------

    async def member_joined(
        self,
        chat_id: int,
        user: User,
        at: datetime,
        *,
        status: MemberStatus = MemberStatus.MEMBER,
        invite_link: str | None = None,
        invite_name: str | None = None,
        added_by: int | None = None,
        via_request: bool = False,
        source: str,
    ) -> bool:
        """Record that `user` joined; return False when the join was already recorded."""
        joined = {
            "status": status.value,
            "joined_at": at,
            "left_at": None,
            "invite_link": invite_link,
        }
        how = await self._transition(chat_id, user, joined, was_present=False)
        counted = how is not None
        if not counted and invite_link is not None:
            # Seen first through the service message, which has no link: add it now.
            async with writing(self.engine) as conn:
                await conn.execute(
                    update(MEMBERS)
                    .where(
                        MEMBERS.c.chat_id == chat_id,
                        MEMBERS.c.user_id == user.id,
                        MEMBERS.c.invite_link.is_(None),
                    )
                    .values(invite_link=invite_link)
                )
        if counted:
            data: dict[str, Any] = {"source": source}
            if invite_link is not None:
                data["invite_link"] = invite_link
            if invite_name:
                data["invite_name"] = invite_name
            if added_by is not None and added_by != user.id:
                data["added_by"] = added_by
            if how == "known":
                data["rejoin"] = True
            self.activity.add(
                event_row(
                    chat_id=chat_id, user_id=user.id, at=at, type=EventType.MEMBER_JOINED, data=data
                )
            )
            joined_event = MemberJoined(
                chat_id,
                user,
                at,
                first=how == "new",
                invite_link=invite_link,
                invite_name=invite_name,
                via_request=via_request,
                added_by=added_by if added_by != user.id else None,
            )
            await self._tell(joined_event)
        return counted

    async def member_left(
        self,
        chat_id: int,
        user: User,
        at: datetime,
        *,
        kicked: bool = False,
        by: int | None = None,
        source: str,
    ) -> bool:
        """Record that `user` left or was removed; return False when already recorded."""
        status = MemberStatus.KICKED if kicked else MemberStatus.LEFT
        left = {"status": status.value, "left_at": at}
        counted = await self._transition(chat_id, user, left, was_present=True) is not None
        if counted:
            data: dict[str, Any] = {"source": source}
            if by is not None and by != user.id:
                data["by"] = by
            event_type = EventType.MEMBER_KICKED if kicked else EventType.MEMBER_LEFT
            self.activity.add(
                event_row(chat_id=chat_id, user_id=user.id, at=at, type=event_type, data=data)
            )
            await self._tell(MemberLeft(chat_id, user, at))
        return counted

    async def find_member(self, chat_id: int, who: str, *, present: bool = True) -> int | None:
        """A member of the group by @username or numeric id, if the bot knows them (and, with
        `present`, they are still in the group)."""
        name = who.removeprefix("@")
        if name.isdigit():
            match = MEMBERS.c.user_id == int(name)
        else:
            match = func.lower(MEMBERS.c.username) == name.lower()
        query = select(MEMBERS.c.user_id).where(MEMBERS.c.chat_id == chat_id, match)
        if present:
            query = query.where(MEMBERS.c.status.in_(PRESENT))
        async with self.engine.connect() as conn:
            row = (await conn.execute(query)).first()
        return int(row.user_id) if row is not None else None

    def _groups_changed(self) -> None:
        self.bus.publish_soon(GroupsChanged())

    async def _tell(self, change: MemberJoined | MemberLeft) -> None:
        if not change.user.is_bot:
            await self.bus.publish(change)

    async def _transition(
        self, chat_id: int, user: User, values: dict[str, Any], *, was_present: bool
    ) -> str | None:
        """Apply a join (`was_present=False`) or a leave, unless the member is already there.

        One conditional UPDATE for a member we know, an INSERT for one we do not; whichever
        of two reports of the same change comes second finds nothing to change. Returns
        "known" (a member the bot knew in this group), "new" (first seen), None (no change).
        """
        names = {
            "first_name": user.first_name,
            "last_name": user.last_name,
            "username": user.username,
        }
        status = MEMBERS.c.status
        present = status.in_(PRESENT) if was_present else status.not_in(PRESENT)
        async with writing(self.engine) as conn:
            result = await conn.execute(
                update(MEMBERS)
                .where(MEMBERS.c.chat_id == chat_id, MEMBERS.c.user_id == user.id, present)
                .values(**values, **names)
            )
            if result.rowcount > 0:
                return "known"
            row = {
                "chat_id": chat_id,
                "user_id": user.id,
                "is_bot": user.is_bot,
                "message_count": 0,
            }
            inserted = await conn.execute(
                insert_for(conn, MEMBERS).values(**row, **values, **names).on_conflict_do_nothing()
            )
            return "new" if inserted.rowcount > 0 else None

    async def member_status(self, chat_id: int, user: User, status: MemberStatus) -> None:
        """A present member changed standing (promoted, restricted) without joining or leaving."""
        await self.set_member_status(chat_id, user.id, status)

    async def set_member_status(self, chat_id: int, user_id: int, status: MemberStatus) -> None:
        """Store a user's status in a group as Telegram reports it now (a row if none yet)."""
        async with writing(self.engine) as conn:
            upsert = insert_for(conn, MEMBERS).values(
                chat_id=chat_id, user_id=user_id, status=status.value
            )
            await conn.execute(
                upsert.on_conflict_do_update(
                    index_elements=["chat_id", "user_id"], set_={"status": status.value}
                )
            )

    # -- migration ----------------------------------------------------------------------------

    async def migrate(self, old_id: int, new_chat: Chat, at: datetime) -> bool:
        """A group became a supergroup: move its members and history to the new id, once.

        Telegram announces it in both chats, and updates of different chats run side by side,
        so the two announcements take turns here.
        """
        async with self._migrating:
            return await self._migrate(old_id, new_chat, at)

    async def _migrate(self, old_id: int, new_chat: Chat, at: datetime) -> bool:
        old = self.groups.get(old_id)
        if old is not None and old.status is GroupStatus.MIGRATED:
            return False
        self.activity.remap_chat(old_id, new_chat.id)
        await self.activity.flush()
        async with writing(self.engine) as conn:
            old_row = (await conn.execute(select(GROUPS).where(GROUPS.c.id == old_id))).first()
            await self._merge_members(conn, old_id, new_chat.id)
            await conn.execute(
                update(EVENTS).where(EVENTS.c.chat_id == old_id).values(chat_id=new_chat.id)
            )
            await move_group(conn, old_id, new_chat.id)
            for table, column in (
                (TIER_CHANGES, "chat_id"),
                (INVITE_LINKS, "chat_id"),
                (REFERRALS, "chat_id"),
                (LOTTERIES, "chat_id"),
                (LIVES, "chat_id"),
                (PUSHES, "chat_id"),
                (PUSHES, "group_id"),
            ):
                await conn.execute(
                    update(table).where(table.c[column] == old_id).values({column: new_chat.id})
                )
        carried: dict[str, Any] = {}
        if old_row is not None:
            carried = {
                "timezone": old_row.timezone,
                "language": old_row.language,
                "tags": old_row.tags or [],
                "quiet_hours": old_row.quiet_hours,
                "daily_cap": old_row.daily_cap,
                "bot_status": old_row.bot_status,
            }
        bot_status = carried.pop("bot_status", None) or (old.bot_status if old else None)
        await self.save_group(
            new_chat,
            status=GroupStatus.ACTIVE,
            bot_status=bot_status,
            migrated_from_id=old_id,
            **{k: v for k, v in carried.items() if v is not None},
        )
        if old_row is None:
            await self.save_group(
                Chat(id=old_id, type="group", title=new_chat.title),
                status=GroupStatus.MIGRATED,
                migrated_to_id=new_chat.id,
            )
        else:
            await self.set_group(
                old_id, status=GroupStatus.MIGRATED.value, migrated_to_id=new_chat.id
            )
        self.activity.add(
            event_row(
                chat_id=new_chat.id,
                at=at,
                type=EventType.GROUP_MIGRATED,
                data={"from_chat_id": old_id},
            )
        )
        logger.bind(chat_id=new_chat.id).info("group {} became supergroup {}", old_id, new_chat.id)
        return True

    @staticmethod
    async def _merge_members(conn: Any, old_id: int, new_id: int) -> None:
        """Move member rows to the new chat id, adding up a member seen under both ids."""
        rows = (
            (await conn.execute(select(MEMBERS).where(MEMBERS.c.chat_id == old_id)))
            .mappings()
            .all()
        )
        if not rows:
            return
        existing = {
            row["user_id"]: row
            for row in (
                await conn.execute(select(MEMBERS).where(MEMBERS.c.chat_id == new_id))
            ).mappings()
        }
        for row in rows:
            moved = dict(row, chat_id=new_id)
            newer = existing.get(row["user_id"])
            if newer is not None:
                moved["message_count"] = row["message_count"] + newer["message_count"]
                moved["last_activity_at"] = max(
                    filter(None, (row["last_activity_at"], newer["last_activity_at"])), default=None
                )
                moved["status"] = newer["status"]
                await conn.execute(
                    update(MEMBERS)
                    .where(MEMBERS.c.chat_id == new_id, MEMBERS.c.user_id == row["user_id"])
                    .values(**{k: v for k, v in moved.items() if k not in ("chat_id", "user_id")})
                )
            else:
                await conn.execute(insert_for(conn, MEMBERS).values(**moved))
        await conn.execute(MEMBERS.delete().where(MEMBERS.c.chat_id == old_id))
