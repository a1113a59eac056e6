"""Moving runs step by step: each step's type found in the registry, the keys every step has
handled here once, the step journaled with the runs moving on, runs that ended let go.

Runs at the same step of the same SOP are worked on together (a cohort): one transaction moves
them all on. Step types are given the stepping part as their `Tools`: what it has in public is
what a step type may use of the engine.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any

from loguru import logger

from bot.activity import ActivityLog, event_row
from bot.checkin.boards import Leaderboards
from bot.db import LIVE, EventType, RunStatus
from bot.events import Bus, Happened
from bot.sop.engine._failures import FailureNotices
from bot.sop.engine._shared import Shared
from bot.sop.library import Procedure
from bot.sop.messages import TextCatalogue
from bot.sop.runs import Effects, Run, RunMoved, StepRecord
from bot.sop.steps import STEPS, Cohort, Waker, goto

if TYPE_CHECKING:
    from bot.admins import Admins
    from bot.deletions import Deletions
    from bot.lottery.service import Lotteries
    from bot.moderation.protocol import Moderator
    from bot.push.lives import Lives
    from bot.sop.facts import MemberFacts
    from bot.sop.format import Condition
    from bot.stats.review import Reviews


# Start an SOP for the member (or the group) of a run because its step said so: (procedure, run,
# variables, now).
StartRuns = Callable[[Procedure, Run, dict[str, Any], datetime], Awaitable[None]]


class Stepping:
    """Moves runs through their steps until each waits, sends or ends."""

    def __init__(
        self,
        shared: Shared,
        *,
        bus: Bus,
        activity: ActivityLog,
        texts: TextCatalogue,
        listens: Callable[[str, int, int | None], bool],
        start: StartRuns,
        lotteries: Lotteries,
        lives: Lives,
        pushes: Waker,
        deletions: Deletions,
        admins: Admins,
        reviews: Reviews,
        moderation: Moderator,
        failures: FailureNotices,
        gate_ended: Callable[[list[Run]], Awaitable[None]],
        default_language: str,
    ) -> None:
        self._shared = shared
        # What step types use: the stores, the clock, and the bot's services.
        self.db = shared.db
        self.library = shared.library
        self.runs = shared.runs
        self.clock = shared.clock
        self.facts = shared.facts
        self.boards = Leaderboards(shared.db)
        self.activity = activity
        self.texts = texts  # replaced when the texts are read again
        self.lotteries = lotteries  # opens the lotteries of `lottery` steps
        self.lives = lives  # plans the lives of `live` steps
        self.pushes = pushes  # the push queue of `broadcast` and `live` steps
        self.deletions = deletions  # told when a message to delete later was stored
        self.admins = admins  # the group's admins, for `send` steps `to: admins`
        self.reviews = reviews  # the weekly figures of `review` steps
        self.moderation = moderation  # the actions of moderation steps; who is approved
        self.default_language = default_language
        # What steps know of groups, and the variables of their texts: the context's.
        self.language = shared.context.language
        self.group_facts = shared.context.group_facts
        self.checkin_rules = shared.context.checkin_rules
        self.context = shared.context.build
        self._bus = bus  # takes events runs emit to the engine, as it takes features' events
        self._listens = listens  # whether anything waits for or starts on an event
        self._start = start
        self._failures = failures  # the owners hear of failed runs
        self._gate_ended = gate_ended  # starts what waited for a join check (`promote`)
        self._promoting = asyncio.Lock()  # see `promote`

    @property
    def stopping(self) -> bool:
        """The bot is shutting down: what was not tried yet waits for the restart."""
        return self._shared.tasks.stopping

    # -- moving runs --------------------------------------------------------------------------

    def spawn(self, work: Awaitable[None]) -> None:
        """Do `work` in the background, as part of the engine's work in hand."""
        self._shared.tasks.spawn(work)

    def release(self, runs: list[Run]) -> None:
        """Nobody works on these runs any more (they wait, or wait for the restart)."""
        self._shared.leases.release(runs)

    def hold(self, key: str, runs: list[Run]) -> None:
        """These runs (still in hand) wait for the push `key` to go (`finish_send`)."""
        self._shared.held.runs[key] = runs

    async def advance(self, runs: list[Run], *, claimed: bool = False) -> None:
        """Move runs (status RUNNING) through their steps until each waits, sends or ends."""
        if not claimed:
            self._shared.leases.busy.update(run.id for run in runs)
        pending = runs
        while pending:
            cohorts: dict[tuple[str, str], list[Run]] = defaultdict(list)
            for run in pending:
                cohorts[run.sop_id, run.position].append(run)
            pending = []
            for (sop_id, path), cohort in cohorts.items():
                try:
                    pending += await self._step(sop_id, path, cohort)
                except RunMoved:
                    self._shared.leases.release(cohort)
                    logger.debug("{} runs of {} moved meanwhile; left alone", len(cohort), sop_id)
                except Exception as exc:
                    logger.exception("{} step {} failed", sop_id, path)
                    await self._fail(cohort, f"{type(exc).__name__}: {exc}")

    async def _fail(self, runs: list[Run], reason: str) -> None:
        now = self.clock.now()
        for run in runs:
            run.status, run.error, run.finished_at = RunStatus.FAILED, reason, now
        try:
            await self.runs.save(runs, now)
        except Exception:
            logger.exception("could not mark {} runs failed", len(runs))
        self._shared.leases.release(runs)
        self._failures.note(runs)
        await self.promote(runs)

    async def _step(self, sop_id: str, path: str, runs: list[Run]) -> list[Run]:
        """Do the step at `path` for `runs`; return the runs that go on at once.

        The keys every step has are handled here: a disabled step is passed over, a step that
        needs a member fails the runs for the whole group (`continue_on_error` lets them go
        past it, here and in `done`)."""
        procedure = self.library.get(sop_id)
        step = procedure.step(path) if procedure is not None else None
        if procedure is None or step is None:
            reason = (
                f"SOP {sop_id} is no longer loaded"
                if procedure is None
                else f"the SOP file changed and has no step at {path} any more"
            )
            await self._fail(runs, reason)
            return []
        cohort = Cohort(procedure, path, step, runs, self.clock.now())
        if not step.enabled:
            return await self.done(cohort, "disabled")
        kind = STEPS.of(step)
        needs = kind.member_error(step)
        if needs is not None:
            cohort.refuse_group_runs(needs)
        return await kind.run(cohort, self)

    async def done(
        self,
        cohort: Cohort[Any],
        status: str = "done",
        *,
        moved: bool = False,
        effects: Effects | None = None,
        first: Effects | None = None,
        errors: dict[int, str] | None = None,
        branch: dict[int, str] | None = None,
        later: bool = False,
    ) -> list[Run]:
        """Journal the step for each run and move the runs on (to `branch`'s step, or past this
        one; not at all when `moved`), with the step's effects, at once; return the runs that go
        on at once. `first` runs in the transaction before anything is stored (it may set
        variables).

        A run in `errors` failed this step: it stops there, unless the step continues on error.
        `later`: the step read and wrote nothing outside its runs (an `if` on their variables),
        so unless a run ended here, it is journaled and moved with the runs' next save instead
        of a transaction of its own; after a crash in between, the step is simply done again.
        """
        procedure, path, now, label = cohort.procedure, cohort.path, cohort.now, cohort.label
        action, continues = cohort.step.action, cohort.step.continue_on_error
        errors = {**cohort.errors, **errors} if errors else cohort.errors
        branch = branch or {}
        runs = cohort.all
        records = []
        for run in runs:
            error = errors.get(run.id)
            records.append(
                StepRecord(
                    run.id,
                    run.seq,
                    label,
                    action,
                    "failed" if error else status,
                    now,
                    now,
                    variant=branch.get(run.id),
                    error=error,
                )
            )
            run.seq += 1
            if error and not continues:
                run.status, run.error, run.finished_at = RunStatus.FAILED, f"{label}: {error}", now
            elif not moved:
                target = branch.get(run.id)
                if target is not None:
                    goto(run, procedure, target, now)
                else:
                    goto(run, procedure, path, now, past=True)
        if (
            later
            and effects is None
            and first is None
            and all(run.status is RunStatus.RUNNING for run in runs)
        ):
            for run, record in zip(runs, records, strict=True):
                run.unbegun.append(record)
            return runs
        await self.runs.save(runs, now, begun=records, effects=effects, first=first)
        return await self.settle(runs)

    async def settle(self, runs: list[Run]) -> list[Run]:
        """Release runs that ended (starting any queued behind them); return those going on."""
        ended = [run for run in runs if run.status.is_over]
        if ended:
            self._shared.leases.release(ended)
            self._failures.note(ended)
            await self.promote(ended)
        return [run for run in runs if run.status is RunStatus.RUNNING]

    async def promote(self, ended: list[Run]) -> None:
        """Start what waited for these runs to end. Mode `queued`: the oldest queued run of
        each key whose run ended (or that was just queued: the run it queued behind may have
        ended while it was written). A join check (`join_gate`) that ended: the group's other
        `member_joined` SOPs for its member, in the background.

        One promotion at a time: of a run that ended and one queued behind it at that moment,
        whichever looks second sees the other's work, and the queued run starts once."""
        async with self._promoting:
            await self._promote(ended)
        gates = [run for run in ended if run.status.is_over and self._is_gate(run)]
        if gates:
            self.spawn(self._gate_ended(gates))

    def _is_gate(self, run: Run) -> bool:
        procedure = self.library.get(run.sop_id)
        return procedure is not None and procedure.sop.join_gate

    async def member_facts(
        self,
        chat_id: int,
        users: list[int],
        now: datetime,
        conditions: list[Condition],
    ) -> dict[int, MemberFacts]:
        """What these conditions need to know of these members: their facts, with the
        message counts they ask for and whether moderation approved them."""
        from bot.sop.conditions import needs, windows

        facts = await self.facts.members(chat_id, users, now, windows(conditions))
        if facts and needs(conditions).approved:
            approved = await self.moderation.approved_among(chat_id, list(facts))
            for user_id, fact in facts.items():
                fact.approved = user_id in approved
        return facts

    async def _promote(self, ended: list[Run]) -> None:
        now = self.clock.now()
        for run in ended:
            procedure = self.library.get(run.sop_id)
            if procedure is None or procedure.sop.mode != "queued":
                continue
            by_group = procedure.sop.concurrency_key == "group"
            pending = await self.runs.pending(
                run.sop_id, run.chat_id, run.user_id, any_member=by_group
            )
            if any(other.status in LIVE for other in pending):
                continue
            queued = [other for other in pending if other.status is RunStatus.QUEUED]
            if queued:
                first = queued[0]
                first.status = RunStatus.RUNNING
                await self.runs.save([first], now)
                self.spawn(self.advance([first]))

    def waiting(self, runs: list[Run]) -> None:
        """Saved waiting runs: index those waiting for an event, let go of all, tell the timer."""
        for run in runs:
            if run.wait_event is not None:
                self._shared.waits.add(run.id, run.chat_id, run.user_id, run.wait_event)
        self._shared.leases.release(runs)
        self._shared.wake.set()

    # -- what runs set off --------------------------------------------------------------------

    def emitted(
        self, run: Run, event: str, data: dict[str, Any], sop_id: str, now: datetime, chain: int
    ) -> None:
        """Log that a run emitted `event` and hand it to the SOPs that trigger on it."""
        self.activity.add(
            event_row(
                chat_id=run.chat_id,
                user_id=run.user_id,
                at=now,
                type=EventType.EMITTED,
                data={"event": event, "sop": sop_id, "run": run.id},
            )
        )
        if self._listens(event, run.chat_id, run.user_id):  # most check-ins' `checkin.done`: no
            self.spawn(self._bus.publish(Happened(event, run.chat_id, run.user_id, data, chain)))

    def start(
        self, procedure: Procedure, run: Run, variables: dict[str, Any], now: datetime
    ) -> None:
        """Start `procedure` for the member (or group) of `run`, in the background."""
        self.spawn(self._start(procedure, run, variables, now))
