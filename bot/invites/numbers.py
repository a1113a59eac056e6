"""The numbers of invitations: a member's referrals, the month's inviters, each campaign's
joins and retention, and the group's fission coefficient (裂变系数) and cycle time.

K is the qualified referrals of a period per member active in it (wrote at least once, as
/stats counts them); above 1 a group grows by itself. The cycle time is how long inviters took
from their own join to their first referral that qualified (the median, over the inviters whose
first referral qualified in the period, whose own join the bot saw).
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import and_, func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.db import INVITE_LINKS, MEMBER_DAYS, MEMBERS, REFERRALS, LinkKind, ReferralState


@dataclass(frozen=True, slots=True)
class ReferralLine:
    """One referral as its inviter sees it."""

    invitee_id: int
    name: str
    state: str
    reason: str | None
    joined_at: datetime
    qualified_at: datetime | None
    left_at: datetime | None


@dataclass(slots=True)
class Tally:
    """Referrals by state (one inviter's, one campaign's)."""

    pending: int = 0
    qualified: int = 0
    void: int = 0
    reversed: int = 0

    @property
    def total(self) -> int:
        return self.pending + self.qualified + self.void + self.reversed

    def add(self, state: str, count: int = 1) -> None:
        setattr(self, state, getattr(self, state) + count)


@dataclass(slots=True)
class InviterLine:
    user_id: int
    name: str
    tally: Tally = field(default_factory=Tally)


@dataclass(slots=True)
class CampaignLine:
    """A campaign: its link, its joins (every join through it) and its referrals' states, and
    how many of those who joined at least 1 and 7 days ago were still there then."""

    name: str
    link: str
    created_at: datetime
    revoked: bool
    expires_at: datetime | None
    member_limit: int | None
    approval: bool
    joins: int
    tally: Tally = field(default_factory=Tally)
    day1: float | None = None
    day7: float | None = None


@dataclass(frozen=True, slots=True)
class Fission:
    """The group's fission coefficient over a period, and the inviters' cycle time."""

    days: int
    qualified: int
    active: int
    cycle_days: float | None  # median; None: no inviter to measure
    inviters: int  # with a referral qualified in the period

    @property
    def k(self) -> float | None:
        return self.qualified / self.active if self.active else None

    def shown(self) -> dict[str, Any]:
        """K (two decimals) and the cycle time (days, one decimal) as texts show them."""
        k, cycle = self.k, self.cycle_days
        return {
            "k": "–" if k is None else f"{k:.2f}",
            "qualified": self.qualified,
            "active": self.active,
            "cycle": "–" if cycle is None else f"{cycle:.1f}d",
        }

    def as_json(self) -> dict[str, Any]:
        return {
            "days": self.days,
            "k": None if self.k is None else round(self.k, 4),
            "qualified": self.qualified,
            "active": self.active,
            "cycle_days": None if self.cycle_days is None else round(self.cycle_days, 2),
            "inviters": self.inviters,
        }


def _name(row: Any, user_id: int) -> str:
    first = row.first_name if row is not None and row.first_name else str(user_id)
    return f"{first} {row.last_name}" if row is not None and row.last_name else first


_INVITEE = MEMBERS.alias("invitee")


async def of_member(engine: AsyncEngine, chat_id: int, user_id: int) -> list[ReferralLine]:
    """The referrals a member brought to a group, newest first."""
    query = (
        select(REFERRALS, _INVITEE.c.first_name, _INVITEE.c.last_name)
        .select_from(
            REFERRALS.outerjoin(
                _INVITEE,
                and_(
                    _INVITEE.c.chat_id == REFERRALS.c.chat_id,
                    _INVITEE.c.user_id == REFERRALS.c.invitee_id,
                ),
            )
        )
        .where(REFERRALS.c.chat_id == chat_id, REFERRALS.c.inviter_id == user_id)
        .order_by(REFERRALS.c.joined_at.desc(), REFERRALS.c.id.desc())
    )
    async with engine.connect() as conn:
        return [
            ReferralLine(
                row.invitee_id,
                _name(row, row.invitee_id),
                row.state,
                row.reason,
                row.joined_at,
                row.qualified_at,
                row.left_at,
            )
            for row in await conn.execute(query)
        ]


async def inviters(engine: AsyncEngine, chat_id: int, since: datetime) -> list[InviterLine]:
    """Members whose referrals joined since `since`, most qualified first."""
    query = (
        select(REFERRALS.c.inviter_id, REFERRALS.c.state, func.count())
        .where(
            REFERRALS.c.chat_id == chat_id,
            REFERRALS.c.inviter_id.is_not(None),
            REFERRALS.c.joined_at >= since,
        )
        .group_by(REFERRALS.c.inviter_id, REFERRALS.c.state)
    )
    lines: dict[int, InviterLine] = {}
    async with engine.connect() as conn:
        for inviter, state, count in await conn.execute(query):
            lines.setdefault(inviter, InviterLine(inviter, str(inviter))).tally.add(state, count)
        if lines:
            names = await conn.execute(
                select(MEMBERS.c.user_id, MEMBERS.c.first_name, MEMBERS.c.last_name).where(
                    MEMBERS.c.chat_id == chat_id, MEMBERS.c.user_id.in_(sorted(lines))
                )
            )
            for row in names:
                lines[row.user_id].name = _name(row, row.user_id)
    return sorted(
        lines.values(), key=lambda line: (-line.tally.qualified, -line.tally.total, line.name)
    )


async def campaigns(engine: AsyncEngine, chat_id: int, now: datetime) -> list[CampaignLine]:
    """Every campaign of the group, newest first, with its numbers."""
    day1, day7 = now - timedelta(days=1), now - timedelta(days=7)
    kept = {
        1: (day1, timedelta(days=1)),
        7: (day7, timedelta(days=7)),
    }
    async with engine.connect() as conn:
        links = list(
            await conn.execute(
                select(INVITE_LINKS)
                .where(
                    INVITE_LINKS.c.chat_id == chat_id,
                    INVITE_LINKS.c.kind == LinkKind.CAMPAIGN.value,
                )
                .order_by(INVITE_LINKS.c.id.desc())
            )
        )
        referrals = await conn.execute(
            select(
                REFERRALS.c.link_id, REFERRALS.c.state, REFERRALS.c.joined_at, REFERRALS.c.left_at
            ).where(REFERRALS.c.link_id.in_([link.id for link in links]))
        )
        by_link: defaultdict[int, list[Any]] = defaultdict(list)
        for row in referrals:
            by_link[row.link_id].append(row)
    lines = []
    for link in links:
        line = CampaignLine(
            name=link.name,
            link=link.link,
            created_at=link.created_at,
            revoked=link.revoked_at is not None,
            expires_at=link.expires_at,
            member_limit=link.member_limit,
            approval=bool(link.approval),
            joins=link.joins,
        )
        rows = by_link[link.id]
        for row in rows:
            line.tally.add(row.state)
        shares = {}
        for days, (before, span) in kept.items():
            old_enough = [row for row in rows if row.joined_at <= before]
            stayed = [
                row
                for row in old_enough
                if row.left_at is None or row.left_at - row.joined_at >= span
            ]
            shares[days] = len(stayed) / len(old_enough) if old_enough else None
        line.day1, line.day7 = shares[1], shares[7]
        lines.append(line)
    return lines


async def fission(
    engine: AsyncEngine, chat_id: int, now: datetime, first_day: date, days: int = 30
) -> Fission:
    """K and the cycle time over the `days` ending now (`first_day`: the first, group's time)."""
    since = now - timedelta(days=days)
    reached = (REFERRALS.c.state == ReferralState.QUALIFIED.value) | (
        REFERRALS.c.state == ReferralState.REVERSED.value
    )
    async with engine.connect() as conn:
        qualified = (
            await conn.execute(
                select(func.count()).where(
                    REFERRALS.c.chat_id == chat_id,
                    REFERRALS.c.state == ReferralState.QUALIFIED.value,
                    REFERRALS.c.qualified_at >= since,
                )
            )
        ).scalar_one()
        active = (
            await conn.execute(
                select(func.count(func.distinct(MEMBER_DAYS.c.user_id))).where(
                    MEMBER_DAYS.c.chat_id == chat_id,
                    MEMBER_DAYS.c.day >= first_day,
                    MEMBER_DAYS.c.messages > 0,
                )
            )
        ).scalar_one()
        firsts = (
            select(
                REFERRALS.c.inviter_id,
                func.min(REFERRALS.c.qualified_at).label("first"),
            )
            .where(REFERRALS.c.chat_id == chat_id, REFERRALS.c.inviter_id.is_not(None), reached)
            .group_by(REFERRALS.c.inviter_id)
            .subquery()
        )
        rows = list(
            await conn.execute(
                select(firsts.c.first, MEMBERS.c.joined_at)
                .select_from(
                    firsts.outerjoin(
                        MEMBERS,
                        and_(
                            MEMBERS.c.chat_id == chat_id,
                            MEMBERS.c.user_id == firsts.c.inviter_id,
                        ),
                    )
                )
                .where(firsts.c.first >= since)
            )
        )
    cycles = [
        (first - joined).total_seconds() / 86400
        for first, joined in rows
        if joined is not None and joined <= first
    ]
    return Fission(
        days=days,
        qualified=int(qualified),
        active=int(active),
        cycle_days=statistics.median(cycles) if cycles else None,
        inviters=len(rows),
    )


EXPORT_COLUMNS = (
    "chat_id",
    "invitee_id",
    "inviter_id",
    "link_kind",
    "link_name",
    "joined_at",
    "via_request",
    "state",
    "reason",
    "qualified_at",
    "decided_at",
    "left_at",
)


async def export_rows(
    engine: AsyncEngine, group: int | None, since: datetime | None
) -> AsyncIterator[dict[str, Any]]:
    """Every referral (of one group; joined or changed since a moment), oldest first."""
    query = (
        select(
            REFERRALS,
            INVITE_LINKS.c.kind.label("link_kind"),
            INVITE_LINKS.c.name.label("link_name"),
        )
        .select_from(REFERRALS.join(INVITE_LINKS, INVITE_LINKS.c.id == REFERRALS.c.link_id))
        .order_by(REFERRALS.c.id)
    )
    if group is not None:
        query = query.where(REFERRALS.c.chat_id == group)
    if since is not None:
        query = query.where(
            (REFERRALS.c.joined_at >= since)
            | (REFERRALS.c.qualified_at >= since)
            | (REFERRALS.c.decided_at >= since)
            | (REFERRALS.c.left_at >= since)
        )
    async with engine.connect() as conn:
        result = await conn.stream(query)
        async for row in result:
            yield {name: getattr(row, name) for name in EXPORT_COLUMNS}
