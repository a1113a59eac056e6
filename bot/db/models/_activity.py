"""The activity log, the deliveries of what the bot sent, and its scheduled deletions."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, Index, Table
from sqlmodel import Field, SQLModel

from ._columns import ChatId, EventId, UTCDateTime


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
    SOP_SENT = "sop_sent"
    EMITTED = "emitted"
    LOTTERY_ENTERED = "lottery_entered"
    LIVE_SUBSCRIBED = "live_subscribed"  # a member asked for a private reminder of a live
    LIVE_CLICKED = "live_clicked"  # a member opened a live's link through the bot
    JOIN_REQUEST = "join_request"  # a request to join, and what the bot did with it


class DeliveryStatus(StrEnum):
    """How a delivery ended."""

    SENT = "sent"
    FAILED = "failed"


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


class ScheduledDeletion(SQLModel, table=True):
    """A message the bot sent that it deletes at `due_at` (kept tidy, survives restarts)."""

    __tablename__ = "scheduled_deletions"

    id: int | None = Field(default=None, sa_type=EventId, primary_key=True)
    chat_id: int = Field(sa_type=ChatId)
    message_id: int
    source: str
    due_at: datetime = Field(sa_type=UTCDateTime, index=True)


# The tables as SQLAlchemy Core sees them, for bulk writes and exports.
EVENTS: Table = Event.__table__  # type: ignore[attr-defined]
DELIVERIES: Table = Delivery.__table__  # type: ignore[attr-defined]
SCHEDULED_DELETIONS: Table = ScheduledDeletion.__table__  # type: ignore[attr-defined]
