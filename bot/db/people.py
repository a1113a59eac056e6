"""People as the bot knows them: whom it may write to privately (who started it and has not
blocked it since), and group members' names and usernames."""

from __future__ import annotations

from collections.abc import Collection

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from bot.db.models import BOT_USERS, MEMBERS


async def reachable(conn: AsyncConnection, user_ids: Collection[int]) -> set[int]:
    """Those of `user_ids` the bot may write to privately."""
    if not user_ids:
        return set()
    rows = await conn.execute(
        BOT_USERS.select()
        .with_only_columns(BOT_USERS.c.user_id)
        .where(BOT_USERS.c.user_id.in_(sorted(user_ids)), BOT_USERS.c.blocked_at.is_(None))
    )
    return set(rows.scalars())


def name_of(first: str | None, last: str | None, username: str | None, user_id: int) -> str:
    """A member's name as the groups know it, else their @username, else their id."""
    name = " ".join(part for part in (first, last) if part)
    return name or (f"@{username}" if username else str(user_id))


async def names(conn: AsyncConnection, chat_id: int, user_ids: Collection[int]) -> dict[int, str]:
    """The names the group knows of these people (members, or once members)."""
    if not user_ids:
        return {}
    m = MEMBERS.c
    rows = await conn.execute(
        select(m.user_id, m.first_name, m.last_name, m.username).where(
            m.chat_id == chat_id, m.user_id.in_(sorted(user_ids))
        )
    )
    return {
        int(row.user_id): name_of(row.first_name, row.last_name, row.username, row.user_id)
        for row in rows
    }


async def named(conn: AsyncConnection, chat_id: int, usernames: Collection[str]) -> dict[str, int]:
    """The group's members with these usernames (any case): lower-case username -> user id."""
    if not usernames:
        return {}
    m = MEMBERS.c
    lower = func.lower(m.username)
    rows = await conn.execute(
        select(lower, m.user_id).where(
            m.chat_id == chat_id, lower.in_(sorted(name.lower() for name in usernames))
        )
    )
    return {str(name): int(user_id) for name, user_id in rows}
