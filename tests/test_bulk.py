"""Bulk statements: what goes in a column at a time comes back as SQLAlchemy would have stored it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from sqlalchemy import insert, select
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.activity import EVENT_COLUMNS
from bot.db import EVENTS, writing
from bot.db.bulk import Bulk

SHANGHAI = timezone(timedelta(hours=8))


async def stored(engine: AsyncEngine, rows: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    """Insert event `rows` with Bulk; the events as they read back, in message order."""
    bulk = Bulk(insert(EVENTS).values(dict.fromkeys(EVENT_COLUMNS)), engine.dialect, EVENT_COLUMNS)
    async with writing(engine) as conn:
        await bulk.execute(conn, rows)
    async with engine.connect() as conn:
        found = (await conn.execute(select(EVENTS).order_by(EVENTS.c.message_id))).mappings()
        return [tuple(row[name] for name in EVENT_COLUMNS) for row in found]


async def test_rows_round_trip_with_times_booleans_and_json(engine: AsyncEngine) -> None:
    shared = datetime(2026, 11, 2, 8, 0, tzinfo=UTC)
    rows = [
        # chat, user, at, type, kind, message id, length, reply, forward, text, data
        (-1, 11, shared, "message", "text", 1, 5, False, True, None, None),
        (-1, None, shared, "message", "photo", 2, 0, True, False, "hi", {"sender_chat_id": -9}),
        (-2, 12, datetime(2026, 11, 2, 16, 0, 1, 250, tzinfo=SHANGHAI), "command", "text", 3, 8,
         False, False, None, {"command": "checkin"}),
    ]  # fmt: skip
    got = await stored(engine, rows)
    expected = [(*row[:2], row[2].astimezone(UTC), *row[3:]) for row in rows]
    assert got == expected
    assert got[2][2] == datetime(2026, 11, 2, 8, 0, 1, 250, tzinfo=UTC)


async def test_many_rows_go_in_whole_statements_and_a_rest(engine: AsyncEngine) -> None:
    start = datetime(2026, 11, 2, tzinfo=UTC)
    rows = [
        (-1, 10 + i % 7, start + timedelta(seconds=i // 3), "message", "text", i, i % 50,
         i % 2 == 0, False, None, None)
        for i in range(2_345)
    ]  # fmt: skip
    assert await stored(engine, rows) == rows
