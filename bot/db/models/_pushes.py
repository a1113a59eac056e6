"""Pushes (messages the bot starts on its own), broadcasts, lives and content rotations."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, Index, Table
from sqlmodel import Field, SQLModel

from ._columns import ChatId, EventId, UTCDateTime


class PushStatus(StrEnum):
    """Where a queued push (a broadcast's message, a live's announcement or reminder) is."""

    PENDING = "pending"  # waiting for `due_at` (maybe moved on by quiet hours or the cap)
    QUEUED = "queued"  # handed to the delivery service, which has not tried it yet
    SENDING = "sending"  # Telegram was asked; after a crash it may have arrived
    SENT = "sent"
    FAILED = "failed"
    DROPPED = "dropped"  # not sent on purpose: over the daily cap, or too late
    CANCELLED = "cancelled"


class PushKind(StrEnum):
    """What a push sends; live pushes are rendered when they go, from the live as it is then."""

    TEXT = "text"  # `text` as stored (a broadcast, an SOP's broadcast step)
    SOP = "sop"  # an SOP `send` step's message, rendered when claimed; `ref` names its runs
    LOTTERY_POST = "lottery_post"  # a lottery's post with its Enter button
    LOTTERY_ANNOUNCE = "lottery_announce"  # a drawn lottery's winners
    LIVE_ANNOUNCE = "live_announce"
    LIVE_REMINDER = "live_reminder"
    LIVE_PRIVATE = "live_private"  # a subscriber's private reminder
    LIVE_UNPIN = "live_unpin"  # unpin the announcement once the live is over


class Broadcast(SQLModel, table=True):
    """A message pushed to many groups at once; its pushes say how far it got in each."""

    __tablename__ = "broadcasts"

    id: int | None = Field(default=None, sa_type=EventId, primary_key=True)
    template: str | None = None  # the text key, or None for a text given as is
    text: str | None = None  # the text given as is (HTML)
    target: str  # "all", or "tags:a,b", or "ids:-100…,-100…"
    urgent: bool = False  # sent in quiet hours and over the daily cap
    over_cap: str = "postpone"  # postpone | drop
    pin: bool = False
    source: str  # cli, command:<user id>
    created_by: int | None = Field(default=None, sa_type=ChatId)
    created_at: datetime = Field(sa_type=UTCDateTime)
    confirmed_at: datetime | None = Field(default=None, sa_type=UTCDateTime)  # None: a draft
    groups: int = 0  # pushes created when confirmed


class Push(SQLModel, table=True):
    """One message the bot starts on its own, queued so that it goes once, when allowed.

    `key` makes it unique (a broadcast reaches a group once; a live's reminder at one offset
    once). The queue claims due pushes (status `sending`) before handing them to the delivery
    service, so a restart never sends one twice; `group_id` is the group whose quiet hours and
    daily cap apply (the live's group for a private reminder).
    """

    __tablename__ = "pushes"
    __table_args__ = (
        Index("ix_pushes_due", "status", "due_at"),
        Index("ix_pushes_group_claimed", "group_id", "claimed_at"),
    )

    id: int | None = Field(default=None, sa_type=EventId, primary_key=True)
    key: str = Field(unique=True)
    kind: str
    chat_id: int = Field(sa_type=ChatId)  # where it goes
    group_id: int = Field(sa_type=ChatId)
    broadcast_id: int | None = Field(default=None, sa_type=EventId, index=True)
    live_id: int | None = Field(default=None, sa_type=EventId, index=True)
    before: str | None = None  # a live reminder: how long before the start (1d, 1h, 10m, 0s)
    text: str | None = None
    markup: dict[str, Any] | None = Field(default=None, sa_type=JSON)
    photo: str | None = None  # a photo's URL or file under content/, `text` its caption
    reply_to: int | None = Field(default=None, sa_type=ChatId)  # the message it answers
    combine: str | None = None  # texts alike with this key may share one message
    ref: dict[str, Any] | None = Field(default=None, sa_type=JSON)  # what its owner needs after
    pin: bool = False
    urgent: bool = False  # goes at once: neither quiet hours nor the daily cap hold it
    over_cap: str = "postpone"
    counts: bool = True  # counts toward the group's daily cap
    source: str
    status: str = PushStatus.PENDING
    planned_at: datetime = Field(sa_type=UTCDateTime)  # when it was meant to go
    due_at: datetime = Field(sa_type=UTCDateTime)  # when it may go (later when postponed)
    expires_at: datetime | None = Field(default=None, sa_type=UTCDateTime)  # dropped after
    note: str | None = None  # why postponed, dropped or failed
    attempts: int = 0
    message_id: int | None = None
    created_at: datetime = Field(sa_type=UTCDateTime)
    claimed_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    sent_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


class LiveStatus(StrEnum):
    SCHEDULED = "scheduled"
    CANCELLED = "cancelled"


class Live(SQLModel, table=True):
    """A live-stream session in a group: its announcement (pinned until it ends) and reminders.

    `revision` goes up when the live moves; reminders carry it in their key, so the moved
    live gets a fresh set and the old pending ones are cancelled."""

    __tablename__ = "lives"
    __table_args__ = (Index("ix_lives_group_starts", "chat_id", "starts_at"),)

    id: int | None = Field(default=None, sa_type=EventId, primary_key=True)
    key: str | None = Field(default=None, unique=True)  # an SOP step's run and step
    chat_id: int = Field(sa_type=ChatId)
    title: str
    host: str = ""
    url: str | None = None
    timezone: str  # the wall clock of its start and day-long reminder offsets
    starts_at: datetime = Field(sa_type=UTCDateTime)
    ends_at: datetime = Field(sa_type=UTCDateTime)
    reminders: list[str] = Field(default_factory=list, sa_type=JSON)  # offsets: 1d, 1h, 0s
    pin: bool = True
    status: str = LiveStatus.SCHEDULED
    revision: int = 0
    message_id: int | None = None  # the announcement
    source: str  # command:<user id>, sop:<id>
    created_by: int | None = Field(default=None, sa_type=ChatId)
    created_at: datetime = Field(sa_type=UTCDateTime)


class LiveSubscription(SQLModel, table=True):
    """A member who pressed "Remind me": they get the live's reminders privately too."""

    __tablename__ = "live_subscriptions"

    live_id: int = Field(
        sa_type=EventId, primary_key=True, sa_column_kwargs={"autoincrement": False}
    )
    user_id: int = Field(
        sa_type=ChatId, primary_key=True, sa_column_kwargs={"autoincrement": False}
    )
    at: datetime = Field(sa_type=UTCDateTime)


class Rotation(SQLModel, table=True):
    """How far a group is through a list of content items (the daily tip): the next to send."""

    __tablename__ = "rotations"

    chat_id: int = Field(
        sa_type=ChatId, primary_key=True, sa_column_kwargs={"autoincrement": False}
    )
    name: str = Field(primary_key=True)
    position: int = 0


# The tables as SQLAlchemy Core sees them, for bulk writes and exports.
BROADCASTS: Table = Broadcast.__table__  # type: ignore[attr-defined]
PUSHES: Table = Push.__table__  # type: ignore[attr-defined]
LIVES: Table = Live.__table__  # type: ignore[attr-defined]
LIVE_SUBSCRIPTIONS: Table = LiveSubscription.__table__  # type: ignore[attr-defined]
ROTATIONS: Table = Rotation.__table__  # type: ignore[attr-defined]
