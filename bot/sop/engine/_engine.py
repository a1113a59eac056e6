"""The engine as the bot uses it: built from its collaborators, opened, started, drained, closed.

`Engine` assembles the parts (triggers, starting, the timer, stepping, the template context)
and passes each what it needs; what the rest of the bot calls goes through it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from datetime import datetime
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from loguru import logger
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.activity import ActivityLog
from bot.checkin.service import CheckinRules
from bot.clock import Clock
from bot.db import RunStatus
from bot.events import Bus, Happened, MemberJoined, MemberLeft, SopsReloaded
from bot.push.rows import INTERRUPTED
from bot.registry import Registry
from bot.sop.conditions import GroupFacts
from bot.sop.engine._context import Context
from bot.sop.engine._cooldowns import Cooldowns
from bot.sop.engine._failures import FailureNotices
from bot.sop.engine._sends import SopSends
from bot.sop.engine._shared import Shared
from bot.sop.engine._starting import Starting
from bot.sop.engine._stepping import Stepping
from bot.sop.engine._timer import Notify, Timer
from bot.sop.engine._triggers import Judgement, TriggerIndex, Triggers
from bot.sop.facts import Facts
from bot.sop.format import ModerationRule, ReferralRule
from bot.sop.library import Library, LoadReport, Procedure
from bot.sop.messages import TextCatalogue
from bot.sop.runs import Run, RunStore, StepRecord
from bot.sop.steps import Outbox, Waker, goto
from bot.sop.templates import load_catalogues

if TYPE_CHECKING:
    from bot.admins import Admins
    from bot.deletions import Deletions
    from bot.lottery.service import Lotteries
    from bot.moderation.protocol import Moderator
    from bot.push.lives import Lives
    from bot.stats.review import Reviews

OUTCOME_PATIENCE = 10.0  # seconds /sop_run waits for the run's outcome before saying "started"


class Engine:
    """Runs the SOPs of the library in every group the bot is in."""

    def __init__(
        self,
        db: AsyncEngine,
        library: Library,
        registry: Registry,
        activity: ActivityLog,
        outbox: Outbox,
        clock: Clock,
        *,
        bus: Bus,
        lotteries: Lotteries,
        lives: Lives,
        pushes: Waker,
        deletions: Deletions,
        admins: Admins,
        reviews: Reviews,
        moderation: Moderator,
        notify: Notify,
        default_timezone: ZoneInfo,
        default_language: str,
    ) -> None:
        self.db = db
        self.library = library
        self.registry = registry
        self.activity = activity
        self.clock = clock
        self.default_language = default_language
        self.runs = RunStore(db)
        self.facts = Facts(db, activity)
        self.bus = bus  # tells the calendar of reloads; brings joins, leaves and events
        self.lotteries = lotteries
        context = Context(registry, library, default_timezone)
        self._shared = shared = Shared(db, library, self.runs, clock, self.facts, context)
        self.failures = FailureNotices(self.runs, clock, default_timezone, notify, context.title)
        self._stepping = Stepping(
            shared,
            bus=bus,
            activity=activity,
            texts=TextCatalogue({}, default_language),
            listens=self.listens,
            start=self._start_for_step,
            lotteries=lotteries,
            lives=lives,
            pushes=pushes,
            deletions=deletions,
            admins=admins,
            reviews=reviews,
            moderation=moderation,
            failures=self.failures,
            gate_ended=self._gate_ended,
            default_language=default_language,
        )
        self._timer = Timer(shared, stepping=self._stepping, notify=notify)
        # Trigger cooldowns: the last start per SOP and member (or group), refused starts.
        self.cooldowns = Cooldowns(db, lambda chat_id: registry.zone(chat_id, default_timezone))
        self._starting = Starting(
            shared, stepping=self._stepping, cooldowns=self.cooldowns, unhold=self._timer.unhold
        )
        self._triggers = Triggers(
            shared, stepping=self._stepping, starting=self._starting, unhold=self._timer.unhold
        )
        # An event happened (from a feature or an SOP): resume waits for it, start SOPs on it.
        self.emit = self._triggers.emit
        # The push queue's courier of SOP messages (push kind `sop`).
        self.courier = SopSends(outbox, shared, self._stepping)
        self.lateness: deque[float] = self._timer.lateness  # seconds, of runs taken when due
        bus.subscribe(MemberJoined, self._on_joined)
        bus.subscribe(MemberLeft, self._on_left)
        bus.subscribe(Happened, self._on_happened)

    @property
    def texts(self) -> TextCatalogue:
        """The SOP texts, read again with the SOP files."""
        return self._stepping.texts

    @property
    def triggers(self) -> TriggerIndex:
        """The loaded SOPs by what starts them."""
        return self._triggers.index

    @property
    def tasks(self) -> list[asyncio.Task[None]]:
        """The work in hand (sends, the steps after them), for waiting on it with a timeout."""
        return self._shared.tasks.in_hand()

    # -- life cycle ---------------------------------------------------------------------------

    async def open(self) -> LoadReport:
        """Load the SOPs and texts, recover runs a crash interrupted, index waits; no timer yet."""
        report = self.reload_files()
        await self.library.load_switches(self.db)
        await self._recover()
        for run_id, chat_id, user_id, event in await self.runs.waiting_for_events():
            self._shared.waits.add(run_id, chat_id, user_id, event)
        return report

    def start(self) -> None:
        """Start the timer that moves due runs."""
        self._timer.start()

    async def drain(self, grace: float) -> None:
        """Stop taking due runs and wait up to `grace` seconds for the work in hand."""
        self._shared.tasks.stopping = True
        await self._timer.stop()
        await self._starting.flush()  # starts handed over before the stop: written, never lost
        await self._shared.tasks.wait(grace)
        await self.failures.wait(grace)  # owners' notices go before the delivery service

    async def close(self, grace: float = 5.0) -> None:
        """Finish what is in hand (sends the delivery service refused are kept for next time)."""
        await self.drain(grace)
        await self._shared.tasks.cancel()

    def reload_files(self) -> LoadReport:
        """Read SOP files and texts again; a broken file keeps its last good version running."""
        report = self.library.load()
        catalogues = self._stepping.texts.catalogues
        try:
            catalogues = load_catalogues(self.library.content_dir)
        except Exception as exc:  # keep the texts we had
            logger.error("cannot read the texts in {}: {}", self.library.content_dir, exc)
        own = {procedure.id: procedure.texts for procedure in self.library if procedure.texts}
        self._stepping.texts = TextCatalogue(catalogues, self.default_language, own)
        self._triggers.index = TriggerIndex.of(self.library)
        self.cooldowns.forget()  # an SOP's concurrency_key may have changed: read again
        for broken in report.broken:
            kept = f"; version from before still runs ({broken.sop_id})" if broken.sop_id else ""
            logger.error("SOP file {} is broken{}:\n{}", broken.file, kept, broken.summary(10))
        logger.info(
            "SOPs loaded: {}",
            ", ".join(report.loaded) or "none",
        )
        with contextlib.suppress(RuntimeError):  # no event loop: nothing is running yet
            self.bus.publish_soon(SopsReloaded())
        return report

    async def _recover(self) -> None:
        """Runs a stop or crash left mid-step: resume them, never repeating a claimed send.

        Runs `sending` wait for their message in the outbox (or move on, when it went while
        they were not told); one whose message is not in the outbox may have been sent: its
        journal says `interrupted` and it goes past the step."""
        now = self.clock.now()
        stuck = await self.runs.with_status(RunStatus.RUNNING, RunStatus.SENDING)
        sending = [run for run in stuck if run.status is RunStatus.SENDING]
        unsure = await self.courier.recover(sending)
        stuck = [run for run in stuck if run.status is RunStatus.RUNNING or run in unsure]
        interrupted: list[StepRecord] = []
        for run in stuck:
            if run.status is RunStatus.SENDING:
                procedure = self.library.get(run.sop_id)
                step = procedure.label(run.position) if procedure else run.position
                interrupted.append(
                    StepRecord(
                        run.id,
                        run.seq - 1,
                        step,
                        "send",
                        "interrupted",
                        now,
                        now,
                        error=INTERRUPTED,
                    )
                )
                goto(run, procedure, run.position, now, past=True)
            if not run.status.is_over:
                run.status, run.wake_at = RunStatus.SCHEDULED, now
        if stuck:
            await self.runs.save(stuck, now, finished=interrupted)
            logger.warning(
                "resuming {} SOP runs that were mid-step when the bot stopped ({} mid-send)",
                len(stuck),
                len(interrupted),
            )
        # A queued run whose predecessor ended while it was being written (before the fix of
        # `Starting._write_batch`) has nothing left to start it: start the first of each key.
        queued = await self.runs.with_status(RunStatus.QUEUED)
        firsts = {(run.sop_id, run.chat_id, run.user_id): run for run in reversed(queued)}
        await self._stepping.promote(list(firsts.values()))

    async def _gate_ended(self, runs: list[Run]) -> None:
        """Join checks ended: start the group's other `member_joined` SOPs for their members."""
        await self._triggers.gate_ended(runs)

    async def _start_for_step(
        self, procedure: Procedure, run: Run, variables: dict[str, Any], now: datetime
    ) -> None:
        """A `start` step starts another SOP for its run's member (or group)."""
        await self._starting.start(
            procedure, run.chat_id, [run.user_id], trigger="start", now=now, variables=variables
        )

    # -- what happens in groups ---------------------------------------------------------------

    async def _on_joined(self, event: MemberJoined) -> None:
        await self.member_joined(event.chat_id, event.user.id)

    async def _on_left(self, event: MemberLeft) -> None:
        await self.member_left(event.chat_id, event.user.id)

    async def _on_happened(self, event: Happened) -> None:
        await self.emit(event.name, event.chat_id, event.user_id, event.data, chain=event.chain)

    async def member_joined(self, chat_id: int, user_id: int) -> None:
        """Start `member_joined` SOPs, joins within a batch window together."""
        await self._triggers.member_joined(chat_id, user_id)

    async def member_left(self, chat_id: int, user_id: int) -> None:
        """Start `member_left` SOPs; end the member's other runs in that group."""
        await self._triggers.member_left(chat_id, user_id)

    def watches_messages(self, chat_id: int, user_id: int) -> bool:
        """Cheap check on the hot path: does anything want this member's messages?"""
        return self._triggers.watches_messages(chat_id, user_id)

    async def message(
        self,
        chat_id: int,
        user_id: int,
        message_id: int,
        text: str | None,
        bot_username: str,
        *,
        judgement: Judgement | None = None,
        sent_at: datetime | None = None,
    ) -> None:
        """A member wrote in a group: resume waits for it, count it toward a flood, start
        message, flood and command SOPs (handed over to be written with the next batch of
        starts, not waited for). `judgement`: what the first-message checks found in it, when
        it is a newcomer's checked message (for `message` triggers with `checks`). `sent_at`:
        when Telegram says it was sent, which floods are timed by (None: now)."""
        await self._triggers.message(
            chat_id,
            user_id,
            message_id,
            text,
            bot_username,
            judgement=judgement,
            sent_at=sent_at,
        )

    async def starts_written(self) -> None:
        """Wait until every run a trigger asked for so far is written (and set going)."""
        await self._starting.flush()

    async def button(self, chat_id: int, user_id: int, message_id: int, data: str) -> str | None:
        """A member pressed a button; returns a text key to answer with, or None."""
        return await self._triggers.button(chat_id, user_id, message_id, data)

    def listens(self, name: str, chat_id: int, user_id: int | None) -> bool:
        """Whether a run waits for the event or an SOP starts on it (else emitting it is only
        logged)."""
        return self._triggers.listens(name, chat_id, user_id)

    async def fire_schedule(self, sop_id: str, chat_id: int, index: int | None = None) -> None:
        """A calendar trigger (the SOP's trigger at `index`) fired for one group: one run for
        the whole group."""
        await self._triggers.fire_schedule(sop_id, chat_id, index)

    async def check_silent(self, sop_id: str, chat_id: int, days: int) -> int:
        """The daily check of a `silent` trigger: start runs, as one batch, for silent members."""
        return await self._triggers.check_silent(sop_id, chat_id, days)

    async def run_by_hand(self, sop_id: str, chat_id: int, user_id: int | None) -> list[Run]:
        """`/sop_run`: start an SOP now, for one member or for the group, ignoring its mode."""
        return await self._triggers.run_by_hand(sop_id, chat_id, user_id)

    async def outcome(self, runs: list[Run]) -> list[Run]:
        """These runs as they stand once the engine is done with them for now: ended, or
        waiting (`OUTCOME_PATIENCE` seconds at most: a slow send is still in hand then)."""
        ids = {run.id for run in runs}
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._shared.leases.until_idle(ids), OUTCOME_PATIENCE)
        found = [await self.runs.get(run_id) for run_id in sorted(ids)]
        return [run for run in found if run is not None]

    async def stop_runs(self, sop_id: str, chat_id: int, reason: str) -> None:
        """End every run of an SOP in a group (it was switched off there)."""
        await self._triggers.stop_runs(sop_id, chat_id, reason)

    # -- groups -------------------------------------------------------------------------------

    def group_facts(self, chat_id: int, members: int = 0) -> GroupFacts:
        return self._shared.context.group_facts(chat_id, members)

    def checkin_rules(self, chat_id: int) -> CheckinRules:
        """The check-in rules of a group: those of the first SOP running there that checks
        members in (the defaults when none does)."""
        return self._shared.context.checkin_rules(chat_id)

    def moderation_rule(self, chat_id: int) -> ModerationRule:
        """How moderation goes in this group (the `moderation` section of its SOPs)."""
        return self._shared.context.moderation_rule(chat_id)

    def referral_rule(self, chat_id: int) -> ReferralRule:
        """When referrals count in this group (the `referral` section of its SOPs)."""
        return self._shared.context.referral_rule(chat_id)

    def runs_in(self, procedure: Procedure, chat_id: int) -> bool:
        return self._shared.context.runs_in(procedure, chat_id)

    # -- the timer ----------------------------------------------------------------------------

    async def tick(self) -> int:
        """Take the runs due now (without the timer: simulations and tests); return how many."""
        return await self._timer.tick()

    async def settle(self) -> None:
        """Wait until the work in hand (sends, steps after them) is finished."""
        await self._shared.tasks.settle()

    async def next_wake(self) -> datetime | None:
        """When the next run falls due, if any waits."""
        return await self._timer.next_wake()

    async def report_missed(self, sop_id: str, chat_id: int, scheduled: datetime) -> None:
        """A calendar trigger's time passed while the bot was down, beyond the catch-up grace."""
        await self._timer.report_missed(sop_id, chat_id, scheduled)
