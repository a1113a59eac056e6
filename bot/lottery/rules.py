"""Who may enter a lottery: the rules of an SOP or a /lottery command, checked in bulk."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, func, select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from bot.activity import ActivityLog
from bot.db import (
    CHECKINS,
    EVENTS,
    GROUPS,
    LOTTERIES,
    LOTTERY_PICKS,
    MEMBER_TAGS,
    MEMBERS,
    PRESENT,
    PickOutcome,
)
from bot.points import balances
from bot.sop.facts import SPOKEN, chunks
from bot.sop.format import ActivityCount, LotteryRules, format_duration

COUNTS_TTL = 30.0  # seconds a group's message and check-in counts are reused


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why a member may not enter: a text key under `lottery.refused` and its values."""

    reason: str
    values: dict[str, Any] = field(default_factory=dict)


class Eligibility:
    """Checks members against a lottery's rules, many at a time.

    Message and check-in counts are read for the whole group at once and reused for
    COUNTS_TTL seconds, so a burst of presses costs a few queries, not one per member; a member
    the reused counts fall short for is counted again fresh before being refused (they may have
    just written).
    """

    def __init__(self, engine: AsyncEngine, activity: ActivityLog) -> None:
        self.engine = engine
        self.activity = activity
        self._counts: dict[tuple[str, int, timedelta], tuple[float, dict[int, int]]] = {}
        self._arrived: dict[int, datetime] = {}  # group -> when the bot first saw it

    async def refusals(
        self,
        chat_id: int,
        rules: LotteryRules,
        user_ids: Sequence[int],
        now: datetime,
        known: dict[int, dict[str, Any]] | None = None,
    ) -> dict[int, Refusal]:
        """The members of `user_ids` who may not enter, with the first rule each one fails.

        `known`: their rows as `members` read them, when the caller has them already."""
        ids = sorted(set(user_ids))
        refused: dict[int, Refusal] = {}
        members = known if known is not None else await self.members(chat_id, ids)
        for user_id in ids:
            row = members.get(user_id)
            if row is not None and row["status"] not in PRESENT:
                refused[user_id] = Refusal("not_member")
        if rules.min_tenure is not None:
            arrived = await self._bot_arrived(chat_id)
            for user_id in ids:
                row = members.get(user_id)
                since = (row or {}).get("joined_at") or arrived
                if user_id not in refused and since is not None and now - since < rules.min_tenure:
                    days = max((now - since).days, 0)
                    refused[user_id] = Refusal(
                        "tenure", {"needed": format_duration(rules.min_tenure), "days": days}
                    )
        if rules.tiers:
            for user_id in ids:
                tier = (members.get(user_id) or {}).get("tier", "new")
                if user_id not in refused and tier not in rules.tiers:
                    refused[user_id] = Refusal(
                        "tier", {"tiers": ", ".join(rules.tiers), "tier": tier}
                    )
        left = [user_id for user_id in ids if user_id not in refused]
        if rules.tags and left:
            tagged = await self._tagged(chat_id, left, rules.tags)
            for user_id in left:
                if user_id not in tagged:
                    refused[user_id] = Refusal("tag", {"tags": ", ".join(rules.tags)})
        for kind, wanted in (("messages", rules.min_messages), ("checkins", rules.min_checkins)):
            left = [user_id for user_id in ids if user_id not in refused]
            if wanted is None or not left:
                continue
            counts = await self._counted(kind, chat_id, wanted, left, now)
            for user_id in left:
                if counts.get(user_id, 0) < wanted.count:
                    refused[user_id] = Refusal(
                        kind,
                        {
                            "needed": wanted.count,
                            "window": format_duration(wanted.window),
                            "have": counts.get(user_id, 0),
                        },
                    )
        left = [user_id for user_id in ids if user_id not in refused]
        needed_points = max(rules.min_points or 0, rules.entry_cost)
        if needed_points and left:
            async with self.engine.connect() as conn:
                have = await balances(conn, chat_id, left)
            for user_id in left:
                if have.get(user_id, 0) < needed_points:
                    refused[user_id] = Refusal(
                        "points",
                        {"needed": needed_points, "balance": have.get(user_id, 0)},
                    )
        left = [user_id for user_id in ids if user_id not in refused]
        if rules.exclude_winners_within is not None and left:
            won = await self._recent_winners(chat_id, left, now - rules.exclude_winners_within)
            for user_id in won:
                refused[user_id] = Refusal(
                    "recent_winner", {"window": format_duration(rules.exclude_winners_within)}
                )
        return refused

    async def members(self, chat_id: int, ids: Sequence[int]) -> dict[int, dict[str, Any]]:
        """The rows (status, joined_at, tier) of those of these members the bot knows."""
        found: dict[int, dict[str, Any]] = {}
        columns = (MEMBERS.c.user_id, MEMBERS.c.status, MEMBERS.c.joined_at, MEMBERS.c.tier)
        async with self.engine.connect() as conn:
            for chunk in chunks(ids):
                rows = await conn.execute(
                    select(*columns).where(
                        MEMBERS.c.chat_id == chat_id, MEMBERS.c.user_id.in_(chunk)
                    )
                )
                for row in rows.mappings():
                    found[row["user_id"]] = dict(row)
        return found

    async def _bot_arrived(self, chat_id: int) -> datetime | None:
        if chat_id not in self._arrived:
            async with self.engine.connect() as conn:
                arrived = (
                    await conn.execute(select(GROUPS.c.first_seen_at).where(GROUPS.c.id == chat_id))
                ).scalar_one_or_none()
            if arrived is None:
                return None
            self._arrived[chat_id] = arrived
        return self._arrived[chat_id]

    async def _tagged(self, chat_id: int, ids: list[int], tags: list[str]) -> set[int]:
        tagged: set[int] = set()
        async with self.engine.connect() as conn:
            for chunk in chunks(ids):
                rows = await conn.execute(
                    select(MEMBER_TAGS.c.user_id).where(
                        MEMBER_TAGS.c.chat_id == chat_id,
                        MEMBER_TAGS.c.user_id.in_(chunk),
                        MEMBER_TAGS.c.tag.in_(tags),
                    )
                )
                tagged.update(row.user_id for row in rows)
        return tagged

    async def _recent_winners(self, chat_id: int, ids: list[int], since: datetime) -> set[int]:
        async with self.engine.connect() as conn:
            return await recent_winners(conn, chat_id, ids, since)

    async def _counted(
        self,
        kind: str,
        chat_id: int,
        wanted: ActivityCount,
        ids: list[int],
        now: datetime,
    ) -> dict[int, int]:
        """Messages or check-ins of each member in the window: the group's counts, reused
        for a while, and a fresh count for those who fall short in them."""
        key = (kind, chat_id, wanted.window)
        tick = time.monotonic()
        cached = self._counts.get(key)
        if cached is None or tick - cached[0] >= COUNTS_TTL:
            whole = await self._count(kind, chat_id, None, now - wanted.window)
            cached = self._counts[key] = (tick, whole)
        counts = {user_id: cached[1].get(user_id, 0) for user_id in ids}
        short = [user_id for user_id in ids if counts[user_id] < wanted.count]
        if short:
            fresh = await self._count(kind, chat_id, short, now - wanted.window)
            for user_id in short:
                counts[user_id] = fresh.get(user_id, 0)
        return counts

    async def _count(
        self,
        kind: str,
        chat_id: int,
        ids: list[int] | None,
        since: datetime,
    ) -> dict[int, int]:
        """Messages (commands included) or check-ins of members since `since`."""
        if kind == "messages":
            if self.activity.pending:  # what was just said counts
                await self.activity.flush()
            who = EVENTS.c.user_id
            condition = and_(
                EVENTS.c.at >= since, EVENTS.c.chat_id == chat_id, EVENTS.c.type.in_(SPOKEN)
            )
        else:
            who = CHECKINS.c.user_id
            condition = and_(CHECKINS.c.chat_id == chat_id, CHECKINS.c.at >= since)
        counts: dict[int, int] = {}
        async with self.engine.connect() as conn:
            for chunk in chunks(ids) if ids is not None else [None]:
                query = select(who, func.count()).where(condition).group_by(who)
                if chunk is not None:
                    query = query.where(who.in_(chunk))
                for user_id, count in await conn.execute(query):
                    if user_id is not None:
                        counts[int(user_id)] = int(count)
        return counts


async def recent_winners(
    conn: AsyncConnection,
    chat_id: int,
    user_ids: Sequence[int],
    since: datetime,
    *,
    other_than: int | None = None,
) -> set[int]:
    """Of these members, those who won one of the group's lotteries (not `other_than`) since
    `since` and were not replaced."""
    won: set[int] = set()
    for chunk in chunks(user_ids):
        query = (
            select(LOTTERY_PICKS.c.user_id)
            .select_from(
                LOTTERY_PICKS.join(LOTTERIES, LOTTERIES.c.id == LOTTERY_PICKS.c.lottery_id)
            )
            .where(
                LOTTERIES.c.chat_id == chat_id,
                LOTTERY_PICKS.c.outcome == PickOutcome.WON.value,
                LOTTERY_PICKS.c.at >= since,
                LOTTERY_PICKS.c.user_id.in_(chunk),
            )
        )
        if other_than is not None:
            query = query.where(LOTTERIES.c.id != other_than)
        won.update(int(row.user_id) for row in await conn.execute(query))
    return won
