"""The operator console's own state: sign-in links, sessions, API tokens and the changes made."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Index, Table
from sqlmodel import Field, SQLModel

from ._columns import ChatId, EventId, UTCDateTime


class ConsoleLink(SQLModel, table=True):
    """A one-time sign-in link (only its hash is kept): valid for minutes, usable once."""

    __tablename__ = "console_links"

    token_hash: str = Field(primary_key=True)
    user_id: int = Field(sa_type=ChatId)
    created_at: datetime = Field(sa_type=UTCDateTime)
    expires_at: datetime = Field(sa_type=UTCDateTime)
    used_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


class ConsoleSession(SQLModel, table=True):
    """A signed-in browser. `groups` are those its admin may see (None for an owner), as
    Telegram said at `checked_at`."""

    __tablename__ = "console_sessions"

    id: str = Field(primary_key=True)
    user_id: int = Field(sa_type=ChatId, index=True)
    name: str = ""
    created_at: datetime = Field(sa_type=UTCDateTime)
    expires_at: datetime = Field(sa_type=UTCDateTime)
    ended_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    csrf: str = ""
    groups: list[int] | None = Field(default=None, sa_type=JSON)
    checked_at: datetime = Field(sa_type=UTCDateTime)


class ConsoleToken(SQLModel, table=True):
    """An owner's API token for scripts (only its hash is kept)."""

    __tablename__ = "console_tokens"

    token_hash: str = Field(primary_key=True)
    user_id: int = Field(sa_type=ChatId, index=True)
    label: str = ""
    created_at: datetime = Field(sa_type=UTCDateTime)
    revoked_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


class ConsoleChange(SQLModel, table=True):
    """One change made from the console: who, when, what, where."""

    __tablename__ = "console_changes"
    __table_args__ = (Index("ix_console_changes_chat", "chat_id", "id"),)

    id: int | None = Field(default=None, sa_type=EventId, primary_key=True)
    at: datetime = Field(sa_type=UTCDateTime)
    user_id: int = Field(sa_type=ChatId)
    chat_id: int | None = Field(default=None, sa_type=ChatId)
    area: str  # group, sop, broadcast, member, order, token
    action: str
    details: dict[str, Any] = Field(default_factory=dict, sa_type=JSON)


CONSOLE_LINKS: Table = ConsoleLink.__table__  # type: ignore[attr-defined]
CONSOLE_SESSIONS: Table = ConsoleSession.__table__  # type: ignore[attr-defined]
CONSOLE_TOKENS: Table = ConsoleToken.__table__  # type: ignore[attr-defined]
CONSOLE_CHANGES: Table = ConsoleChange.__table__  # type: ignore[attr-defined]
