"""Tables: the groups the bot is in, their members, the activity log and what the bot sent."""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, BigInteger, DateTime, Index, Integer, Table
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator
from sqlmodel import Field, SQLModel


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware datetimes stored as UTC; SQLite gets naive UTC, PostgreSQL timestamptz."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is not UTC:  # aiogram's dates are already UTC: the common case is cheap
            if value.tzinfo is None:
                raise ValueError("naive datetime given to a UTC column")
            value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


ChatId = BigInteger
EventId = BigInteger().with_variant(Integer(), "sqlite")


def utcnow() -> datetime:
    """The current time, timezone-aware, in UTC."""
    return datetime.now(UTC)


class GroupStatus(StrEnum):
    """Whether the bot is in a group."""

    ACTIVE = "active"
    LEFT = "left"
    KICKED = "kicked"
    MIGRATED = "migrated"


class MemberStatus(StrEnum):
    """A member's standing in a group, as Telegram reports it."""

    CREATOR = "creator"
    ADMINISTRATOR = "administrator"
    MEMBER = "member"
    RESTRICTED = "restricted"
    LEFT = "left"
    KICKED = "kicked"

    @property
    def is_present(self) -> bool:
        return self in PRESENT


PRESENT = frozenset(
    {MemberStatus.CREATOR, MemberStatus.ADMINISTRATOR, MemberStatus.MEMBER, MemberStatus.RESTRICTED}
)


class EventType(StrEnum):
    """What an event in the activity log records."""

    MESSAGE = "message"
    COMMAND = "command"
    BOT_MESSAGE = "bot_message"
    CALLBACK = "callback"
    MEMBER_JOINED = "member_joined"
    MEMBER_LEFT = "member_left"
    MEMBER_KICKED = "member_kicked"
    BOT_ADDED = "bot_added"
    BOT_PROMOTED = "bot_promoted"
    BOT_DEMOTED = "bot_demoted"
    BOT_LEFT = "bot_left"
    BOT_KICKED = "bot_kicked"
    GROUP_MIGRATED = "group_migrated"


class DeliveryStatus(StrEnum):
    """How a delivery ended."""

    SENT = "sent"
    FAILED = "failed"


class Group(SQLModel, table=True):
    """A group or supergroup the bot has been in; `id` is Telegram's chat id."""

    __tablename__ = "groups"

    id: int = Field(sa_type=ChatId, primary_key=True, sa_column_kwargs={"autoincrement": False})
    title: str = ""
    type: str = "supergroup"
    username: str | None = None
    status: str = Field(default=GroupStatus.ACTIVE, index=True)
    bot_status: str | None = None
    timezone: str | None = None
    language: str | None = None
    tags: list[str] = Field(default_factory=list, sa_type=JSON)
    missing_rights: list[str] = Field(default_factory=list, sa_type=JSON)
    migrated_from_id: int | None = Field(default=None, sa_type=ChatId)
    migrated_to_id: int | None = Field(default=None, sa_type=ChatId)
    first_seen_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class Member(SQLModel, table=True):
    """A user's membership of one group, with joins, leaves and activity totals."""

    __tablename__ = "members"

    chat_id: int = Field(
        sa_type=ChatId, primary_key=True, sa_column_kwargs={"autoincrement": False}
    )
    user_id: int = Field(
        sa_type=ChatId, primary_key=True, sa_column_kwargs={"autoincrement": False}
    )
    first_name: str = ""
    last_name: str | None = None
    username: str | None = None
    is_bot: bool = False
    status: str = MemberStatus.MEMBER
    joined_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    left_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    invite_link: str | None = None
    first_activity_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    last_activity_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    message_count: int = 0


class Event(SQLModel, table=True):
    """One thing that happened in a group. Rows are only ever appended.

    The log is written thousands of rows a second, so it carries one index, on time, which
    grows at its end like the primary key. Readers go by `id` (incremental rollups) or by a
    time window; an index per chat or member cost four to eight times as much per write.
    """

    __tablename__ = "events"
    __table_args__ = (Index("ix_events_at", "at"),)

    id: int | None = Field(default=None, sa_type=EventId, primary_key=True)
    chat_id: int = Field(sa_type=ChatId)
    user_id: int | None = Field(default=None, sa_type=ChatId)
    at: datetime = Field(sa_type=UTCDateTime)
    type: str
    kind: str | None = None
    message_id: int | None = None
    text_length: int | None = None
    is_reply: bool = False
    is_forward: bool = False
    text: str | None = None
    data: dict[str, Any] | None = Field(default=None, sa_type=JSON)


class Delivery(SQLModel, table=True):
    """One message the bot sent (or edited, deleted, pinned), or failed to, and who asked.

    Rows are appended in batches once a delivery is over. `chat_id` is where it went in the
    end (a group may have become a supergroup meanwhile); `sent_at` is empty for failures.
    """

    __tablename__ = "deliveries"

    id: int | None = Field(default=None, sa_type=EventId, primary_key=True)
    chat_id: int = Field(sa_type=ChatId)
    requested_chat_id: int = Field(sa_type=ChatId)
    method: str
    source: str
    status: str
    error: str | None = None
    message_id: int | None = None
    attempts: int = 0
    queued_at: datetime = Field(sa_type=UTCDateTime)
    sent_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


# The tables as SQLAlchemy Core sees them, for bulk writes and exports.
GROUPS: Table = Group.__table__  # type: ignore[attr-defined]
MEMBERS: Table = Member.__table__  # type: ignore[attr-defined]
EVENTS: Table = Event.__table__  # type: ignore[attr-defined]
DELIVERIES: Table = Delivery.__table__  # type: ignore[attr-defined]
