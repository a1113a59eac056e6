"""The analytics the events are rolled up into: daily totals, tiers, health, SOP responses."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy import JSON, Index, Table
from sqlmodel import Field, SQLModel

from ._columns import ChatId, EventId, UTCDateTime, id_key


class GroupDay(SQLModel, table=True):
    """A group's totals for one day of its own calendar, kept up to date from the events."""

    __tablename__ = "group_days"

    chat_id: int = id_key()
    day: date = Field(primary_key=True)
    messages: int = 0
    joins: int = 0
    leaves: int = 0
    presses: int = 0
    lottery_entries: int = 0
    live_subscriptions: int = 0
    live_clicks: int = 0


class MemberDay(SQLModel, table=True):
    """A member's activity in a group on one day of the group's calendar (messages, presses)."""

    __tablename__ = "member_days"
    # Covering: a window's rows of a group are read from the index alone.
    __table_args__ = (
        Index("ix_member_days_group_day", "chat_id", "day", "user_id", "messages", "presses"),
    )

    chat_id: int = id_key()
    user_id: int = id_key()
    day: date = Field(primary_key=True)
    messages: int = 0
    presses: int = 0


class GroupHour(SQLModel, table=True):
    """Messages in a group per hour of a day of its calendar: the hour-of-week heatmap."""

    __tablename__ = "group_hours"

    chat_id: int = id_key()
    day: date = Field(primary_key=True)
    hour: int = Field(primary_key=True, sa_column_kwargs={"autoincrement": False})
    messages: int = 0


class SopSend(SQLModel, table=True):
    """A message an SOP sent to one member, and when the member first answered it (wrote in
    the group or pressed a button there) within the response window."""

    __tablename__ = "sop_sends"
    __table_args__ = (Index("ix_sop_sends_group_sent", "chat_id", "sent_at"),)

    id: int | None = Field(default=None, sa_type=EventId, primary_key=True)
    chat_id: int = Field(sa_type=ChatId)
    user_id: int = Field(sa_type=ChatId)
    sop: str
    step: str
    variant: str | None = None
    sent_at: datetime = Field(sa_type=UTCDateTime)
    responded_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


class RollupState(SQLModel, table=True):
    """How far the rollups have read the events: the id of the last event counted."""

    __tablename__ = "rollup_state"

    name: str = Field(primary_key=True)
    position: int = Field(default=0, sa_type=EventId)


class TierChange(SQLModel, table=True):
    """A member's move from one tier to another, on the day the daily computation saw it."""

    __tablename__ = "tier_changes"
    __table_args__ = (Index("ix_tier_changes_group_at", "chat_id", "at"),)

    id: int | None = Field(default=None, sa_type=EventId, primary_key=True)
    chat_id: int = Field(sa_type=ChatId)
    user_id: int = Field(sa_type=ChatId)
    old: str
    new: str
    at: datetime = Field(sa_type=UTCDateTime)


class GroupCheck(SQLModel, table=True):
    """The last day whose daily work (tiers, health, alerts) is done for a group."""

    __tablename__ = "group_checks"

    chat_id: int = id_key()
    day: date


class HealthScore(SQLModel, table=True):
    """A group's health score for the 7 days ending on `day`, as the daily job computed it."""

    __tablename__ = "health_scores"

    chat_id: int = id_key()
    day: date = Field(primary_key=True)
    score: int
    parts: dict[str, Any] = Field(default_factory=dict, sa_type=JSON)


class HealthAlert(SQLModel, table=True):
    """An alert raised for a group, once per kind and period (a week, a silent spell)."""

    __tablename__ = "health_alerts"

    chat_id: int = id_key()
    kind: str = Field(primary_key=True)  # drop | silent
    period: str = Field(primary_key=True)  # 2026-W47, or the day the silence began
    at: datetime = Field(sa_type=UTCDateTime)
    detail: dict[str, Any] = Field(default_factory=dict, sa_type=JSON)


# The tables as SQLAlchemy Core sees them, for bulk writes and exports.
GROUP_DAYS: Table = GroupDay.__table__  # type: ignore[attr-defined]
MEMBER_DAYS: Table = MemberDay.__table__  # type: ignore[attr-defined]
GROUP_HOURS: Table = GroupHour.__table__  # type: ignore[attr-defined]
SOP_SENDS: Table = SopSend.__table__  # type: ignore[attr-defined]
ROLLUP_STATE: Table = RollupState.__table__  # type: ignore[attr-defined]
TIER_CHANGES: Table = TierChange.__table__  # type: ignore[attr-defined]
GROUP_CHECKS: Table = GroupCheck.__table__  # type: ignore[attr-defined]
HEALTH_SCORES: Table = HealthScore.__table__  # type: ignore[attr-defined]
HEALTH_ALERTS: Table = HealthAlert.__table__  # type: ignore[attr-defined]
