"""Points (the ledger and balances), check-ins, and reward stock and orders."""

from __future__ import annotations

from datetime import date, datetime
from enum import StrEnum

from sqlalchemy import CheckConstraint, Index, Table, UniqueConstraint
from sqlmodel import Field, SQLModel

from ._columns import ChatId, EventId, UTCDateTime, id_key


class PointsEntry(SQLModel, table=True):
    """One change of a member's points, with its reason. Rows are only ever appended."""

    __tablename__ = "points_ledger"
    __table_args__ = (Index("ix_points_ledger_member", "chat_id", "user_id"),)

    id: int | None = Field(default=None, sa_type=EventId, primary_key=True)
    chat_id: int = Field(sa_type=ChatId)
    user_id: int = Field(sa_type=ChatId)
    delta: int
    reason: str
    source: str
    at: datetime = Field(sa_type=UTCDateTime)


class PointsBalance(SQLModel, table=True):
    """A member's points in a group: the sum of their ledger rows, kept with every change.

    Spending checks and moves the balance in one conditional UPDATE, so two spends at once can
    never both pass, and the check constraint keeps it from going below zero whatever happens.
    """

    __tablename__ = "points_balances"
    __table_args__ = (CheckConstraint("balance >= 0", name="ck_points_balances_not_negative"),)

    chat_id: int = id_key()
    user_id: int = id_key()
    balance: int = 0
    updated_at: datetime = Field(sa_type=UTCDateTime)


class Checkin(SQLModel, table=True):
    """A member's check-in in a group for one day (the group's day, see bot.checkin.days).

    The unique key is what makes a double tap count once. The latest row of a member holds
    their streak, so the next check-in reads one row."""

    __tablename__ = "checkins"
    __table_args__ = (
        UniqueConstraint("chat_id", "user_id", "day", name="uq_checkins_member_day"),
        Index("ix_checkins_group_day", "chat_id", "day"),
    )

    id: int | None = Field(default=None, sa_type=EventId, primary_key=True)
    chat_id: int = Field(sa_type=ChatId)
    user_id: int = Field(sa_type=ChatId)
    day: date
    at: datetime = Field(sa_type=UTCDateTime)
    streak: int  # check-in days in a row, this one included
    frozen: int = 0  # missed days of this day's month that the streak got over
    points: int = 0  # credited for it, streak bonus included
    run_id: int | None = Field(default=None, sa_type=EventId)  # the SOP run that made it


class OrderStatus(StrEnum):
    """Where a reward order stands."""

    OPEN = "open"
    FULFILLED = "fulfilled"
    CANCELLED = "cancelled"


class RewardStock(SQLModel, table=True):
    """How many of a reward (from the catalogue in content/) are taken by orders not cancelled.

    The catalogue says the stock; taking one is a conditional UPDATE of `taken`, so two members
    redeeming the last one at once cannot both get it, and raising the stock in the file simply
    makes more available."""

    __tablename__ = "reward_stock"
    __table_args__ = (CheckConstraint("taken >= 0", name="ck_reward_stock_not_negative"),)

    reward_id: str = Field(primary_key=True)
    taken: int = 0


class Order(SQLModel, table=True):
    """A member's redemption of a reward: points spent, waiting for an admin to hand it over."""

    __tablename__ = "orders"
    __table_args__ = (
        Index("ix_orders_group_status", "chat_id", "status"),
        Index("ix_orders_reward_member", "reward_id", "user_id"),
    )

    id: int | None = Field(default=None, sa_type=EventId, primary_key=True)
    chat_id: int = Field(sa_type=ChatId)
    user_id: int = Field(sa_type=ChatId)
    reward_id: str
    reward_name: str  # as the catalogue named it when ordered
    cost: int
    status: str = OrderStatus.OPEN
    created_at: datetime = Field(sa_type=UTCDateTime)
    closed_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    closed_by: int | None = Field(default=None, sa_type=ChatId)  # the admin who closed it


# The tables as SQLAlchemy Core sees them, for bulk writes and exports.
POINTS: Table = PointsEntry.__table__  # type: ignore[attr-defined]
BALANCES: Table = PointsBalance.__table__  # type: ignore[attr-defined]
CHECKINS: Table = Checkin.__table__  # type: ignore[attr-defined]
REWARD_STOCK: Table = RewardStock.__table__  # type: ignore[attr-defined]
ORDERS: Table = Order.__table__  # type: ignore[attr-defined]
