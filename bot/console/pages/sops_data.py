"""The SOPs page's data: each SOP's state per group, its runs by status, and its step funnel.

- State: what `/sops` says in the chat (`SopAdmin.state`): `broken` (its file no longer
  validates; the last good version runs), `not_here` (its `groups` leave the group out), `on` or
  `off` (switched here by an admin, or as its file says). `on` is whether it runs there now.
- Runs: the SOP's runs in the groups shown, by status, of all time (as `/sops` counts them).
- Funnel: per step, in the SOP's order, the messages it sent to members in the window (the
  `sop_sends` table, each group's own days as `group_metrics` reads them), how many were
  answered (the member wrote or pressed a button there within 24 h) and the drop-off: the share
  of the previous step's messages this step did not reach. Each variant's answer rate, and the
  two-proportion test (`bot.stats.metrics.compare`) between the two variants sent most.

Read in set queries (one per window of days shared by the groups shown, in chunks), not one
per group.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.db import SOP_RUNS, SOP_SENDS, RunStatus
from bot.sop.admin import EPOCH, SopAdmin
from bot.sop.library import Broken, Procedure
from bot.sop.yaml_files import Problem
from bot.stats.metrics import Comparison, StepResponse, compare

WINDOWS = (7, 30, 90)
CHUNK = 500  # group ids in one IN (…)
STATES = {
    "sop.state_broken_kept": ("broken", None),
    "sop.state_not_here": ("not_here", None),
    "sop.state_on_here": ("on", True),
    "sop.state_off_here": ("off", False),
    "sop.state_on": ("on", None),
    "sop.state_off": ("off", None),
}
Window = tuple[datetime, datetime]  # where a group's first day starts and its last day ends
# Runs in progress, as `/sops` counts them: live ones and those queued behind another.
IN_PROGRESS = (
    RunStatus.SCHEDULED,
    RunStatus.WAITING,
    RunStatus.RUNNING,
    RunStatus.SENDING,
    RunStatus.QUEUED,
)


@dataclass
class Cell:
    """An SOP in one group."""

    chat_id: int
    state: str  # on | off | not_here | broken
    on: bool  # whether it runs there now
    switched: bool | None  # an admin's choice for this group (None: as its file says)
    runs: Counter[str] = field(default_factory=Counter)
    last_failure: dict[str, Any] | None = None  # with `detail` only
    interrupted: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "chat_id": self.chat_id,
            "state": self.state,
            "on": self.on,
            "switched": self.switched,
            "runs": dict(self.runs),
            "last_failure": self.last_failure,
            "interrupted": self.interrupted,
        }


@dataclass
class FunnelStep:
    step: str
    sent: int
    answered: int
    drop_off: float | None  # of the previous step's messages, the share this one did not reach
    variants: list[StepResponse]
    comparison: Comparison | None

    @property
    def rate(self) -> float:
        return self.answered / self.sent if self.sent else 0.0


@dataclass
class SopView:
    procedure: Procedure
    broken: Broken | None
    cells: list[Cell]
    runs: Counter[str]
    funnel: list[FunnelStep]

    @property
    def id(self) -> str:
        return self.procedure.id


@dataclass
class Overview:
    days: int
    sops: list[SopView]
    broken_files: list[Broken]  # broken from the start: no version of them runs


def problem_text(problem: Problem) -> str:
    """A problem as `tidepool check` prints it, with the file's name (not the server's path)."""
    where = f"{problem.file.name}:{problem.line}:{problem.column}"
    message = f"note: {problem.message}" if problem.note else problem.message
    return f"{where}: {problem.path}: {message}" if problem.path else f"{where}: {message}"


def broken_dict(broken: Broken) -> dict[str, Any]:
    return {
        "file": broken.file.name,
        "kept": broken.sop_id,
        "problems": [problem_text(p) for p in broken.problems],
    }


def _chunks(ids: list[int]) -> list[list[int]]:
    return [ids[i : i + CHUNK] for i in range(0, len(ids), CHUNK)]


async def run_counts(db: AsyncEngine, chat_ids: list[int]) -> dict[tuple[str, int], Counter[str]]:
    """Runs by (SOP, group) and status, of all time."""
    counts: dict[tuple[str, int], Counter[str]] = defaultdict(Counter)
    async with db.connect() as conn:
        for chunk in _chunks(chat_ids):
            rows = await conn.execute(
                select(SOP_RUNS.c.sop_id, SOP_RUNS.c.chat_id, SOP_RUNS.c.status, func.count())
                .where(SOP_RUNS.c.chat_id.in_(chunk))
                .group_by(SOP_RUNS.c.sop_id, SOP_RUNS.c.chat_id, SOP_RUNS.c.status)
            )
            for sop_id, chat_id, status, count in rows:
                counts[sop_id, int(chat_id)][status] += int(count)
    return counts


async def step_responses(db: AsyncEngine, windows: dict[int, Window]) -> list[StepResponse]:
    """Messages SOPs sent to members and how many were answered, by SOP, step and variant, over
    the groups of `windows` ({chat id: its window}), each group within its own window."""
    by_window: dict[Window, list[int]] = defaultdict(list)
    for chat_id, window in windows.items():
        by_window[window].append(chat_id)
    totals: dict[tuple[str, str, str | None], list[int]] = defaultdict(lambda: [0, 0])
    async with db.connect() as conn:
        for (start, end), chat_ids in by_window.items():
            for chunk in _chunks(chat_ids):
                rows = await conn.execute(
                    select(
                        SOP_SENDS.c.sop,
                        SOP_SENDS.c.step,
                        SOP_SENDS.c.variant,
                        func.count(),
                        func.count(SOP_SENDS.c.responded_at),
                    )
                    .where(
                        SOP_SENDS.c.chat_id.in_(chunk),
                        SOP_SENDS.c.sent_at >= start,
                        SOP_SENDS.c.sent_at < end,
                    )
                    .group_by(SOP_SENDS.c.sop, SOP_SENDS.c.step, SOP_SENDS.c.variant)
                )
                for sop, step, variant, sent, answered in rows:
                    total = totals[sop, step, variant]
                    total[0] += int(sent)
                    total[1] += int(answered)
    return [
        StepResponse(sop, step, variant, sent, answered)
        for (sop, step, variant), (sent, answered) in sorted(
            totals.items(), key=lambda item: (item[0][0], item[0][1], item[0][2] or "")
        )
    ]


def funnel(procedure: Procedure | None, responses: list[StepResponse]) -> list[FunnelStep]:
    """One SOP's steps in its own order (steps it no longer has last), with their variants."""
    by_step: dict[str, list[StepResponse]] = defaultdict(list)
    for response in responses:
        by_step[response.step].append(response)
    order = [procedure.label(path) for path in procedure.steps] if procedure else []
    rank = {label: index for index, label in enumerate(order)}
    steps = sorted(by_step, key=lambda s: (rank.get(s, len(rank)), s))
    found: list[FunnelStep] = []
    previous: int | None = None
    for step in steps:
        variants = by_step[step]
        sent = sum(v.sent for v in variants)
        answered = sum(v.answered for v in variants)
        drop_off = None if not previous else max(0.0, 1 - sent / previous)
        named = [v for v in variants if v.variant is not None]
        comparison = None
        if len(named) >= 2:
            a, b = sorted(named, key=lambda v: v.sent, reverse=True)[:2]
            comparison = compare(variants[0].sop, step, a, b)
        found.append(FunnelStep(step, sent, answered, drop_off, named, comparison))
        previous = sent
    return found


async def overview(
    admin: SopAdmin,
    chat_ids: list[int],
    windows: dict[int, Window],
    days: int,
    *,
    detail: bool = False,
) -> Overview:
    """Every SOP in the groups `chat_ids`; `detail` adds each cell's last failure and messages
    cut off by a stop (a query per SOP and group: for one group)."""
    engine = admin.engine
    library = engine.library
    broken_by_id = {b.sop_id: b for b in library.broken.values() if b.sop_id}
    broken_ids = set(broken_by_id)
    counts = await run_counts(engine.db, chat_ids)
    responses = await step_responses(engine.db, windows)
    by_sop: dict[str, list[StepResponse]] = defaultdict(list)
    for response in responses:
        by_sop[response.sop].append(response)
    views: list[SopView] = []
    for procedure in library:
        cells: list[Cell] = []
        total: Counter[str] = Counter()
        for chat_id in chat_ids:
            state, switched = STATES[admin.state(procedure, chat_id, broken_ids)]
            cell = Cell(chat_id, state, engine.runs_in(procedure, chat_id), switched)
            cell.runs = counts.get((procedure.id, chat_id), Counter())
            total.update(cell.runs)
            if detail:
                await _detail(admin, procedure.id, cell)
            cells.append(cell)
        views.append(
            SopView(
                procedure,
                broken_by_id.get(procedure.id),
                cells,
                total,
                funnel(procedure, by_sop.pop(procedure.id, [])),
            )
        )
    broken_files = [b for b in library.broken.values() if not b.sop_id]
    return Overview(days, views, broken_files)


async def _detail(admin: SopAdmin, sop_id: str, cell: Cell) -> None:
    runs = admin.engine.runs
    if cell.runs[RunStatus.FAILED.value]:
        failed = await runs.failures(sop_id, EPOCH, chat_id=cell.chat_id)
        at = failed.last_at
        cell.last_failure = {
            "at": None if at is None else (at if at.tzinfo else at.replace(tzinfo=UTC)),
            "reason": failed.last_error or "",
        }
    cell.interrupted, _ = await runs.interrupted(sop_id, cell.chat_id)
