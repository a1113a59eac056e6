"""The timer: due runs taken in bulk at their time, and the catch-up after the bot was down.

One loop reads the runs falling due within LOOKAHEAD and holds them (`bot.sop.ahead`); each is
taken at its `wake_at`, so thousands of waits ending at once move on together. A wait that fell
due while the bot was down is run late within the SOP's catch-up grace, or skipped, and either
way reported to the owners.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections import defaultdict, deque
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from loguru import logger

from bot.db import RunStatus
from bot.sop.ahead import HeldRuns
from bot.sop.engine._shared import Shared
from bot.sop.engine._stepping import Stepping
from bot.sop.engine._waits import wait_record
from bot.sop.format import MemberJoinedTrigger, format_duration
from bot.sop.runs import Due, Run, RunMoved, StepRecord
from bot.sop.steps import goto

DUE_BATCH = 5000  # runs taken from the database per wake-up
LOOKAHEAD = timedelta(seconds=1)  # the timer reads runs due this soon, to hand on at their time
CATCH_UP_AFTER = timedelta(seconds=60)  # later than this, a run fell due while the bot was down
HELD_RECHECK = 1.0  # seconds between looks while due runs are in hand
TAKEN_MEMORY = 10_000  # start batches remembered as taken (their late joiners wait for the next)

Notify = Callable[..., Awaitable[None]]  # notify(text_key, **values): tell the owners


@dataclass
class CatchUpReport:
    """Runs that fell due while the bot was down, per SOP and group."""

    late: dict[tuple[str, int], int] = field(default_factory=lambda: defaultdict(int))
    skipped: dict[tuple[str, int], int] = field(default_factory=lambda: defaultdict(int))

    def __bool__(self) -> bool:
        return bool(self.late or self.skipped)


class Timer:
    """Takes due runs on time, in bulk; skips and reports those beyond their catch-up."""

    def __init__(self, shared: Shared, *, stepping: Stepping, notify: Notify) -> None:
        self.notify = notify
        self.lateness: deque[float] = deque(maxlen=200_000)  # seconds, of runs taken when due
        self._shared = shared
        self._stepping = stepping
        self.ahead = HeldRuns(shared.clock, self._on_time)  # read ahead by the timer, not yet due
        self._taken: dict[str, None] = {}  # start batches handed on, oldest first
        self._loop: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._loop is None:
            self._loop = asyncio.create_task(self._due_loop(), name="sop-timer")

    async def stop(self) -> None:
        """Stop taking due runs; let go of those read ahead."""
        self._shared.wake.set()
        if self._loop is not None:
            self._loop.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._loop
            self._loop = None
        self.ahead.clear()

    async def tick(self) -> int:
        """Take the runs due now (without the timer: simulations and tests); return how many."""
        now = self._shared.clock.now()
        held = self.ahead.due(now)
        due = await self._claim_due(now)
        taken = held + due.runs
        if taken:
            self._shared.leases.busy.update(run.id for run in taken)
            await self._take_due(taken, now)
        return len(taken)

    async def next_wake(self) -> datetime | None:
        """When the next run falls due, if any waits."""
        return await self._shared.runs.next_wake()

    def unhold(self, run_ids: Iterable[int]) -> None:
        """Somebody else moves these runs: the timer lets go of those it read ahead."""
        run_ids = list(run_ids)
        self.ahead.drop(run_ids)
        self._shared.leases.note_moved(run_ids)

    async def _claim_due(self, until: datetime) -> Due:
        """The runs due by `until` that nobody holds."""
        # A run somebody moved while the claim read may be read as it was before: leave out
        # those busy when it began (in SQL), those busy now, and those let go meanwhile.
        busy = self._shared.leases.busy
        with self._shared.leases.reading() as moved:
            due = await self._shared.runs.claim_due(until, DUE_BATCH, busy | self.ahead.ids())
        due.runs = [
            run
            for run in due.runs
            if run.id not in busy and run.id not in moved and run.id not in self.ahead
        ]
        return due

    def _on_time(self, runs: list[Run], now: datetime) -> None:
        """Runs read ahead fell due: take them (they are busy from now on)."""
        self._shared.leases.busy.update(run.id for run in runs)
        self._shared.tasks.spawn(self._take_due(runs, now))

    async def _due_loop(self) -> None:
        """Read the runs falling due within LOOKAHEAD and hold them; each is taken on time."""
        while not self._shared.tasks.stopping:
            self._shared.wake.clear()
            try:
                due = await self._claim_due(self._shared.clock.now() + LOOKAHEAD)
                self.ahead.hold(due.runs)
            except Exception:
                logger.exception("the SOP timer failed; trying again in 1s")
                await asyncio.sleep(1)
                continue
            timeout = math.inf  # the clock's wait ends early if it is moved
            if due.held:  # due runs in hand: should one be let go unsaved, look again soon
                timeout = min(timeout, HELD_RECHECK)
            if due.next_wake is not None:
                seconds = (due.next_wake - LOOKAHEAD - self._shared.clock.now()).total_seconds()
                if seconds <= 0:
                    continue
                timeout = min(timeout, seconds)
            await self._shared.clock.wait(
                self._shared.wake, None if math.isinf(timeout) else timeout
            )

    async def _take_due(self, due: list[Run], now: datetime) -> None:
        """Skip the runs beyond their catch-up; move the others on, their wait's journal row
        written with the next step's save. The caller marked the runs busy."""
        report = CatchUpReport()
        ended: list[Run] = []
        finished: list[StepRecord] = []
        going: list[Run] = []
        for run in due:
            procedure = self._shared.library.get(run.sop_id)
            assert run.wake_at is not None
            late = now - run.wake_at
            self.lateness.append(late.total_seconds())
            if late > CATCH_UP_AFTER and procedure is not None:
                catch_up = procedure.sop.catch_up
                if catch_up.policy == "skip" or late > catch_up.grace:
                    report.skipped[run.sop_id, run.chat_id] += 1
                    if run.status is RunStatus.WAITING:
                        finished.append(wait_record(run, procedure, now, "skipped"))
                    self._shared.waits.unwait(run)
                    run.status, run.finished_at, run.wake_at = RunStatus.SKIPPED, now, None
                    run.error = (
                        f"fell due {_ago(late)} late, while the bot was down; beyond the "
                        f"catch-up ({catch_up.policy}, grace {_ago(catch_up.grace)})"
                    )
                    ended.append(run)
                    continue
                report.late[run.sop_id, run.chat_id] += 1
            if run.status is RunStatus.WAITING:
                outcome = "timed_out" if run.wait_event is not None else "done"
                run.unsaved.append(wait_record(run, procedure, now, outcome))
                run.variables["timed_out"] = run.wait_event is not None
                self._shared.waits.unwait(run)
                goto(run, procedure, run.position, now, past=True)
            if run.status.is_over:  # the wait was the last step
                ended.append(run)
            else:
                run.status, run.wake_at = RunStatus.RUNNING, None
                going.append(run)
        stepping = self._stepping
        going, later = self._late_joiners(going)
        # Taken before the wait for its mates: a run of the same batch taken meanwhile (due in
        # the same moment, read by another round) must see it and wait for the next greeting.
        for run in going:
            if run.batch is not None and run.seq == 0:
                self._taken[run.batch] = None
        going += await self._batch_mates(going, now)
        while len(self._taken) > TAKEN_MEMORY:
            del self._taken[next(iter(self._taken))]
        if later:
            try:
                await self._shared.runs.save(later, now)
            except RunMoved:
                logger.debug("late joiners moved meanwhile; left alone")
            finally:
                self._shared.leases.release(later)
                self._shared.wake.set()
        if going:
            # Saved by their next step (a run that moved meanwhile is left alone there).
            stepping.spawn(stepping.advance(going, claimed=True))
        if ended:
            try:
                await self._shared.runs.save(ended, now, finished=finished)
            except RunMoved:
                logger.debug("due runs moved meanwhile; left alone")
            else:
                stepping.spawn(stepping.promote(ended))
            finally:
                self._shared.leases.release(ended)
        if report:
            stepping.spawn(self._report_catch_up(report))

    def _late_joiners(self, going: list[Run]) -> tuple[list[Run], list[Run]]:
        """Runs of a start batch whose greeting went already (their join's run was written
        while the greeting was being taken): they wait for the next greeting, the one that
        closes the window after it, instead of getting a message of their own now."""
        kept: list[Run] = []
        later: list[Run] = []
        for run in going:
            window = self._window(run) if run.batch in self._taken and run.seq == 0 else None
            if window is None or run.variables.get("trigger", {}).get("type") != "member_joined":
                kept.append(run)
                continue
            greets_at = _batch_moment(run) + window
            run.status, run.wake_at = RunStatus.SCHEDULED, greets_at
            run.batch = f"{run.sop_id}:{run.chat_id}:{greets_at.timestamp():.6f}"
            later.append(run)
        return kept, later

    def _window(self, run: Run) -> timedelta | None:
        procedure = self._shared.library.get(run.sop_id)
        if procedure is None:
            return None
        for trigger in procedure.sop.triggers:
            if isinstance(trigger, MemberJoinedTrigger):
                return trigger.batch_window
        return None

    async def _batch_mates(self, going: list[Run], now: datetime) -> list[Run]:
        """Runs started together (joins greeted as one) that are due but were not read with
        these: a join in the moment before the greeting is read ahead later, and would
        otherwise get a message of its own. They are busy from now on."""
        batches = {run.batch for run in going if run.batch is not None and run.seq == 0}
        if not batches:
            return []
        mates = await self._shared.runs.due_in_batches(
            batches, now, exclude=self._shared.leases.busy
        )
        self.ahead.drop(run.id for run in mates)
        self._shared.leases.busy.update(run.id for run in mates)
        for run in mates:
            run.status, run.wake_at = RunStatus.RUNNING, None
        return mates

    async def _report_catch_up(self, report: CatchUpReport) -> None:
        for (sop_id, chat_id), count in report.late.items():
            logger.bind(chat_id=chat_id).warning(
                "{}: {} runs fell due while the bot was down; ran late", sop_id, count
            )
        for (sop_id, chat_id), count in report.skipped.items():
            logger.bind(chat_id=chat_id).warning(
                "{}: {} runs fell due while the bot was down; skipped (beyond catch-up)",
                sop_id,
                count,
            )
        title = self._shared.context.title
        for (sop_id, chat_id), count in report.late.items():
            await self.notify("sop.ran_late", sop=sop_id, group=title(chat_id), count=count)
        for (sop_id, chat_id), count in report.skipped.items():
            await self.notify("sop.skipped", sop=sop_id, group=title(chat_id), count=count)

    async def report_missed(self, sop_id: str, chat_id: int, scheduled: datetime) -> None:
        """A calendar trigger's time passed while the bot was down, beyond the catch-up grace."""
        logger.bind(chat_id=chat_id).warning(
            "{}: the schedule of {} was missed while the bot was down", sop_id, scheduled
        )
        zone = self._shared.context.group_facts(chat_id).timezone
        await self.notify(
            "sop.schedule_missed",
            sop=sop_id,
            group=self._shared.context.title(chat_id),
            at=scheduled.astimezone(zone).strftime("%Y-%m-%d %H:%M"),
        )


def _batch_moment(run: Run) -> datetime:
    """When a start batch's greeting was due: its id ends with that moment's Unix time."""
    assert run.batch is not None
    return datetime.fromtimestamp(float(run.batch.rsplit(":", 1)[1]), UTC)


def _ago(delta: timedelta) -> str:
    return format_duration(timedelta(seconds=max(int(delta.total_seconds()), 1)))
