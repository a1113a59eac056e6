"""One member of a group, for the console: their history (joins and the link they came by,
check-ins, the points ledger, tier changes, tags) and the tags the console adds or removes."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from sqlalchemy import and_, func, select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from sqlalchemy.sql.base import Executable

from bot.console.pages.members_data import MemberRow, fill_in, row_of
from bot.db import (
    CHECKINS,
    EVENTS,
    MEMBER_TAGS,
    MEMBERS,
    POINTS,
    TIER_CHANGES,
    EventType,
    writing,
)
from bot.db.people import name_of
from bot.sop.steps._tag import REMOVE_TAG, add_tags

LEDGER_SHOWN = 200  # newest ledger rows on a member's page
CHECKINS_SHOWN = 100
TAG_LENGTH = 64
CONSOLE_SOURCE = "console"  # member_tags.source of a tag added from the console
MEMBERSHIP = (EventType.MEMBER_JOINED, EventType.MEMBER_LEFT, EventType.MEMBER_KICKED)
# What a join or leave event says (bot.registry): how, by which link, added or removed by whom.
MEMBERSHIP_DETAILS = ("source", "invite_link", "invite_name", "added_by", "by")


@dataclass(slots=True)
class History:
    """A member of a group and everything the bot keeps about them there."""

    member: MemberRow
    tags: list[dict[str, Any]]
    membership: list[dict[str, Any]]  # joins and leaves, oldest first
    ledger: list[dict[str, Any]]  # newest first, at most LEDGER_SHOWN
    ledger_count: int
    checkins: list[dict[str, Any]]  # newest first, at most CHECKINS_SHOWN
    checkin_count: int
    tier_changes: list[dict[str, Any]]  # newest first

    def as_dict(self) -> dict[str, Any]:
        return {
            "member": self.member.as_dict(),
            "tags": _plain(self.tags),
            "membership": _plain(self.membership),
            "ledger": _plain(self.ledger),
            "ledger_count": self.ledger_count,
            "checkins": _plain(self.checkins),
            "checkin_count": self.checkin_count,
            "tier_changes": _plain(self.tier_changes),
        }


def _plain(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        {
            key: value.isoformat() if isinstance(value, datetime) else value
            for key, value in row.items()
        }
        for row in rows
    ]


async def member_row(conn: AsyncConnection, chat_id: int, user_id: int) -> MemberRow | None:
    row = (
        await conn.execute(
            select(MEMBERS).where(MEMBERS.c.chat_id == chat_id, MEMBERS.c.user_id == user_id)
        )
    ).first()
    if row is None:
        return None
    found = row_of(row)
    await fill_in(conn, [found])
    return found


async def _name_people(conn: AsyncConnection, chat_id: int, events: list[dict[str, Any]]) -> None:
    """Give each event the names of who added or removed the member (`added_by_name`,
    `by_name`), as the group knows them."""
    ids = {event[key] for event in events for key in ("added_by", "by") if event[key] is not None}
    names: dict[int, str] = {}
    if ids:
        for row in await conn.execute(
            select(
                MEMBERS.c.user_id, MEMBERS.c.first_name, MEMBERS.c.last_name, MEMBERS.c.username
            ).where(MEMBERS.c.chat_id == chat_id, MEMBERS.c.user_id.in_(sorted(ids)))
        ):
            names[int(row.user_id)] = name_of(
                row.first_name, row.last_name, row.username, int(row.user_id)
            )
    for event in events:
        for key in ("added_by", "by"):
            who = event[key]
            event[f"{key}_name"] = None if who is None else names.get(who, str(who))


async def member(db: AsyncEngine, chat_id: int, user_id: int) -> MemberRow | None:
    async with db.connect() as conn:
        return await member_row(conn, chat_id, user_id)


async def history(db: AsyncEngine, chat_id: int, user_id: int) -> History | None:
    """A member's history in a group; None when the bot does not know them there."""
    mine = and_(EVENTS.c.chat_id == chat_id, EVENTS.c.user_id == user_id)
    async with db.connect() as conn:
        member = await member_row(conn, chat_id, user_id)
        if member is None:
            return None
        tags = [
            {"tag": tag, "source": source, "added_at": added_at}
            for tag, source, added_at in await conn.execute(
                select(MEMBER_TAGS.c.tag, MEMBER_TAGS.c.source, MEMBER_TAGS.c.added_at)
                .where(MEMBER_TAGS.c.chat_id == chat_id, MEMBER_TAGS.c.user_id == user_id)
                .order_by(MEMBER_TAGS.c.tag)
            )
        ]
        membership = [
            {
                "at": at,
                "type": kind,
                **{key: (data or {}).get(key) for key in MEMBERSHIP_DETAILS},
            }
            for at, kind, data in await conn.execute(
                select(EVENTS.c.at, EVENTS.c.type, EVENTS.c.data)
                .where(mine, EVENTS.c.type.in_([t.value for t in MEMBERSHIP]))
                .order_by(EVENTS.c.at, EVENTS.c.id)
            )
        ]
        await _name_people(conn, chat_id, membership)
        ledger_of = and_(POINTS.c.chat_id == chat_id, POINTS.c.user_id == user_id)
        ledger = [
            {"at": at, "delta": delta, "reason": reason, "source": source}
            for at, delta, reason, source in await conn.execute(
                select(POINTS.c.at, POINTS.c.delta, POINTS.c.reason, POINTS.c.source)
                .where(ledger_of)
                .order_by(POINTS.c.id.desc())
                .limit(LEDGER_SHOWN)
            )
        ]
        ledger_count = int((await conn.execute(select(func.count()).where(ledger_of))).scalar_one())
        checked = and_(CHECKINS.c.chat_id == chat_id, CHECKINS.c.user_id == user_id)
        checkins = [
            {"day": day.isoformat(), "at": at, "streak": streak, "points": credited}
            for day, at, streak, credited in await conn.execute(
                select(CHECKINS.c.day, CHECKINS.c.at, CHECKINS.c.streak, CHECKINS.c.points)
                .where(checked)
                .order_by(CHECKINS.c.day.desc())
                .limit(CHECKINS_SHOWN)
            )
        ]
        checkin_count = int((await conn.execute(select(func.count()).where(checked))).scalar_one())
        tier_changes = [
            {"at": at, "old": old, "new": new}
            for at, old, new in await conn.execute(
                select(TIER_CHANGES.c.at, TIER_CHANGES.c.old, TIER_CHANGES.c.new)
                .where(TIER_CHANGES.c.chat_id == chat_id, TIER_CHANGES.c.user_id == user_id)
                .order_by(TIER_CHANGES.c.at.desc(), TIER_CHANGES.c.id.desc())
            )
        ]
    return History(
        member, tags, membership, ledger, ledger_count, checkins, checkin_count, tier_changes
    )


async def known_tags(db: AsyncEngine, chat_ids: Sequence[int]) -> list[str]:
    """The member tags in use in these groups (for the filter's choices)."""
    if not chat_ids:
        return []
    async with db.connect() as conn:
        found = await conn.scalars(
            select(MEMBER_TAGS.c.tag)
            .where(MEMBER_TAGS.c.chat_id.in_(list(chat_ids)))
            .distinct()
            .order_by(MEMBER_TAGS.c.tag)
            .limit(500)
        )
        return [str(tag) for tag in found]


def check_tag(value: object) -> str:
    """A tag from a request; ValueError says what is wrong with it."""
    if not isinstance(value, str) or not value.strip():
        raise ValueError("tag must be a non-empty text")
    tag = value.strip()
    if len(tag) > TAG_LENGTH:
        raise ValueError(f"tag must be at most {TAG_LENGTH} characters")
    if any(character.isspace() or character == "/" for character in tag):
        raise ValueError("tag must not contain spaces or /")
    return tag


async def add_tag(db: AsyncEngine, chat_id: int, user_id: int, tag: str, at: datetime) -> bool:
    """Tag a member as the SOPs' `tag` step does; False when they had the tag already."""
    async with writing(db) as conn:
        added = await conn.execute(
            cast(Executable, add_tags(conn)),
            {
                "chat_id": chat_id,
                "user_id": user_id,
                "tag": tag,
                "source": CONSOLE_SOURCE,
                "added_at": at,
            },
        )
        return bool(added.rowcount)


async def remove_tag(db: AsyncEngine, chat_id: int, user_id: int, tag: str) -> bool:
    """Take a tag off a member as the SOPs' `tag` step does; False when they had not it."""
    async with writing(db) as conn:
        removed = await conn.execute(
            REMOVE_TAG, {"chat_id": chat_id, "user_id": user_id, "tag": tag}
        )
        return bool(removed.rowcount)
