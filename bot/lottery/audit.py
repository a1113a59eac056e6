"""The audit trail of lotteries: every opening, entry, draw, pick, reroll and cancellation."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.db import LOTTERIES, LOTTERY_ENTRIES, LOTTERY_PICKS, LotteryStatus
from bot.lottery.draw import entrants_text

COLUMNS = ["lottery_id", "chat_id", "at", "action", "user_id", "details"]


async def audit_rows(
    engine: AsyncEngine, group: int | None = None, since: datetime | None = None
) -> AsyncIterator[dict[str, Any]]:
    """One row per thing that happened, lottery by lottery, in time order within each.

    `drawn` rows carry the revealed seed and the full entrant list, so the trail alone is
    enough to recompute every draw (see bot.lottery.draw); an open lottery's seed stays out."""
    query = select(LOTTERIES).order_by(LOTTERIES.c.id)
    if group is not None:
        query = query.where(LOTTERIES.c.chat_id == group)
    if since is not None:
        query = query.where(LOTTERIES.c.created_at >= since)
    async with engine.connect() as conn:
        lotteries = list((await conn.execute(query)).mappings())
        for lottery in lotteries:
            entries = list(
                await conn.execute(
                    select(LOTTERY_ENTRIES)
                    .where(LOTTERY_ENTRIES.c.lottery_id == lottery["id"])
                    .order_by(LOTTERY_ENTRIES.c.entered_at, LOTTERY_ENTRIES.c.user_id)
                )
            )
            picks = list(
                await conn.execute(
                    select(LOTTERY_PICKS)
                    .where(LOTTERY_PICKS.c.lottery_id == lottery["id"])
                    .order_by(LOTTERY_PICKS.c.pick)
                )
            )
            for row in _trail(lottery, entries, picks):
                yield row


def _trail(lottery: Any, entries: list[Any], picks: list[Any]) -> list[dict[str, Any]]:
    def row(at: datetime, action: str, user_id: int | None, **details: Any) -> dict[str, Any]:
        return {
            "lottery_id": lottery["id"],
            "chat_id": lottery["chat_id"],
            "at": at,
            "action": action,
            "user_id": user_id,
            "details": details,
        }

    trail = [
        row(
            lottery["created_at"],
            "opened",
            lottery["created_by"],
            prize=lottery["prize"],
            winners=lottery["winners"],
            draws_at=lottery["draws_at"].isoformat(),
            rules=lottery["rules"],
            commitment=lottery["commitment"],
            source=lottery["source"],
        )
    ]
    trail += [row(entry.entered_at, "entered", entry.user_id, cost=entry.cost) for entry in entries]
    closed = lottery["drawn_at"]
    if lottery["status"] == LotteryStatus.CANCELLED.value:
        trail.append(row(closed, "cancelled", lottery["closed_by"]))
    elif lottery["status"] == LotteryStatus.DRAWN.value:
        trail += [
            row(closed, "out", entry.user_id, reason=entry.out_reason)
            for entry in entries
            if entry.in_draw is False
        ]
        trail.append(
            row(
                closed,
                "drawn",
                lottery["closed_by"],
                seed=lottery["seed"],
                entrants=lottery["entrants"],
                entrants_digest=lottery["entrants_digest"],
                entrant_ids=entrants_text(e.user_id for e in entries if e.in_draw),
            )
        )
        for pick in picks:
            action = "picked" if pick.replaces is None else "rerolled"
            trail.append(
                row(
                    pick.at,
                    action,
                    pick.user_id,
                    pick=pick.pick,
                    outcome=pick.outcome,
                    reason=pick.reason,
                    replaces=pick.replaces,
                    by=pick.by,
                )
            )
    return sorted(trail, key=lambda item: item["at"])  # stable: same-time rows keep their order
