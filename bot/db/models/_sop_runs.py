"""The SOP engine's state: runs, the steps they began, and SOPs switched on or off per group."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, Index, Table
from sqlmodel import Field, SQLModel

from ._columns import ChatId, EventId, UTCDateTime, id_key


class RunStatus(StrEnum):
    """Where an SOP run is in its life."""

    SCHEDULED = "scheduled"  # runs its current step at `wake_at`
    WAITING = "waiting"  # inside a wait step: finishes it at `wake_at` or on `wait_event`
    RUNNING = "running"  # a step is being executed
    SENDING = "sending"  # a send step was claimed; its outcome is not recorded yet
    QUEUED = "queued"  # mode `queued`: starts when the run before it ends
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"
    SKIPPED = "skipped"  # came due while the bot was down, beyond the SOP's catch-up grace

    @property
    def is_over(self) -> bool:
        return self in OVER


OVER = frozenset({RunStatus.DONE, RunStatus.FAILED, RunStatus.CANCELLED, RunStatus.SKIPPED})
LIVE = frozenset({RunStatus.SCHEDULED, RunStatus.WAITING, RunStatus.RUNNING, RunStatus.SENDING})


class SopRun(SQLModel, table=True):
    """One run of an SOP for a member (or a whole group): its position, variables and status.

    `position` is the path of the current step (`3`, `3.then.0`); `seq` counts the steps the
    run has begun, and `sop_steps` has one row per begun step keyed by (run, seq), so a step
    is never begun twice. Runs started by one trigger together (joins within a minute, a daily
    digest) share a `batch` and send their shared message once.
    """

    __tablename__ = "sop_runs"
    __table_args__ = (
        Index("ix_sop_runs_due", "status", "wake_at"),
        # A member's (or the group's) runs of an SOP, newest start last: a trigger's cooldown
        # reads the last start with one seek.
        Index("ix_sop_runs_started", "sop_id", "chat_id", "user_id", "created_at"),
    )

    id: int | None = Field(default=None, sa_type=EventId, primary_key=True)
    sop_id: str
    chat_id: int = Field(sa_type=ChatId)
    user_id: int | None = Field(default=None, sa_type=ChatId)
    status: str
    position: str = "0"
    seq: int = 0
    variables: dict[str, Any] = Field(default_factory=dict, sa_type=JSON)
    batch: str | None = None
    trigger: str
    sop_digest: str = ""
    wake_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    wait_event: str | None = None
    error: str | None = None
    created_at: datetime = Field(sa_type=UTCDateTime)
    updated_at: datetime = Field(sa_type=UTCDateTime)
    finished_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


class SopStep(SQLModel, table=True):
    """A step a run began: claimed before it acts, so a restart never repeats it."""

    __tablename__ = "sop_steps"

    run_id: int = id_key(EventId)
    seq: int = Field(primary_key=True, sa_column_kwargs={"autoincrement": False})
    step: str
    action: str
    status: str  # started, done, failed, interrupted, disabled
    variant: str | None = None
    chat_id: int | None = Field(default=None, sa_type=ChatId)
    message_id: int | None = None
    error: str | None = None
    started_at: datetime = Field(sa_type=UTCDateTime)
    finished_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


class SopGroupSetting(SQLModel, table=True):
    """An SOP switched on or off in one group by an admin (`/sop_on`, `/sop_off`)."""

    __tablename__ = "sop_group_settings"

    sop_id: str = Field(primary_key=True)
    chat_id: int = id_key()
    enabled: bool
    changed_by: int | None = Field(default=None, sa_type=ChatId)
    changed_at: datetime = Field(sa_type=UTCDateTime)


# The tables as SQLAlchemy Core sees them, for bulk writes and exports.
SOP_RUNS: Table = SopRun.__table__  # type: ignore[attr-defined]
SOP_STEPS: Table = SopStep.__table__  # type: ignore[attr-defined]
SOP_GROUP_SETTINGS: Table = SopGroupSetting.__table__  # type: ignore[attr-defined]
