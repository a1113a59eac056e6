"""SOP runs in the database: created, claimed when due, moved on step by step, in bulk.

Every change to a run is a conditional UPDATE on its `seq` (the number of steps it began), in
the same transaction as the step's journal row and the step's own effects (tags, points).
A step's effects and the run moving past it are committed together or not at all; a send is
claimed (journal row `started`, run `sending`) before Telegram is asked, so after a crash it
is never sent again: `recover` marks it `interrupted` instead.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Collection, Iterable, Sequence
from dataclasses import dataclass, field, fields
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, func, insert, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from bot.db import LIVE, SOP_RUNS, SOP_STEPS, RunStatus, writing
from bot.db.bulk import BulkStatements

CHUNK = 500
HELD_IN_QUERY = 20_000  # runs in hand the timer's query leaves out by their ids
Effects = Callable[[AsyncConnection], Awaitable[None]]


class RunMoved(Exception):
    """A run changed under us (its `seq` moved on): the transaction was rolled back."""


@dataclass(frozen=True)
class Failures:
    """Failed runs of an SOP over a time: how many, where, and the newest error and time."""

    count: int
    groups: list[int]
    last_error: str | None
    last_at: datetime | None


@dataclass(slots=True, eq=False)
class Run:
    """A run as the engine holds it while working on it."""

    id: int
    sop_id: str
    chat_id: int
    user_id: int | None
    status: RunStatus
    position: str
    seq: int
    variables: dict[str, Any]
    batch: str | None
    trigger: str
    wake_at: datetime | None = None
    wait_event: str | None = None
    error: str | None = None
    finished_at: datetime | None = None
    sop_digest: str = ""
    created_at: datetime | None = None  # when it started (what started it: `trigger`)
    _base_seq: int = field(default=0, repr=False)  # seq as stored, for the conditional update
    # Journal rows finished in memory, written with the run's next save (one transaction
    # instead of two when a wait ends and the next step follows at once).
    unsaved: list[StepRecord] = field(default_factory=list, repr=False)
    # Journal rows of steps done in memory only (an `if` on the run's variables), inserted
    # with the run's next save, which moves the run past them too.
    unbegun: list[StepRecord] = field(default_factory=list, repr=False)

    @classmethod
    def from_row(cls, row: Any) -> Run:
        """A run from a row of RUN_COLUMNS (unpacked by position: thousands are read at once)."""
        run_id, sop_id, chat_id, user_id, status, position, seq, variables, *rest = row
        status, variables = RunStatus(status), dict(variables or {})
        # `rest`: the fields from `batch` to `sop_digest`, in order; then `_base_seq`.
        return cls(run_id, sop_id, chat_id, user_id, status, position, seq, variables, *rest, seq)  # type: ignore[call-arg]


# The columns of a Run, in the order of its fields (what Run.from_row reads).
RUN_COLUMNS = tuple(SOP_RUNS.c[f.name] for f in fields(Run) if f.name in SOP_RUNS.c)


@dataclass(slots=True)
class StepRecord:
    """A row of the step journal."""

    run_id: int
    seq: int
    step: str
    action: str
    status: str
    started_at: datetime
    finished_at: datetime | None = None
    variant: str | None = None
    chat_id: int | None = None
    message_id: int | None = None
    error: str | None = None

    def row(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "seq": self.seq,
            "step": self.step,
            "action": self.action,
            "status": self.status,
            "variant": self.variant,
            "chat_id": self.chat_id,
            "message_id": self.message_id,
            "error": self.error,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
        }


def _bound(*columns: str) -> dict[str, Any]:
    """Each column set from the parameter of its own name, for executemany."""
    return {column: bindparam(column) for column in columns}


_SAVE = (
    update(SOP_RUNS)
    .where(SOP_RUNS.c.id == bindparam("_id"), SOP_RUNS.c.seq == bindparam("_seq"))
    .values(
        _bound(
            "status",
            "position",
            "seq",
            "variables",
            "wake_at",
            "wait_event",
            "batch",
            "error",
            "updated_at",
            "finished_at",
        )
    )
)
_BEGIN_STEP = insert(SOP_STEPS).values(_bound(*StepRecord.__dataclass_fields__))
_FINISH_STEP = (
    update(SOP_STEPS)
    .where(SOP_STEPS.c.run_id == bindparam("_run"), SOP_STEPS.c.seq == bindparam("_seq"))
    .values(_bound("status", "finished_at", "message_id", "chat_id", "error"))
)


@dataclass(slots=True)
class Due:
    """What the timer found: runs due now, and the next time one falls due."""

    runs: list[Run]
    next_wake: datetime | None
    held: bool  # runs in hand were left out: one may be let go unsaved, still due


class RunStore:
    """Reads and writes `sop_runs` and `sop_steps`."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self.bulk = BulkStatements()  # for the thousands of runs that move at the same time

    async def create(self, rows: list[dict[str, Any]]) -> list[Run]:
        """Insert new runs (dicts of sop_runs columns); return them with their ids (in no
        promised order: asking SQLite for the rows' order costs a statement per row)."""
        if not rows:
            return []
        created: list[Run] = []
        async with writing(self.engine) as conn:
            for start in range(0, len(rows), CHUNK):
                result = await conn.execute(
                    SOP_RUNS.insert().returning(*RUN_COLUMNS), rows[start : start + CHUNK]
                )
                created += [Run.from_row(row) for row in result]
        return created

    async def save(
        self,
        runs: Sequence[Run],
        now: datetime,
        *,
        begun: Iterable[StepRecord] = (),
        finished: Iterable[StepRecord] = (),
        effects: Effects | None = None,
        first: Effects | None = None,
    ) -> None:
        """Store the runs as they are now, with journal rows begun or finished and the step's
        effects, in one transaction; RunMoved (and nothing stored) if any run moved meanwhile.

        `first` runs in the transaction before anything is stored, so it may still change the
        runs (a check-in sets the variables the texts after it show)."""
        async with writing(self.engine) as conn:
            if first is not None:
                await first(conn)
            params = [
                {
                    "_id": run.id,
                    "_seq": run._base_seq,
                    "status": run.status.value,
                    "position": run.position,
                    "seq": run.seq,
                    "variables": run.variables,
                    "wake_at": run.wake_at,
                    "wait_event": run.wait_event,
                    "batch": run.batch,
                    "error": run.error,
                    "updated_at": now,
                    "finished_at": run.finished_at,
                }
                for run in runs
            ]
            begun_rows = [record.row() for run in runs for record in run.unbegun]
            begun_rows += [record.row() for record in begun]
            held = [record for run in runs for record in run.unsaved]
            finished_rows = [
                {
                    "_run": record.run_id,
                    "_seq": record.seq,
                    "status": record.status,
                    "finished_at": record.finished_at,
                    "message_id": record.message_id,
                    "chat_id": record.chat_id,
                    "error": record.error,
                }
                for record in (*held, *finished)
            ]
            if params:
                await self._save_runs(conn, params)
            if begun_rows:
                begin = self.bulk.get("begin step", conn, lambda: _BEGIN_STEP)
                await begin.execute(conn, begin.rows(begun_rows))
            if finished_rows:
                finish = self.bulk.get("finish step", conn, lambda: _FINISH_STEP)
                await finish.execute(conn, finish.rows(finished_rows))
            if effects is not None:
                await effects(conn)
        for run in runs:
            run._base_seq = run.seq
            run.unsaved.clear()
            run.unbegun.clear()

    async def _save_runs(self, conn: AsyncConnection, params: list[dict[str, Any]]) -> None:
        if len(params) == 1:
            changed = (await conn.execute(_SAVE, params)).rowcount
        elif conn.dialect.supports_sane_multi_rowcount:
            save = self.bulk.get("save", conn, lambda: _SAVE)
            changed = await save.execute(conn, save.rows(params))
        else:  # asyncpg cannot count the rows of an executemany: one statement per run
            changed = 0
            for one in params:
                changed += (await conn.execute(_SAVE, one)).rowcount
        if changed != len(params):
            raise RunMoved(f"{len(params) - changed} of {len(params)} runs moved meanwhile")

    async def claim_due(self, now: datetime, limit: int, exclude: set[int]) -> Due:
        """Runs whose time has come (scheduled, or waiting for a deadline), oldest first, and
        when the next of the others falls due.

        Runs in `exclude` (being worked on, maybe not saved yet) are left out by the database:
        every row read costs the driver's thread a turn at Python's lock, which under load can
        take milliseconds. (Past HELD_IN_QUERY of them, their ids alone are read and skipped.)
        """
        timed = SOP_RUNS.c.status.in_([RunStatus.SCHEDULED.value, RunStatus.WAITING.value])
        order = (SOP_RUNS.c.wake_at, SOP_RUNS.c.id)
        due = Due([], None, held=bool(exclude))
        few = len(exclude) <= HELD_IN_QUERY
        free = (SOP_RUNS.c.id.not_in(exclude),) if exclude and few else ()
        async with self.engine.connect() as conn:
            if few:
                rows = await conn.execute(
                    select(*RUN_COLUMNS)
                    .where(timed, SOP_RUNS.c.wake_at <= now, *free)
                    .order_by(*order)
                    .limit(limit)
                )
                due.runs = [Run.from_row(row) for row in rows]
            else:
                due.runs = await self._due_past(conn, now, limit, exclude)
            if len(due.runs) == limit:
                due.next_wake = now  # perhaps more
            else:
                later = await conn.execute(
                    select(SOP_RUNS.c.id, SOP_RUNS.c.wake_at)
                    .where(timed, SOP_RUNS.c.wake_at > now, *free)
                    .order_by(*order)
                    .limit(1 if few else len(exclude) + 1)
                )
                due.next_wake = next((at for run_id, at in later if run_id not in exclude), None)
        return due

    async def due_in_batches(
        self, batches: Collection[str], now: datetime, *, exclude: Collection[int]
    ) -> list[Run]:
        """Scheduled runs of these start batches that are due, but those in `exclude`."""
        query = select(*RUN_COLUMNS).where(
            SOP_RUNS.c.batch.in_(list(batches)),
            SOP_RUNS.c.status == RunStatus.SCHEDULED.value,
            SOP_RUNS.c.wake_at <= now,
        )
        async with self.engine.connect() as conn:
            rows = await conn.execute(query.order_by(SOP_RUNS.c.id))
            return [run for run in map(Run.from_row, rows) if run.id not in exclude]

    @staticmethod
    async def _due_past(
        conn: AsyncConnection, now: datetime, limit: int, exclude: set[int]
    ) -> list[Run]:
        """Due runs but those in `exclude`, skipped by their ids (too many for one query)."""
        timed = SOP_RUNS.c.status.in_([RunStatus.SCHEDULED.value, RunStatus.WAITING.value])
        is_due = (timed, SOP_RUNS.c.wake_at <= now)
        found = await conn.execute(
            select(SOP_RUNS.c.id)
            .where(*is_due)
            .order_by(SOP_RUNS.c.wake_at, SOP_RUNS.c.id)
            .limit(limit + len(exclude))
        )
        wanted = [run_id for (run_id,) in found if run_id not in exclude][:limit]
        runs: list[Run] = []
        for start in range(0, len(wanted), CHUNK):
            rows = await conn.execute(
                select(*RUN_COLUMNS).where(
                    SOP_RUNS.c.id.in_(wanted[start : start + CHUNK]), *is_due
                )
            )
            runs += [Run.from_row(row) for row in rows]
        runs.sort(key=lambda run: (run.wake_at, run.id))
        return runs

    async def next_wake(self) -> datetime | None:
        async with self.engine.connect() as conn:
            result = await conn.execute(
                select(func.min(SOP_RUNS.c.wake_at)).where(
                    SOP_RUNS.c.status.in_([RunStatus.SCHEDULED.value, RunStatus.WAITING.value])
                )
            )
            value: datetime | None = result.scalar_one()
            return value

    async def get(self, run_id: int) -> Run | None:
        async with self.engine.connect() as conn:
            row = (await conn.execute(select(*RUN_COLUMNS).where(SOP_RUNS.c.id == run_id))).first()
        return Run.from_row(row) if row is not None else None

    async def get_many(self, run_ids: Iterable[int]) -> list[Run]:
        """These runs as stored (those that exist), by id."""
        ids = sorted(set(run_ids))
        found: list[Run] = []
        async with self.engine.connect() as conn:
            for start in range(0, len(ids), CHUNK):
                part = ids[start : start + CHUNK]
                rows = await conn.execute(select(*RUN_COLUMNS).where(SOP_RUNS.c.id.in_(part)))
                found += [Run.from_row(row) for row in rows]
        return found

    async def pending(
        self,
        sop_id: str,
        chat_id: int,
        user_id: int | None,
        *,
        any_member: bool = False,
        members: Collection[int] = (),
    ) -> list[Run]:
        """Live and queued runs of an SOP in a group, for one member, for `members` too (or
        for anyone)."""
        query = select(*RUN_COLUMNS).where(
            SOP_RUNS.c.sop_id == sop_id,
            SOP_RUNS.c.chat_id == chat_id,
            SOP_RUNS.c.status.in_([*(s.value for s in LIVE), RunStatus.QUEUED.value]),
        )
        if not any_member:
            who = SOP_RUNS.c.user_id.is_(None) if user_id is None else SOP_RUNS.c.user_id == user_id
            if members:
                who = or_(who, SOP_RUNS.c.user_id.in_(list(members)))
            query = query.where(who)
        async with self.engine.connect() as conn:
            rows = await conn.execute(query.order_by(SOP_RUNS.c.id))
            return [Run.from_row(row) for row in rows]

    async def pending_in(
        self, sop_id: str, chats: Collection[int], members: Collection[int] | None = None
    ) -> list[Run]:
        """Live and queued runs of an SOP in these groups: for the group and for `members`
        (None: for anyone). One query for the runs a batch of starts may find in its way."""
        query = select(*RUN_COLUMNS).where(
            SOP_RUNS.c.sop_id == sop_id,
            SOP_RUNS.c.chat_id.in_(list(chats)),
            SOP_RUNS.c.status.in_([*(s.value for s in LIVE), RunStatus.QUEUED.value]),
        )
        if members is not None:
            query = query.where(
                or_(SOP_RUNS.c.user_id.is_(None), SOP_RUNS.c.user_id.in_(list(members)))
            )
        async with self.engine.connect() as conn:
            rows = await conn.execute(query.order_by(SOP_RUNS.c.id))
            return [Run.from_row(row) for row in rows]

    async def with_status(self, *statuses: RunStatus) -> list[Run]:
        async with self.engine.connect() as conn:
            rows = await conn.execute(
                select(*RUN_COLUMNS).where(SOP_RUNS.c.status.in_([s.value for s in statuses]))
            )
            return [Run.from_row(row) for row in rows]

    async def waiting_for_events(self) -> list[tuple[int, int, int | None, str]]:
        """(run id, chat, member, event) of every run waiting for an event."""
        async with self.engine.connect() as conn:
            rows = await conn.execute(
                select(
                    SOP_RUNS.c.id, SOP_RUNS.c.chat_id, SOP_RUNS.c.user_id, SOP_RUNS.c.wait_event
                ).where(
                    SOP_RUNS.c.status == RunStatus.WAITING.value, SOP_RUNS.c.wait_event.is_not(None)
                )
            )
            return [(row.id, row.chat_id, row.user_id, row.wait_event) for row in rows]

    async def failures(
        self,
        sop_id: str,
        since: datetime,
        *,
        until: datetime | None = None,
        chat_id: int | None = None,
    ) -> Failures:
        """Runs of an SOP that failed from `since` (until before `until`; in one group, or
        anywhere): how many, in which groups, and the newest one's error."""
        query = select(SOP_RUNS.c.chat_id, SOP_RUNS.c.error, SOP_RUNS.c.finished_at).where(
            SOP_RUNS.c.sop_id == sop_id,
            SOP_RUNS.c.status == RunStatus.FAILED.value,
            SOP_RUNS.c.finished_at >= since,
        )
        if until is not None:
            query = query.where(SOP_RUNS.c.finished_at < until)
        if chat_id is not None:
            query = query.where(SOP_RUNS.c.chat_id == chat_id)
        async with self.engine.connect() as conn:
            rows = (await conn.execute(query.order_by(SOP_RUNS.c.finished_at))).all()
        if not rows:
            return Failures(0, [], None, None)
        groups = sorted({int(row.chat_id) for row in rows})
        return Failures(len(rows), groups, rows[-1].error, rows[-1].finished_at)

    async def interrupted(self, sop_id: str, chat_id: int) -> tuple[int, datetime | None]:
        """Messages of an SOP in a group that a stop cut off while Telegram was asked (they may
        have arrived and are not sent again): how many, and when the newest was."""
        query = (
            select(func.count(), func.max(SOP_STEPS.c.finished_at))
            .select_from(SOP_STEPS.join(SOP_RUNS, SOP_RUNS.c.id == SOP_STEPS.c.run_id))
            .where(
                SOP_RUNS.c.sop_id == sop_id,
                SOP_RUNS.c.chat_id == chat_id,
                SOP_STEPS.c.status == "interrupted",
            )
        )
        async with self.engine.connect() as conn:
            count, last = (await conn.execute(query)).one()
        return int(count), last

    async def sent_by(self, run_ids: Collection[int], step: str) -> dict[int, tuple[int, int]]:
        """(chat, message id) of the message each of these runs sent at the step labelled
        `step`, the last one when it sent several (a step gone through twice); runs whose
        step sent nothing are left out."""
        found: dict[int, tuple[int, int]] = {}
        ids = sorted(run_ids)
        async with self.engine.connect() as conn:
            for start in range(0, len(ids), CHUNK):
                rows = await conn.execute(
                    select(SOP_STEPS.c.run_id, SOP_STEPS.c.chat_id, SOP_STEPS.c.message_id)
                    .where(
                        SOP_STEPS.c.run_id.in_(ids[start : start + CHUNK]),
                        SOP_STEPS.c.step == step,
                        SOP_STEPS.c.message_id.is_not(None),
                    )
                    .order_by(SOP_STEPS.c.seq)
                )
                for run_id, chat_id, message_id in rows:
                    found[run_id] = (chat_id, message_id)
        return found

    async def steps(self, run_id: int) -> list[dict[str, Any]]:
        async with self.engine.connect() as conn:
            rows = await conn.execute(
                select(SOP_STEPS).where(SOP_STEPS.c.run_id == run_id).order_by(SOP_STEPS.c.seq)
            )
            return [dict(row._mapping) for row in rows]
