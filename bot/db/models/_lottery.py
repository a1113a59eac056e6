"""Lotteries, their entries and the picks of their draws."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, Index, Table
from sqlmodel import Field, SQLModel

from ._columns import ChatId, EventId, UTCDateTime


class LotteryStatus(StrEnum):
    """Where a lottery is in its life."""

    OPEN = "open"  # taking entries until `draws_at`
    DRAWN = "drawn"
    CANCELLED = "cancelled"


class PickOutcome(StrEnum):
    """What became of one pick of a lottery's draw (see bot.lottery.draw)."""

    WON = "won"
    REPLACED = "replaced"  # a winner replaced by a reroll
    SKIPPED = "skipped"  # picked by a reroll but no longer eligible (left the group)


class Lottery(SQLModel, table=True):
    """A lottery in a group: its prize, rules, the committed seed, and how it ended.

    `seed` stays secret until the draw; `commitment` (its SHA-256) is published when the
    lottery opens, so the draw can be checked against it afterwards. `entry_count` is kept with
    every entry, in the transaction that adds it, so the cap holds when members press at once.
    """

    __tablename__ = "lotteries"
    __table_args__ = (Index("ix_lotteries_due", "status", "draws_at"),)

    id: int | None = Field(default=None, sa_type=EventId, primary_key=True)
    chat_id: int = Field(sa_type=ChatId, index=True)
    prize: str
    winners: int
    status: str = LotteryStatus.OPEN
    rules: dict[str, Any] = Field(default_factory=dict, sa_type=JSON)
    entry_cost: int = 0
    max_entries: int | None = None
    entry_count: int = 0
    claim: str = ""  # how winners claim the prize; empty: the default text
    seed: str
    commitment: str
    source: str  # command:<user id>, sop:<id>
    created_by: int | None = Field(default=None, sa_type=ChatId)
    run_id: int | None = Field(default=None, sa_type=EventId)  # the SOP run that opened it
    created_at: datetime = Field(sa_type=UTCDateTime)
    draws_at: datetime = Field(sa_type=UTCDateTime)
    message_id: int | None = None  # the post with the Enter button
    drawn_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    entrants: int | None = None  # eligible entrants at the draw
    entrants_digest: str | None = None
    announced_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    announcement_id: int | None = None
    closed_by: int | None = Field(default=None, sa_type=ChatId)  # who drew early or cancelled


class LotteryEntry(SQLModel, table=True):
    """A member's entry to a lottery: one per member, by the primary key.

    `in_draw` is empty until the draw, then says whether the entry was in the drawn list;
    `out_reason` says why not (the member left the group)."""

    __tablename__ = "lottery_entries"

    lottery_id: int = Field(
        sa_type=EventId, primary_key=True, sa_column_kwargs={"autoincrement": False}
    )
    user_id: int = Field(
        sa_type=ChatId, primary_key=True, sa_column_kwargs={"autoincrement": False}
    )
    entered_at: datetime = Field(sa_type=UTCDateTime)
    cost: int = 0
    in_draw: bool | None = None
    out_reason: str | None = None


class LotteryPick(SQLModel, table=True):
    """One pick of a lottery's draw, in order: the winners, then each reroll's picks."""

    __tablename__ = "lottery_picks"

    lottery_id: int = Field(
        sa_type=EventId, primary_key=True, sa_column_kwargs={"autoincrement": False}
    )
    pick: int = Field(primary_key=True, sa_column_kwargs={"autoincrement": False})
    user_id: int = Field(sa_type=ChatId)
    outcome: str
    reason: str | None = None  # why replaced or skipped
    at: datetime = Field(sa_type=UTCDateTime)
    by: int | None = Field(default=None, sa_type=ChatId)  # the admin who rerolled
    replaces: int | None = None  # the pick a reroll's winner replaces


# The tables as SQLAlchemy Core sees them, for bulk writes and exports.
LOTTERIES: Table = Lottery.__table__  # type: ignore[attr-defined]
LOTTERY_ENTRIES: Table = LotteryEntry.__table__  # type: ignore[attr-defined]
LOTTERY_PICKS: Table = LotteryPick.__table__  # type: ignore[attr-defined]
