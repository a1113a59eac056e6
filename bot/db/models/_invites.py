"""Invite links and the referrals they brought: who joined through which link, and whether
the join has earned its inviter anything yet."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import Index, Table, UniqueConstraint
from sqlmodel import Field, SQLModel

from ._columns import ChatId, EventId, UTCDateTime


class LinkKind(StrEnum):
    """Who a link belongs to."""

    MEMBER = "member"  # a member's personal link (/invite): joins credit them
    CAMPAIGN = "campaign"  # an admin's named campaign (/campaign): counted, credits nobody
    OTHER = "other"  # made by someone else (an admin in Telegram): recorded, never credited


class ReferralState(StrEnum):
    """Where a referral stands. Only `pending` moves; a qualified one may still be reversed."""

    PENDING = "pending"
    QUALIFIED = "qualified"
    VOID = "void"
    REVERSED = "reversed"


class InviteLink(SQLModel, table=True):
    """A link members join a group through. The bot's own links are shown to it in full;
    another admin's, with the second half hidden (as Telegram shows it), so such a row keys
    on what Telegram showed."""

    __tablename__ = "invite_links"
    __table_args__ = (
        UniqueConstraint("chat_id", "link", name="uq_invite_links_chat_link"),
        Index("ix_invite_links_owner", "chat_id", "kind", "owner_id"),
    )

    id: int | None = Field(default=None, sa_type=EventId, primary_key=True)
    chat_id: int = Field(sa_type=ChatId)
    link: str
    kind: str
    owner_id: int | None = Field(default=None, sa_type=ChatId)  # the member; a campaign's admin
    name: str = ""  # a campaign's name; the name Telegram gave another admin's link
    member_limit: int | None = None
    expires_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    approval: bool = False  # joins through it are requests the bot approves or declines
    created_at: datetime = Field(sa_type=UTCDateTime)
    revoked_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    joins: int = 0  # every join through it, first or not
    reported_at: datetime | None = Field(default=None, sa_type=UTCDateTime)  # quiet joiners


class Referral(SQLModel, table=True):
    """A member's first join of a group through one of the bot's links. One per member and
    group, ever: someone who was in the group before is never a referral."""

    __tablename__ = "referrals"
    __table_args__ = (
        UniqueConstraint("chat_id", "invitee_id", name="uq_referrals_invitee"),
        Index("ix_referrals_state", "state", "joined_at"),
        Index("ix_referrals_inviter", "chat_id", "inviter_id"),
        Index("ix_referrals_link", "link_id"),
    )

    id: int | None = Field(default=None, sa_type=EventId, primary_key=True)
    chat_id: int = Field(sa_type=ChatId)
    invitee_id: int = Field(sa_type=ChatId)
    link_id: int = Field(sa_type=EventId)
    inviter_id: int | None = Field(default=None, sa_type=ChatId)  # None: a campaign's join
    joined_at: datetime = Field(sa_type=UTCDateTime)
    via_request: bool = False
    state: str = ReferralState.PENDING
    reason: str | None = None  # why it is void or reversed, or why it waits (the daily cap)
    qualified_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    decided_at: datetime | None = Field(default=None, sa_type=UTCDateTime)  # void or reversed
    left_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


INVITE_LINKS: Table = InviteLink.__table__  # type: ignore[attr-defined]
REFERRALS: Table = Referral.__table__  # type: ignore[attr-defined]
