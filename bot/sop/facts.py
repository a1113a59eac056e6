"""What SOP conditions and texts know about members and groups, read in bulk from the database."""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, TypeVar

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.activity import ActivityLog
from bot.db import EVENTS, MEMBER_TAGS, MEMBERS, EventType, MemberStatus
from bot.db.pairs import pairs_in
from bot.points import balances_of
from bot.sop.templates import member_context

CHUNK = 500  # ids per IN (...) list
COUNT_TTL = 10.0  # seconds a group's member count is reused
MESSAGES_7D = "messages_7d"  # the member variable that needs a 7-day message count
STREAK = "member.streak"  # the member variable that needs the check-ins read
WEEK = timedelta(days=7)
PRESENT = [status.value for status in MemberStatus if status.is_present]
T = TypeVar("T")
SPOKEN = [EventType.MESSAGE.value, EventType.COMMAND.value]  # what counts as a member writing


@dataclass(slots=True)
class MemberFacts:
    """One member of one group as conditions see them."""

    user_id: int
    first_name: str = ""
    last_name: str | None = None
    username: str | None = None
    status: str = MemberStatus.MEMBER.value
    joined_at: datetime | None = None
    last_activity_at: datetime | None = None
    tier: str = "new"
    tags: set[str] = field(default_factory=set)
    points: int = 0
    streak: int = 0  # read only when a text uses it (see the engine's sends)
    messages: dict[timedelta, int] = field(default_factory=dict)  # window -> count
    approved: bool | None = None  # by moderation; read only when a condition asks

    def tenure(self, now: datetime) -> timedelta:
        return now - self.joined_at if self.joined_at is not None else timedelta(0)

    def context(self, now: datetime) -> dict[str, Any]:
        """The `member` variable of texts and template conditions."""
        return member_context(
            id=self.user_id,
            first_name=self.first_name or str(self.user_id),
            last_name=self.last_name,
            username=self.username,
            tags=self.tags,
            points=self.points,
            streak=self.streak,
            tier=self.tier,
            messages_7d=self.messages.get(timedelta(days=7), 0),
            tenure_days=self.tenure(now).days,
        )


def chunks(ids: Sequence[T]) -> Iterable[list[T]]:
    """`ids` in lists of at most CHUNK, for IN (...) clauses."""
    for start in range(0, len(ids), CHUNK):
        yield list(ids[start : start + CHUNK])


class Facts:
    """Reads member and group facts; the activity log is flushed first so counts are current."""

    def __init__(self, engine: AsyncEngine, activity: ActivityLog) -> None:
        self.engine = engine
        self.activity = activity
        self._counts: dict[int, tuple[float, int]] = {}  # chat id -> (monotonic time, count)

    async def members(
        self,
        chat_id: int,
        user_ids: Iterable[int],
        now: datetime,
        windows: Iterable[timedelta] = (),
    ) -> dict[int, MemberFacts]:
        """Facts of these members of `chat_id`, with message counts for each window given
        (counting reads the activity log: ask only for the windows a text or condition uses;
        `messages_7d` is 0 without the 7-day one)."""
        return (await self.members_of({chat_id: user_ids}, now, windows))[chat_id]

    async def members_of(
        self,
        wanted: Mapping[int, Iterable[int]],
        now: datetime,
        windows: Iterable[timedelta] = (),
    ) -> dict[int, dict[int, MemberFacts]]:
        """`members` for several groups at once (group -> its members): the same few
        statements whether the members are in one group or in fifty."""
        facts = {
            chat_id: {user_id: MemberFacts(user_id) for user_id in sorted(set(user_ids))}
            for chat_id, user_ids in wanted.items()
        }
        pairs = [(chat_id, user_id) for chat_id, found in facts.items() for user_id in found]
        if not pairs:
            return facts
        windows = sorted(set(windows))
        if windows and self.activity.pending:  # counts must include what was just said
            await self.activity.flush()
        known = await self._read_members(facts, pairs)
        if len(known) < len(pairs) and self.activity.pending:
            # A member whose first message started the run: their name is still in the log's
            # buffer (a reply would name them by their id).
            await self.activity.flush()
            await self._read_members(facts, [pair for pair in pairs if pair not in known])
        async with self.engine.connect() as conn:
            for chunk in chunks(pairs):
                tags = await conn.execute(
                    select(MEMBER_TAGS.c.chat_id, MEMBER_TAGS.c.user_id, MEMBER_TAGS.c.tag).where(
                        pairs_in(MEMBER_TAGS.c.chat_id, MEMBER_TAGS.c.user_id, chunk)
                    )
                )
                for chat_id, user_id, tag in tags:
                    facts[chat_id][user_id].tags.add(tag)
                for (chat_id, user_id), points in (await balances_of(conn, chunk)).items():
                    facts[chat_id][user_id].points = points
            for window in windows:  # a group at a time: the events' index leads with it
                for chat_id, found in facts.items():
                    for fact in found.values():
                        fact.messages[window] = 0
                    for ids in chunks(list(found)):
                        counts = await conn.execute(
                            select(EVENTS.c.user_id, func.count())
                            .where(
                                EVENTS.c.at >= now - window,
                                EVENTS.c.chat_id == chat_id,
                                EVENTS.c.type.in_(SPOKEN),
                                EVENTS.c.user_id.in_(ids),
                            )
                            .group_by(EVENTS.c.user_id)
                        )
                        for user_id, count in counts:
                            found[user_id].messages[window] = int(count)
        return facts

    async def _read_members(
        self, facts: dict[int, dict[int, MemberFacts]], pairs: list[tuple[int, int]]
    ) -> set[tuple[int, int]]:
        """Fill in what the members table knows of these members; those it knows."""
        found: set[tuple[int, int]] = set()
        async with self.engine.connect() as conn:
            for chunk in chunks(pairs):
                rows = await conn.execute(
                    select(MEMBERS).where(pairs_in(MEMBERS.c.chat_id, MEMBERS.c.user_id, chunk))
                )
                for row in rows:
                    fact = facts[row.chat_id][row.user_id]
                    fact.first_name, fact.last_name = row.first_name, row.last_name
                    fact.username, fact.status, fact.tier = row.username, row.status, row.tier
                    fact.joined_at, fact.last_activity_at = row.joined_at, row.last_activity_at
                    found.add((row.chat_id, row.user_id))
        return found

    async def member_count(self, chat_id: int) -> int:
        """Members present in the group, as far as the bot has seen them (bots excluded);
        counted at most every COUNT_TTL seconds per group (texts and conditions need no more)."""
        return (await self.member_counts([chat_id]))[chat_id]

    async def member_counts(self, chat_ids: Iterable[int]) -> dict[int, int]:
        """`member_count` of several groups, those not counted lately in one statement."""
        tick = time.monotonic()
        counts: dict[int, int] = {}
        stale: list[int] = []
        for chat_id in set(chat_ids):
            known = self._counts.get(chat_id)
            if known is not None and tick - known[0] < COUNT_TTL:
                counts[chat_id] = known[1]
            else:
                stale.append(chat_id)
        if stale:
            fresh = dict.fromkeys(stale, 0) | await self._count_members(stale)
            for chat_id, count in fresh.items():
                self._counts[chat_id] = (tick, count)
            counts.update(fresh)
        return counts

    async def _count_members(self, chat_ids: list[int]) -> dict[int, int]:
        async with self.engine.connect() as conn:
            rows = await conn.execute(
                select(MEMBERS.c.chat_id, func.count())
                .where(
                    MEMBERS.c.chat_id.in_(chat_ids),
                    MEMBERS.c.status.in_(PRESENT),
                    MEMBERS.c.is_bot.is_(False),
                )
                .group_by(MEMBERS.c.chat_id)
            )
            return {int(chat_id): int(count) for chat_id, count in rows}

    async def silent_members(self, chat_id: int, since: datetime) -> list[int]:
        """Present members who have not written since `since` (nor joined after it)."""
        if self.activity.pending:
            await self.activity.flush()
        last_seen = func.coalesce(MEMBERS.c.last_activity_at, MEMBERS.c.joined_at)
        async with self.engine.connect() as conn:
            rows = await conn.execute(
                select(MEMBERS.c.user_id)
                .where(
                    MEMBERS.c.chat_id == chat_id,
                    MEMBERS.c.status.in_(
                        [MemberStatus.MEMBER.value, MemberStatus.RESTRICTED.value]
                    ),
                    MEMBERS.c.is_bot.is_(False),
                    last_seen.is_not(None),
                    last_seen < since,
                )
                .order_by(MEMBERS.c.user_id)
            )
            return [row.user_id for row in rows]
