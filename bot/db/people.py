"""Whom the bot may write to privately: people who started it and have not blocked it since."""

from __future__ import annotations

from collections.abc import Collection

from sqlalchemy.ext.asyncio import AsyncConnection

from bot.db.models import BOT_USERS


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
