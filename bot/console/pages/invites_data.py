"""The invites page's data: the numbers /invites shows a group's admins (`bot.invites.numbers`:
the fission coefficient K, the month's inviters, the campaigns) and the group's latest
referrals, each with who came, who or which campaign brought them, and where it stands.

Times are kept as stored (UTC); `as_dict` gives them as ISO text in the group's time zone, the
clock the page shows them by.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta, tzinfo
from typing import Any

from sqlalchemy import and_, func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.db import INVITE_LINKS, MEMBERS, REFERRALS, LinkKind
from bot.db.people import name_of
from bot.invites import numbers
from bot.invites.service import Invites

REFERRALS_SHOWN = 50
INVITERS_SHOWN = 100
# Why a referral is void or reversed, or why it waits (bot.invites.referrals sets these).
REASONS = ("left", "left_quickly", "not_qualified", "daily_cap")

_INVITEE = MEMBERS.alias("invitee")
_INVITER = MEMBERS.alias("inviter")


@dataclass(frozen=True, slots=True)
class ReferralRow:
    """One referral as the page lists it."""

    id: int
    invitee_id: int
    invitee: str
    invitee_username: str | None
    inviter_id: int | None  # None: it came through a campaign
    inviter: str | None
    campaign: str | None
    via_request: bool
    state: str
    reason: str | None
    joined_at: datetime
    qualified_at: datetime | None
    decided_at: datetime | None
    left_at: datetime | None


def _member(alias: Any, user_id: Any) -> Any:
    return and_(alias.c.chat_id == REFERRALS.c.chat_id, alias.c.user_id == user_id)


async def latest(
    engine: AsyncEngine, chat_id: int, limit: int = REFERRALS_SHOWN
) -> tuple[list[ReferralRow], int]:
    """The group's newest referrals (at most `limit`, the latest join first) and how many it
    has in all."""
    query = (
        select(
            REFERRALS,
            INVITE_LINKS.c.kind.label("link_kind"),
            INVITE_LINKS.c.name.label("link_name"),
            _INVITEE.c.first_name.label("invitee_first"),
            _INVITEE.c.last_name.label("invitee_last"),
            _INVITEE.c.username.label("invitee_username"),
            _INVITER.c.first_name.label("inviter_first"),
            _INVITER.c.last_name.label("inviter_last"),
            _INVITER.c.username.label("inviter_username"),
        )
        .select_from(
            REFERRALS.outerjoin(INVITE_LINKS, INVITE_LINKS.c.id == REFERRALS.c.link_id)
            .outerjoin(_INVITEE, _member(_INVITEE, REFERRALS.c.invitee_id))
            .outerjoin(_INVITER, _member(_INVITER, REFERRALS.c.inviter_id))
        )
        .where(REFERRALS.c.chat_id == chat_id)
        .order_by(REFERRALS.c.joined_at.desc(), REFERRALS.c.id.desc())
        .limit(limit)
    )
    async with engine.connect() as conn:
        rows = list(await conn.execute(query))
        total = (
            await conn.execute(select(func.count()).where(REFERRALS.c.chat_id == chat_id))
        ).scalar_one()
    found = []
    for row in rows:
        inviter_id = None if row.inviter_id is None else int(row.inviter_id)
        found.append(
            ReferralRow(
                id=int(row.id),
                invitee_id=int(row.invitee_id),
                invitee=name_of(
                    row.invitee_first, row.invitee_last, row.invitee_username, int(row.invitee_id)
                ),
                invitee_username=row.invitee_username,
                inviter_id=inviter_id,
                inviter=None
                if inviter_id is None
                else name_of(row.inviter_first, row.inviter_last, row.inviter_username, inviter_id),
                campaign=row.link_name if row.link_kind == LinkKind.CAMPAIGN.value else None,
                via_request=bool(row.via_request),
                state=row.state,
                reason=row.reason,
                joined_at=row.joined_at,
                qualified_at=row.qualified_at,
                decided_at=row.decided_at,
                left_at=row.left_at,
            )
        )
    return found, int(total)


@dataclass(slots=True)
class Overview:
    """Everything the invites page shows of one group."""

    chat_id: int
    now: datetime
    zone: tzinfo
    first_day: date  # K's first day, in the group's time
    month_start: datetime  # the inviters count referrals that joined since then
    fission: numbers.Fission
    inviters: list[numbers.InviterLine]
    inviters_total: int
    campaigns: list[numbers.CampaignLine]
    referrals: list[ReferralRow]
    referrals_total: int

    def local(self, at: datetime | None) -> str | None:
        """A moment as ISO text in the group's time zone."""
        return None if at is None else at.astimezone(self.zone).isoformat()

    def expired(self, campaign: numbers.CampaignLine) -> bool:
        return campaign.expires_at is not None and campaign.expires_at <= self.now

    def as_dict(self) -> dict[str, Any]:
        return {
            "chat_id": self.chat_id,
            "timezone": str(self.zone),
            "fission": {**self.fission.as_json(), "first_day": self.first_day.isoformat()},
            "month_start": self.local(self.month_start),
            "inviters": [
                {
                    "user_id": line.user_id,
                    "name": line.name,
                    "qualified": line.tally.qualified,
                    "pending": line.tally.pending,
                    "void": line.tally.void,
                    "reversed": line.tally.reversed,
                    "total": line.tally.total,
                }
                for line in self.inviters
            ],
            "inviters_total": self.inviters_total,
            "campaigns": [
                {
                    "name": line.name,
                    "link": line.link,
                    "created_at": self.local(line.created_at),
                    "expires_at": self.local(line.expires_at),
                    "expired": self.expired(line),
                    "member_limit": line.member_limit,
                    "approval": line.approval,
                    "revoked": line.revoked,
                    "joins": line.joins,
                    "qualified": line.tally.qualified,
                    "pending": line.tally.pending,
                    "void": line.tally.void,
                    "reversed": line.tally.reversed,
                    "retention_day1": line.day1,
                    "retention_day7": line.day7,
                }
                for line in self.campaigns
            ],
            "referrals": [
                {
                    "id": row.id,
                    "invitee_id": row.invitee_id,
                    "invitee": row.invitee,
                    "inviter_id": row.inviter_id,
                    "inviter": row.inviter,
                    "campaign": row.campaign,
                    "via_request": row.via_request,
                    "state": row.state,
                    "reason": row.reason,
                    "joined_at": self.local(row.joined_at),
                    "qualified_at": self.local(row.qualified_at),
                    "decided_at": self.local(row.decided_at),
                    "left_at": self.local(row.left_at),
                }
                for row in self.referrals
            ],
            "referrals_total": self.referrals_total,
        }


async def overview(invites: Invites, chat_id: int) -> Overview:
    """The group's invitation numbers as /invites gives them to admins (K over the 30 days
    ending today in the group's time, inviters since the 1st of its month) and its latest
    referrals."""
    now = invites.clock.now()
    zone = invites.zones(chat_id)
    local = now.astimezone(zone)
    month_start = local.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    first_day = (local - timedelta(days=29)).date()
    engine = invites.engine
    fission = await numbers.fission(engine, chat_id, now, first_day)
    ranked = await numbers.inviters(engine, chat_id, month_start)
    campaigns = await numbers.campaigns(engine, chat_id, now)
    referrals, total = await latest(engine, chat_id)
    return Overview(
        chat_id=chat_id,
        now=now,
        zone=zone,
        first_day=first_day,
        month_start=month_start,
        fission=fission,
        inviters=ranked[:INVITERS_SHOWN],
        inviters_total=len(ranked),
        campaigns=campaigns,
        referrals=referrals,
        referrals_total=total,
    )
