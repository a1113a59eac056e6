"""Moderation: each group's mode, who of its newcomers is approved, every action taken (the
moderation log), the verdicts of the first-message checks, and texts admins said were not spam."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Index, Table
from sqlmodel import Field, SQLModel

from ._columns import ChatId, EventId, UTCDateTime, id_key


class ModerationGroup(SQLModel, table=True):
    """A group's moderation mode (on, off, dry), and what the bot told its admins when."""

    __tablename__ = "moderation_groups"

    chat_id: int = id_key()
    mode: str = "on"
    changed_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    changed_by: int | None = Field(default=None, sa_type=ChatId)
    summary_at: datetime | None = Field(default=None, sa_type=UTCDateTime)  # the last dry summary
    rights_told_at: datetime | None = Field(default=None, sa_type=UTCDateTime)  # missing rights


class ModerationMember(SQLModel, table=True):
    """A member who joined while the bot watched, and whether they are approved yet: newcomers'
    first substantive messages are checked until `checked` reaches the group's number."""

    __tablename__ = "moderation_members"
    __table_args__ = (Index("ix_moderation_members_pending", "approved_at"),)

    chat_id: int = id_key()
    user_id: int = id_key()
    joined_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    checked: int = 0  # substantive messages that passed the checks
    approved_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    approved_by: str | None = None  # checks | added | admin:<id> | not_spam:<id> | before


class ModerationAction(SQLModel, table=True):
    """One moderation action: who or which SOP (`by`), why, which check, and whether it was
    only recorded (`dry`) or failed. Undone by an admin ("Not spam", /unban): `undone_*`."""

    __tablename__ = "moderation_actions"
    __table_args__ = (
        Index("ix_moderation_actions_chat", "chat_id", "at"),
        Index("ix_moderation_actions_member", "chat_id", "user_id", "action"),
    )

    id: int | None = Field(default=None, sa_type=EventId, primary_key=True)
    chat_id: int = Field(sa_type=ChatId)
    user_id: int | None = Field(default=None, sa_type=ChatId)
    action: str  # restrict unrestrict mute kick ban unban delete warn approve
    by: str  # sop:<id> | checks | admin:<id>
    reason: str = ""
    check: str | None = None
    message_id: int | None = None
    text: str | None = None  # a deleted message's text, kept for the admins' review
    until: datetime | None = Field(default=None, sa_type=UTCDateTime)
    dry: bool = False
    ok: bool = True
    error: str | None = None
    at: datetime = Field(sa_type=UTCDateTime)
    undone_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    undone_by: str | None = None


class ModerationVerdict(SQLModel, table=True):
    """The first-message checks' verdicts on one message of a newcomer (or its edit)."""

    __tablename__ = "moderation_verdicts"
    __table_args__ = (Index("ix_moderation_verdicts_chat", "chat_id", "at"),)

    id: int | None = Field(default=None, sa_type=EventId, primary_key=True)
    chat_id: int = Field(sa_type=ChatId)
    user_id: int = Field(sa_type=ChatId)
    message_id: int
    at: datetime = Field(sa_type=UTCDateTime)
    edited: bool = False
    spam: bool = False
    judgement: dict[str, Any] = Field(default_factory=dict, sa_type=JSON)
    action_id: int | None = Field(default=None, sa_type=EventId)


class ModerationSample(SQLModel, table=True):
    """A text an admin said was not spam: the same text passes the checks from then on."""

    __tablename__ = "moderation_samples"

    id: int | None = Field(default=None, sa_type=EventId, primary_key=True)
    kind: str = "not_spam"
    text: str
    chat_id: int | None = Field(default=None, sa_type=ChatId)
    added_by: int | None = Field(default=None, sa_type=ChatId)
    at: datetime = Field(sa_type=UTCDateTime)


MODERATION_GROUPS: Table = ModerationGroup.__table__  # type: ignore[attr-defined]
MODERATION_MEMBERS: Table = ModerationMember.__table__  # type: ignore[attr-defined]
MODERATION_ACTIONS: Table = ModerationAction.__table__  # type: ignore[attr-defined]
MODERATION_VERDICTS: Table = ModerationVerdict.__table__  # type: ignore[attr-defined]
MODERATION_SAMPLES: Table = ModerationSample.__table__  # type: ignore[attr-defined]
