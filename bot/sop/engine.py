"""The SOP engine: starts runs from triggers, moves them step by step, resumes them after restarts.

Runs live in the database (`bot.sop.runs`). A run at a step either acts and moves on (tags,
points, events, conditions: one transaction), claims a send and moves on once Telegram answered,
or waits: for a while, until a time of day, or for an event with a timeout. One timer wakes at
the earliest `wake_at` and takes due runs in bulk, so thousands of waits ending at once move on
together. Runs at the same step are worked on together, and runs that a trigger started
together (joins within a minute, a daily digest) share one message for each send step until
their first wait; after it, each member goes on alone.

A wait that fell due while the bot was down is run late within the SOP's catch-up grace, or
skipped, and either way reported to the owners.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import re
from collections import defaultdict, deque
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, Protocol
from zoneinfo import ZoneInfo

from aiogram.types import FSInputFile, InlineKeyboardMarkup
from loguru import logger
from sqlalchemy import bindparam, delete
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from sqlalchemy.sql import ClauseElement

from bot import points
from bot.activity import ActivityLog, event_row
from bot.checkin.boards import Leaderboards, board_context
from bot.checkin.service import CheckedIn, CheckinRules, check_in, checkin_rules
from bot.clock import Clock
from bot.db import (
    LIVE,
    MEMBER_TAGS,
    SCHEDULED_DELETIONS,
    EventType,
    PushKind,
    RunStatus,
    insert_for,
)
from bot.delivery import Delivered
from bot.events import Bus, Happened, MemberJoined, MemberLeft, SopsReloaded
from bot.push import rotations
from bot.push.queue import add_pushes, push_row
from bot.registry import Registry
from bot.sop.ahead import HeldRuns
from bot.sop.conditions import GroupFacts, holds, windows
from bot.sop.facts import MESSAGES_7D, STREAK, WEEK, Facts, MemberFacts
from bot.sop.format import (
    BroadcastStep,
    ButtonTrigger,
    CheckinStep,
    CommandTrigger,
    EmitStep,
    EventTrigger,
    IfStep,
    LeaderboardStep,
    LiveStep,
    LotteryAction,
    LotteryStep,
    MemberJoinedTrigger,
    MemberLeftTrigger,
    MessageTrigger,
    PointsStep,
    SendStep,
    SilentTrigger,
    StartStep,
    StopStep,
    TagStep,
    WaitStep,
    format_duration,
    walk_steps,
)
from bot.sop.library import Library, LoadReport, Procedure
from bot.sop.messages import Rendered, RenderError, TextCatalogue, compose, parse_button
from bot.sop.runs import Due, Run, RunMoved, RunStore, StepRecord
from bot.sop.templates import group_context, load_catalogues

DUE_BATCH = 5000  # runs taken from the database per wake-up
MEMBERS_IN_QUERY = 500  # more members than this starting at once: read every live run
LOOKAHEAD = timedelta(seconds=1)  # the timer reads runs due this soon, to hand on at their time
CATCH_UP_AFTER = timedelta(seconds=60)  # later than this, a run fell due while the bot was down
MAX_CHAIN = 8  # SOPs starting SOPs (emit, start) at most this deep: no endless loops
PRESS_MEMORY = 60.0  # seconds a flow-button press is remembered, so a double tap counts once
HELD_RECHECK = 1.0  # seconds between looks while due runs are in hand
PRESS_PATIENCE = 5.0  # seconds a press waits for its run to finish the step in hand
JOIN_GATHER = timedelta(seconds=1)  # a quiet group's first joiner waits this for company
OUTCOME_PATIENCE = 10.0  # seconds /sop_run waits for the run's outcome before saying "started"
FAILURE_GATHER = 3.0  # seconds an SOP's first failure of the day waits for others to tell


class Outbox(Protocol):
    """The delivery service as the engine uses it (`bot.delivery.Delivery`)."""

    async def send_message(
        self,
        chat_id: int,
        text: str,
        *,
        source: str,
        reply_markup: InlineKeyboardMarkup | None = None,
        reply_to_message_id: int | None = None,
        combine: str | None = None,
    ) -> Delivered: ...

    async def send_photo(
        self,
        chat_id: int,
        photo: str | FSInputFile,
        *,
        caption: str | None = None,
        source: str,
        reply_markup: InlineKeyboardMarkup | None = None,
        reply_to_message_id: int | None = None,
    ) -> Delivered: ...

    async def pin(self, chat_id: int, message_id: int, *, source: str) -> Delivered: ...


Notify = Callable[..., Awaitable[None]]  # notify(text_key, **values): tell the owners


@dataclass
class _Triggers:
    """The loaded SOPs by what starts them."""

    joined: list[tuple[Procedure, MemberJoinedTrigger]] = field(default_factory=list)
    left: list[Procedure] = field(default_factory=list)
    messages: list[tuple[Procedure, MessageTrigger]] = field(default_factory=list)
    commands: dict[str, list[Procedure]] = field(default_factory=dict)
    buttons: dict[str, list[Procedure]] = field(default_factory=dict)
    events: dict[str, list[Procedure]] = field(default_factory=dict)


@dataclass(frozen=True)
class _Greeting:
    """The next greeting of joiners in a group: its batch, when it goes, when the window after
    it closes (joins before then wait for the greeting after it)."""

    batch: str
    greets_at: datetime
    window_closes: datetime

    @classmethod
    def at(cls, sop_id: str, chat_id: int, moment: datetime, window: timedelta) -> _Greeting:
        return cls(f"{sop_id}:{chat_id}:{moment.timestamp():.0f}", moment, moment + window)


@dataclass
class CatchUpReport:
    """Runs that fell due while the bot was down, per SOP and group."""

    late: dict[tuple[str, int], int] = field(default_factory=lambda: defaultdict(int))
    skipped: dict[tuple[str, int], int] = field(default_factory=lambda: defaultdict(int))

    def __bool__(self) -> bool:
        return bool(self.late or self.skipped)


TAG_COLUMNS = ("chat_id", "user_id", "tag", "source", "added_at")


def _add_tags(conn: AsyncConnection) -> ClauseElement:
    """Tags added to members, a tag already there left as it is."""
    return insert_for(conn, MEMBER_TAGS).values(dict.fromkeys(TAG_COLUMNS)).on_conflict_do_nothing()


_REMOVE_TAG = delete(MEMBER_TAGS).where(
    MEMBER_TAGS.c.chat_id == bindparam("chat_id"),
    MEMBER_TAGS.c.user_id == bindparam("user_id"),
    MEMBER_TAGS.c.tag == bindparam("tag"),
)


class LotteryOpener(Protocol):
    """What a `lottery` step needs of bot.lottery.service.Lotteries."""

    async def open_in(
        self,
        conn: AsyncConnection,
        chat_id: int,
        action: LotteryAction,
        *,
        source: str,
        run_id: int | None,
        now: datetime,
    ) -> Any: ...

    async def post(self, lottery_id: int, *, reply_to: int | None = None) -> None: ...

    def when(self, chat_id: int, moment: datetime) -> str: ...

    def wake(self) -> None: ...


class LiveMaker(Protocol):
    """What a `live` step needs of bot.push.lives.Lives."""

    async def create_in(
        self,
        conn: AsyncConnection,
        chat_id: int,
        *,
        title: str,
        starts_at: datetime,
        url: str | None = None,
        host: str = "",
        reminders: Sequence[str] = (),
        length: timedelta = ...,
        pin: bool = True,
        source: str,
        created_by: int | None = None,
        key: str | None = None,
    ) -> int: ...


class Waker(Protocol):
    """The push queue, told that pushes were added."""

    def wake(self) -> None: ...


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
        lotteries: LotteryOpener,
        lives: LiveMaker,
        pushes: Waker,
        deletions: Waker,
        notify: Notify,
        default_timezone: ZoneInfo,
        default_language: str,
    ) -> None:
        self.db = db
        self.library = library
        self.registry = registry
        self.activity = activity
        self.outbox = outbox
        self.clock = clock
        self.default_timezone = default_timezone
        self.default_language = default_language
        self.notify = notify
        self.runs = RunStore(db)
        self.facts = Facts(db, activity)
        self.boards = Leaderboards(db)
        self.texts = TextCatalogue({}, default_language)
        self.triggers = _Triggers()
        self.lateness: deque[float] = deque(maxlen=200_000)  # seconds, of runs taken when due
        self.bus = bus  # tells the calendar of reloads; brings joins, leaves and events
        self.lotteries = lotteries  # opens the lotteries of `lottery` steps
        self.lives = lives  # plans the lives of `live` steps
        self.pushes = pushes  # the push queue of `broadcast` and `live` steps
        self.deletions = deletions  # told when a message to delete later was stored
        self._busy: set[int] = set()
        self._ahead = HeldRuns(clock, self._on_time)  # read ahead by the timer, not yet due
        self._reading: list[set[int]] = []  # per claim in progress: runs moved meanwhile
        self._released = asyncio.Event()  # set whenever busy runs are released
        self._waits: dict[tuple[int, int | None, str], set[int]] = defaultdict(set)
        self._batches: dict[tuple[str, int], _Greeting] = {}  # per SOP and group: the next
        self._presses: dict[tuple[int, int, int, str], float] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._start_lock = asyncio.Lock()
        self._wake = asyncio.Event()
        self._loop: asyncio.Task[None] | None = None
        self._stopping = False
        self._failures_told: set[tuple[str, date]] = set()  # (SOP, owners' day) told of
        self._telling: set[asyncio.Task[None]] = set()  # failure notices gathering
        bus.subscribe(MemberJoined, self._on_joined)
        bus.subscribe(MemberLeft, self._on_left)
        bus.subscribe(Happened, self._on_happened)

    # -- life cycle ---------------------------------------------------------------------------

    async def open(self) -> LoadReport:
        """Load the SOPs and texts, recover runs a crash interrupted, index waits; no timer yet."""
        report = self.reload_files()
        await self.library.load_switches(self.db)
        await self._recover()
        for run_id, chat_id, user_id, event in await self.runs.waiting_for_events():
            self._waits[chat_id, user_id, event].add(run_id)
        return report

    def start(self) -> None:
        """Start the timer that moves due runs."""
        if self._loop is None:
            self._loop = asyncio.create_task(self._due_loop(), name="sop-timer")

    async def drain(self, grace: float) -> None:
        """Stop taking due runs and wait up to `grace` seconds for the work in hand."""
        self._stopping = True
        self._wake.set()
        if self._loop is not None:
            self._loop.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._loop
            self._loop = None
        self._ahead.clear()
        if self._tasks or self._telling:  # owners' notices of failures go before the delivery
            await asyncio.wait([*self._tasks, *self._telling], timeout=grace)

    async def close(self, grace: float = 5.0) -> None:
        """Finish what is in hand (sends the delivery service refused are kept for next time)."""
        await self.drain(grace)
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    def reload_files(self) -> LoadReport:
        """Read SOP files and texts again; a broken file keeps its last good version running."""
        report = self.library.load()
        try:
            self.texts = TextCatalogue(
                load_catalogues(self.library.content_dir), self.default_language
            )
        except Exception as exc:  # keep the texts we had
            logger.error("cannot read the texts in {}: {}", self.library.content_dir, exc)
        self.triggers = self._index(self.library)
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

    @staticmethod
    def _index(library: Library) -> _Triggers:
        triggers = _Triggers()
        for procedure in library:
            for trigger in procedure.sop.triggers:
                if isinstance(trigger, MemberJoinedTrigger):
                    triggers.joined.append((procedure, trigger))
                elif isinstance(trigger, MemberLeftTrigger):
                    triggers.left.append(procedure)
                elif isinstance(trigger, MessageTrigger):
                    triggers.messages.append((procedure, trigger))
                elif isinstance(trigger, CommandTrigger):
                    triggers.commands.setdefault(trigger.command, []).append(procedure)
                elif isinstance(trigger, ButtonTrigger):
                    triggers.buttons.setdefault(trigger.data, []).append(procedure)
                elif isinstance(trigger, EventTrigger):
                    triggers.events.setdefault(trigger.event, []).append(procedure)
        return triggers

    async def _recover(self) -> None:
        """Runs a stop or crash left mid-step: resume them, never repeating a claimed send."""
        now = self.clock.now()
        stuck = await self.runs.with_status(RunStatus.RUNNING, RunStatus.SENDING)
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
                        error="the bot stopped while sending; it may have arrived, not sent again",
                    )
                )
                self._goto(run, procedure, run.position, now, past=True)
            if not run.status.is_over:
                run.status, run.wake_at = RunStatus.SCHEDULED, now
        if stuck:
            await self.runs.save(stuck, now, finished=interrupted)
            logger.warning(
                "resuming {} SOP runs that were mid-step when the bot stopped ({} mid-send)",
                len(stuck),
                len(interrupted),
            )

    # -- triggers -----------------------------------------------------------------------------

    async def _on_joined(self, event: MemberJoined) -> None:
        await self.member_joined(event.chat_id, event.user.id)

    async def _on_left(self, event: MemberLeft) -> None:
        await self.member_left(event.chat_id, event.user.id)

    async def _on_happened(self, event: Happened) -> None:
        await self.emit(event.name, event.chat_id, event.user_id, event.data)

    async def member_joined(self, chat_id: int, user_id: int) -> None:
        """Start `member_joined` SOPs for a counted join.

        With a `batch_window`, greetings are throttled per SOP and group, leading edge and
        trailing edge: the first joiner of a quiet group is greeted after `JOIN_GATHER` (joins
        in that moment share the message); joiners who come while the window after a greeting
        is open are greeted together when it closes. So a burst of joins gets one message per
        window, and nobody waits for a window when the group was quiet.
        """
        now = self.clock.now()
        for procedure, trigger in self.triggers.joined:
            window = trigger.batch_window
            if window is None:
                await self._start(procedure, chat_id, [user_id], trigger="member_joined", now=now)
                continue
            greeting = self._batches.get((procedure.id, chat_id))
            if greeting is None or greeting.window_closes <= now:  # a quiet group: greet soon
                greeting = _Greeting.at(procedure.id, chat_id, now + JOIN_GATHER, window)
            elif greeting.greets_at <= now:  # greeted lately: the next greeting closes the window
                greeting = _Greeting.at(procedure.id, chat_id, greeting.window_closes, window)
            self._batches[procedure.id, chat_id] = greeting
            await self._start(
                procedure,
                chat_id,
                [user_id],
                trigger="member_joined",
                now=now,
                batch=greeting.batch,
                wake_at=greeting.greets_at,
            )

    async def member_left(self, chat_id: int, user_id: int) -> None:
        """Start `member_left` SOPs; end the member's other runs in that group."""
        now = self.clock.now()
        leaving = {procedure.id for procedure in self.triggers.left}
        for procedure in self.library:
            if procedure.id in leaving or procedure.sop.concurrency_key != "member":
                continue
            pending = await self.runs.pending(procedure.id, chat_id, user_id)
            await self._cancel(pending, now, "the member left the group")
        for procedure in self.triggers.left:
            await self._start(procedure, chat_id, [user_id], trigger="member_left", now=now)

    def watches_messages(self, chat_id: int, user_id: int) -> bool:
        """Cheap check on the hot path: does anything want this member's messages?"""
        return bool(
            self.triggers.messages
            or self.triggers.commands
            or (chat_id, user_id, "member.message") in self._waits
        )

    async def message(
        self, chat_id: int, user_id: int, message_id: int, text: str | None, bot_username: str
    ) -> None:
        """A member wrote in a group: resume waits for it, start message and command SOPs."""
        now = self.clock.now()
        await self._resume_waits(chat_id, user_id, "member.message", now)
        if not text:
            return
        variables: dict[str, Any] = {"trigger": {"message_id": message_id}}
        if text.startswith("/") and self.triggers.commands:
            name, _, addressee = text[1:].split(maxsplit=1)[0].partition("@")
            if not addressee or addressee.lower() == bot_username.lower():
                for procedure in self.triggers.commands.get(name.lower(), []):
                    await self._start(
                        procedure,
                        chat_id,
                        [user_id],
                        trigger="command",
                        now=now,
                        variables=variables,
                    )
            return
        for procedure, trigger in self.triggers.messages:
            if _matches(trigger, text):
                await self._start(
                    procedure, chat_id, [user_id], trigger="message", now=now, variables=variables
                )

    async def button(self, chat_id: int, user_id: int, message_id: int, data: str) -> str | None:
        """A member pressed a button; returns a text key to answer with, or None."""
        now = self.clock.now()
        await self._resume_waits(chat_id, user_id, f"button.{data}", now)
        for procedure in self.triggers.buttons.get(data, []):
            await self._start(procedure, chat_id, [user_id], trigger="button", now=now)
        target = parse_button(data)
        if target is None:
            return None
        key = (chat_id, message_id, user_id, data)
        tick = now.timestamp()
        self._presses = {k: t for k, t in self._presses.items() if tick - t < PRESS_MEMORY}
        if key in self._presses:
            return "sop.pressed_already"
        self._presses[key] = tick
        sop_id, step_id = target
        flow = self.library.get(sop_id)
        if flow is None or step_id not in flow.path_of:
            return "sop.button_gone"
        path = flow.path_of[step_id]
        by_group = flow.sop.concurrency_key == "group"
        pending = await self.runs.pending(sop_id, chat_id, user_id, any_member=by_group)
        working = {run.id for run in pending if run.id in self._busy}
        if working:  # pressed while the run still sends the message: let it reach its wait
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(PRESS_PATIENCE):
                    await self._until_idle(working)
            pending = await self.runs.pending(sop_id, chat_id, user_id, any_member=by_group)
        for run in pending:
            if run.status is RunStatus.WAITING and run.id not in self._busy:
                await self._jump(flow, run, path, now)
                return None
            if run.status in LIVE:
                return "sop.busy"
        await self._start(
            flow, chat_id, [user_id], trigger="button", now=now, position=path, force=True
        )
        return None

    async def emit(
        self,
        name: str,
        chat_id: int,
        user_id: int | None,
        data: dict[str, Any] | None = None,
        *,
        chain: int = 0,
    ) -> None:
        """An event happened (from a feature or an SOP): resume waits for it, start SOPs on it."""
        now = self.clock.now()
        await self._resume_waits(chat_id, user_id, name, now)
        if chain >= MAX_CHAIN:
            logger.bind(chat_id=chat_id).warning(
                "event {} not passed on: SOPs started each other {} deep", name, chain
            )
            return
        variables = {"trigger": {"event": name, "data": dict(data or {})}, "_chain": chain + 1}
        for procedure in self.triggers.events.get(name, []):
            await self._start(
                procedure, chat_id, [user_id], trigger="event", now=now, variables=variables
            )

    async def fire_schedule(self, sop_id: str, chat_id: int) -> None:
        """A calendar trigger fired for one group: one run for the whole group."""
        procedure = self.library.get(sop_id)
        if procedure is not None:
            await self._start(procedure, chat_id, [None], trigger="schedule", now=self.clock.now())

    async def check_silent(self, sop_id: str, chat_id: int, days: int) -> int:
        """The daily check of a `silent` trigger: start runs, as one batch, for silent members."""
        procedure = self.library.get(sop_id)
        if procedure is None:
            return 0
        return len(await self._start_silent(procedure, chat_id, days, wake_at=self.clock.now()))

    async def _start_silent(
        self, procedure: Procedure, chat_id: int, days: int, *, wake_at: datetime | None
    ) -> list[Run]:
        """Runs, as one batch, for the members silent these `days` whom the SOP lets in."""
        now = self.clock.now()
        silent = await self.facts.silent_members(chat_id, now - timedelta(days=days))
        if not silent:
            return []
        batch = f"{procedure.id}:{chat_id}:{now.timestamp():.0f}"
        return await self._start(
            procedure, chat_id, silent, trigger="silent", now=now, batch=batch, wake_at=wake_at
        )

    async def run_by_hand(self, sop_id: str, chat_id: int, user_id: int | None) -> list[Run]:
        """`/sop_run`: start an SOP now, for one member or for the group, ignoring its mode.

        An SOP for silent members, run for the group, does its daily check now (its conditions
        hold, so nobody is nudged twice): a group run of it would have no member to nudge.
        """
        procedure = self.library.get(sop_id)
        if procedure is None:
            return []
        silent = silent_trigger(procedure)
        if user_id is None and silent is not None and procedure.sop.concurrency_key == "member":
            return await self._start_silent(procedure, chat_id, silent.days, wake_at=None)
        return await self._start(
            procedure, chat_id, [user_id], trigger="manual", now=self.clock.now(), force=True
        )

    async def outcome(self, runs: list[Run]) -> list[Run]:
        """These runs as they stand once the engine is done with them for now: ended, or
        waiting (`OUTCOME_PATIENCE` seconds at most: a slow send is still in hand then)."""
        ids = {run.id for run in runs}
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._until_idle(ids), OUTCOME_PATIENCE)
        found = [await self.runs.get(run_id) for run_id in sorted(ids)]
        return [run for run in found if run is not None]

    async def stop_runs(self, sop_id: str, chat_id: int, reason: str) -> None:
        """End every run of an SOP in a group (it was switched off there)."""
        pending = await self.runs.pending(sop_id, chat_id, None, any_member=True)
        await self._cancel(pending, self.clock.now(), reason)

    # -- starting runs ------------------------------------------------------------------------

    def group_facts(self, chat_id: int, members: int = 0) -> GroupFacts:
        known = self.registry.groups.get(chat_id)
        zone = self.registry.zone(chat_id, self.default_timezone)
        return GroupFacts(
            chat_id,
            known.title if known else "",
            list(known.tags) if known else [],
            members,
            zone,
        )

    def checkin_rules(self, chat_id: int) -> CheckinRules:
        """The check-in rules of a group: those of the first SOP running there that checks
        members in (the defaults when none does)."""
        for procedure in self.library:
            if not self.runs_in(procedure, chat_id):
                continue
            for step in walk_steps(procedure.sop.steps):
                if isinstance(step, CheckinStep) and step.enabled:
                    return checkin_rules(step.checkin)
        return CheckinRules()

    def runs_in(self, procedure: Procedure, chat_id: int) -> bool:
        known = self.registry.groups.get(chat_id)
        tags = known.tags if known is not None else []
        return self.library.runs_in(procedure, chat_id, tags)

    async def _start(
        self,
        procedure: Procedure,
        chat_id: int,
        users: Sequence[int | None],
        *,
        trigger: str,
        now: datetime,
        variables: dict[str, Any] | None = None,
        batch: str | None = None,
        wake_at: datetime | None = None,
        position: str = "0",
        force: bool = False,
    ) -> list[Run]:
        """Start runs for these members (None: the group) where the SOP's conditions hold.

        `force` (a press of a flow button, `/sop_run`) starts even where the SOP's mode would
        not, and without its conditions; the SOP must still run in this group.
        """
        if chat_id >= 0 or not self.runs_in(procedure, chat_id) or self._stopping:
            return []
        sop = procedure.sop
        if sop.conditions and not force:
            # Conditions see the trigger (an event's data, say) as the run's texts will.
            seen = {"trigger": {"type": trigger, **(variables or {}).get("trigger", {})}}
            users = await self._where_conditions_hold(procedure, chat_id, users, now, seen)
        if not users:
            return []
        async with self._start_lock:
            by_group = sop.concurrency_key == "group"
            # Only the runs that can stand in the way: a group key's, or these members' (a busy
            # group may have thousands of runs live, say check-in replies waiting their turn).
            members = [user for user in users if user is not None]
            if by_group or len(members) > MEMBERS_IN_QUERY:
                pending = await self.runs.pending(procedure.id, chat_id, None, any_member=True)
            else:
                pending = await self.runs.pending(procedure.id, chat_id, None, members=members)
            holders: dict[int | None, list[Run]] = defaultdict(list)
            for run in pending:
                holders[None if by_group else run.user_id].append(run)
            rows: list[dict[str, Any]] = []
            cancel: list[Run] = []
            status = RunStatus.SCHEDULED if wake_at is not None else RunStatus.RUNNING
            for user_id in dict.fromkeys(users):
                held = holders[None if by_group else user_id]
                run_status = status
                if held and not force:
                    if sop.mode == "single":
                        logger.bind(chat_id=chat_id).debug(
                            "{} not started for {}: a run is in progress (mode single)",
                            procedure.id,
                            user_id,
                        )
                        continue
                    if sop.mode == "restart":
                        cancel += held
                    elif sop.mode == "queued":
                        run_status = RunStatus.QUEUED
                holders[None if by_group else user_id].append(_STARTING)
                rows.append(
                    {
                        "sop_id": procedure.id,
                        "chat_id": chat_id,
                        "user_id": user_id,
                        "status": run_status.value,
                        "position": position,
                        "seq": 0,
                        "variables": {
                            **(variables or {}),
                            "trigger": {"type": trigger, **(variables or {}).get("trigger", {})},
                        },
                        "batch": batch,
                        "trigger": trigger,
                        "sop_digest": procedure.digest,
                        "wake_at": wake_at if run_status is RunStatus.SCHEDULED else None,
                        "created_at": now,
                        "updated_at": now,
                    }
                )
            if cancel:
                await self._cancel(cancel, now, "restarted by a new trigger (mode restart)")
            created = await self.runs.create(rows)
        running = [run for run in created if run.status is RunStatus.RUNNING]
        if len(created) > len(running):
            self._wake.set()
        if running:
            self._busy.update(run.id for run in running)  # busy from now: see `outcome`
            self._spawn(self._advance(running, claimed=True))
        return created

    async def _where_conditions_hold(
        self,
        procedure: Procedure,
        chat_id: int,
        users: Sequence[int | None],
        now: datetime,
        variables: dict[str, Any] | None = None,
    ) -> list[int | None]:
        conditions = procedure.sop.conditions
        members = [user for user in users if user is not None]
        facts = await self.facts.members(chat_id, members, now, windows(conditions))
        group = self.group_facts(chat_id, await self.facts.member_count(chat_id))
        kept: list[int | None] = []
        for user in users:
            member = facts.get(user) if user is not None else None
            people = [member] if member else []
            context = self._context(procedure, chat_id, group, people, variables or {}, now)
            if holds(conditions, member=member, group=group, now=now, context=context):
                kept.append(user)
        return kept

    async def _cancel(self, runs: Iterable[Run], now: datetime, reason: str) -> None:
        runs = list(runs)
        self._unhold(run.id for run in runs)
        live = [run for run in runs if not run.status.is_over and run.id not in self._busy]
        waits = []
        for run in live:
            if run.status is RunStatus.WAITING:
                procedure = self.library.get(run.sop_id)
                waits.append(self._wait_record(run, procedure, now, "cancelled"))
            self._unwait(run)
            run.seq += 1  # a step in flight elsewhere will find the run moved and stop
            run.status, run.error, run.finished_at, run.wake_at = (
                RunStatus.CANCELLED,
                reason,
                now,
                None,
            )
        if live:
            self._busy.update(run.id for run in live)
            try:
                await self.runs.save(live, now, finished=waits)
            except RunMoved:
                pass
            finally:
                self._release(live)

    # -- the timer ----------------------------------------------------------------------------

    async def tick(self) -> int:
        """Take the runs due now (without the timer: simulations and tests); return how many."""
        now = self.clock.now()
        held = self._ahead.due(now)
        due = await self._claim_due(now)
        taken = held + due.runs
        if taken:
            self._busy.update(run.id for run in taken)
            await self._take_due(taken, now)
        return len(taken)

    async def _claim_due(self, until: datetime) -> Due:
        """The runs due by `until` that nobody holds."""
        # A run somebody moved while the claim read may be read as it was before: leave out
        # those busy when it began (in SQL), those busy now, and those let go meanwhile.
        moved: set[int] = set()
        self._reading.append(moved)
        try:
            due = await self.runs.claim_due(until, DUE_BATCH, self._busy | self._ahead.ids())
        finally:
            self._reading.remove(moved)
        due.runs = [
            run
            for run in due.runs
            if run.id not in self._busy and run.id not in moved and run.id not in self._ahead
        ]
        return due

    def _unhold(self, run_ids: Iterable[int]) -> None:
        """Somebody else moves these runs: the timer lets go of those it read ahead."""
        run_ids = list(run_ids)
        self._ahead.drop(run_ids)
        self._note_moved(run_ids)

    def _note_moved(self, run_ids: list[int]) -> None:
        """Tell the claims reading right now to leave these runs out (they may read them stale)."""
        for moved in self._reading:
            moved.update(run_ids)

    def _on_time(self, runs: list[Run], now: datetime) -> None:
        """Runs read ahead fell due: take them (they are busy from now on)."""
        self._busy.update(run.id for run in runs)
        self._spawn(self._take_due(runs, now))

    async def settle(self) -> None:
        """Wait until the work in hand (sends, steps after them) is finished."""
        while self._tasks:
            await asyncio.wait(list(self._tasks))

    async def next_wake(self) -> datetime | None:
        """When the next run falls due, if any waits."""
        return await self.runs.next_wake()

    async def _due_loop(self) -> None:
        """Read the runs falling due within LOOKAHEAD and hold them; each is taken on time."""
        while not self._stopping:
            self._wake.clear()
            try:
                due = await self._claim_due(self.clock.now() + LOOKAHEAD)
                self._ahead.hold(due.runs)
            except Exception:
                logger.exception("the SOP timer failed; trying again in 1s")
                await asyncio.sleep(1)
                continue
            timeout = self.clock.max_sleep
            if due.held:  # due runs in hand: should one be let go unsaved, look again soon
                timeout = min(timeout, HELD_RECHECK)
            if due.next_wake is not None:
                seconds = (due.next_wake - LOOKAHEAD - self.clock.now()).total_seconds()
                if seconds <= 0:
                    continue
                timeout = min(timeout, seconds)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), None if math.isinf(timeout) else timeout)

    async def _take_due(self, due: list[Run], now: datetime) -> None:
        """Skip the runs beyond their catch-up; move the others on, their wait's journal row
        written with the next step's save. The caller marked the runs busy."""
        report = CatchUpReport()
        ended: list[Run] = []
        finished: list[StepRecord] = []
        going: list[Run] = []
        for run in due:
            procedure = self.library.get(run.sop_id)
            assert run.wake_at is not None
            late = now - run.wake_at
            self.lateness.append(late.total_seconds())
            if late > CATCH_UP_AFTER and procedure is not None:
                catch_up = procedure.sop.catch_up
                if catch_up.policy == "skip" or late > catch_up.grace:
                    report.skipped[run.sop_id, run.chat_id] += 1
                    if run.status is RunStatus.WAITING:
                        finished.append(self._wait_record(run, procedure, now, "skipped"))
                    self._unwait(run)
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
                run.unsaved.append(self._wait_record(run, procedure, now, outcome))
                run.variables["timed_out"] = run.wait_event is not None
                self._unwait(run)
                self._goto(run, procedure, run.position, now, past=True)
            if run.status.is_over:  # the wait was the last step
                ended.append(run)
            else:
                run.status, run.wake_at = RunStatus.RUNNING, None
                going.append(run)
        going += await self._batch_mates(going, now)
        if going:
            # Saved by their next step (a run that moved meanwhile is left alone there).
            self._spawn(self._advance(going, claimed=True))
        if ended:
            try:
                await self.runs.save(ended, now, finished=finished)
            except RunMoved:
                logger.debug("due runs moved meanwhile; left alone")
            else:
                self._spawn(self._promote(ended))
            finally:
                self._release(ended)
        if report:
            self._spawn(self._report_catch_up(report))

    async def _batch_mates(self, going: list[Run], now: datetime) -> list[Run]:
        """Runs started together (joins greeted as one) that are due but were not read with
        these: a join in the moment before the greeting is read ahead later, and would
        otherwise get a message of its own. They are busy from now on."""
        batches = {run.batch for run in going if run.batch is not None and run.seq == 0}
        if not batches:
            return []
        mates = await self.runs.due_in_batches(batches, now, exclude=self._busy)
        self._ahead.drop(run.id for run in mates)
        self._busy.update(run.id for run in mates)
        for run in mates:
            run.status, run.wake_at = RunStatus.RUNNING, None
        return mates

    def _wait_record(
        self, run: Run, procedure: Procedure | None, now: datetime, status: str
    ) -> StepRecord:
        label = procedure.label(run.position) if procedure else run.position
        return StepRecord(run.id, run.seq - 1, label, "wait", status, now, now)

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
        for (sop_id, chat_id), count in report.late.items():
            await self.notify("sop.ran_late", sop=sop_id, group=self._title(chat_id), count=count)
        for (sop_id, chat_id), count in report.skipped.items():
            await self.notify("sop.skipped", sop=sop_id, group=self._title(chat_id), count=count)

    async def report_missed(self, sop_id: str, chat_id: int, scheduled: datetime) -> None:
        """A calendar trigger's time passed while the bot was down, beyond the catch-up grace."""
        logger.bind(chat_id=chat_id).warning(
            "{}: the schedule of {} was missed while the bot was down", sop_id, scheduled
        )
        await self.notify(
            "sop.schedule_missed",
            sop=sop_id,
            group=self._title(chat_id),
            at=scheduled.astimezone(self.group_facts(chat_id).timezone).strftime("%Y-%m-%d %H:%M"),
        )

    def _title(self, chat_id: int) -> str:
        known = self.registry.groups.get(chat_id)
        return known.title if known is not None and known.title else str(chat_id)

    # -- moving runs --------------------------------------------------------------------------

    def _spawn(self, work: Awaitable[None]) -> None:
        async def guarded() -> None:
            try:
                await work
            except Exception:
                logger.exception("an SOP task failed")

        task = asyncio.create_task(guarded())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _release(self, runs: Iterable[Run]) -> None:
        run_ids = [run.id for run in runs]
        self._busy.difference_update(run_ids)
        self._note_moved(run_ids)
        self._released.set()

    async def _until_idle(self, run_ids: set[int]) -> None:
        """Wait until none of these runs is being worked on."""
        while run_ids & self._busy:
            self._released.clear()
            await self._released.wait()

    def _goto(
        self,
        run: Run,
        procedure: Procedure | None,
        path: str,
        now: datetime,
        *,
        past: bool = False,
    ) -> None:
        """Move `run` to `path` (or past it); a run past its last step is done."""
        target: str | None = path
        if past:
            target = procedure.successor.get(path) if procedure is not None else None
        if target is None:
            run.status, run.finished_at, run.wake_at = RunStatus.DONE, now, None
        else:
            run.position = target

    async def _advance(self, runs: list[Run], *, claimed: bool = False) -> None:
        """Move runs (status RUNNING) through their steps until each waits, sends or ends."""
        if not claimed:
            self._busy.update(run.id for run in runs)
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
                    self._release(cohort)
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
        self._release(runs)
        self._note_failures(runs)
        await self._promote(runs)

    def _note_failures(self, ended: Iterable[Run]) -> None:
        """Runs ended failed: the owners hear of each SOP's failures once a day (on the owners'
        calendar), a moment after the first, with how many runs failed by then and why. A run
        started by hand is not told: /sop_run answers its admin with the outcome."""
        now = self.clock.now()
        day = now.astimezone(self.default_timezone).date()
        for sop_id in {
            r.sop_id for r in ended if r.status is RunStatus.FAILED and r.trigger != "manual"
        }:
            if (sop_id, day) in self._failures_told:
                continue
            self._failures_told.add((sop_id, day))
            task = asyncio.create_task(self._tell_failures(sop_id, now), name=f"failures-{sop_id}")
            self._telling.add(task)
            task.add_done_callback(self._telling.discard)

    async def _tell_failures(self, sop_id: str, first: datetime) -> None:
        local = first.astimezone(self.default_timezone)
        midnight = datetime.combine(local.date(), time(0), tzinfo=self.default_timezone)
        try:
            earlier = await self.runs.failures(sop_id, midnight, until=first)
            if earlier.count:
                return  # told already today, before a restart
            await asyncio.sleep(FAILURE_GATHER)  # runs in other groups failing with this one
            failed = await self.runs.failures(sop_id, midnight)
            groups = ", ".join(self._title(chat_id) for chat_id in failed.groups[:10])
            logger.warning("{}: {} runs failed today: {}", sop_id, failed.count, failed.last_error)
            await self.notify(
                "sop.failed_owner",
                sop=sop_id,
                count=failed.count,
                groups=groups,
                more=max(len(failed.groups) - 10, 0),
                reason=failed.last_error or "",
            )
        except Exception:
            logger.exception("could not tell the owners that {} failed", sop_id)

    async def _step(self, sop_id: str, path: str, runs: list[Run]) -> list[Run]:
        """Do the step at `path` for `runs`; return the runs that go on at once."""
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
        now = self.clock.now()
        label = procedure.label(path)
        if not step.enabled:
            return await self._simple(procedure, path, runs, now, "disabled")
        if isinstance(step, SendStep):
            await self._send(procedure, path, step, runs, now)
            return []
        if isinstance(step, WaitStep):
            await self._wait(procedure, path, step, runs, now)
            return []
        if isinstance(step, IfStep):
            return await self._if(procedure, path, step, runs, now)
        if isinstance(step, StopStep):
            for run in runs:
                run.variables["stop_reason"] = step.stop.reason
                run.status, run.finished_at = RunStatus.DONE, now
            return await self._simple(procedure, path, runs, now, "done", moved=True)
        if isinstance(step, TagStep):
            return await self._tag(procedure, path, step, runs, now)
        if isinstance(step, PointsStep):
            return await self._points(procedure, path, step, runs, now)
        if isinstance(step, CheckinStep):
            return await self._checkin(procedure, path, step, runs, now)
        if isinstance(step, LeaderboardStep):
            wanted = step.leaderboard
            for run in runs:
                zone = self.group_facts(run.chat_id).timezone
                start_hour = self.checkin_rules(run.chat_id).start_hour
                board = await self.boards.board(
                    run.chat_id, wanted.period, now, zone, start_hour, wanted.limit
                )
                run.variables["leaderboard"] = board.as_variables()
            return await self._simple(procedure, path, runs, now, "done")
        if isinstance(step, LotteryStep):
            return await self._lottery(procedure, path, step, runs, now)
        if isinstance(step, BroadcastStep):
            return await self._broadcast(procedure, path, step, runs, now)
        if isinstance(step, LiveStep):
            return await self._live(procedure, path, step, runs, now)
        if isinstance(step, EmitStep):
            going = await self._simple(procedure, path, runs, now, "done")
            for run in runs:
                chain = int(run.variables.get("_chain", 0))
                self._emitted(run, step.emit.event, dict(step.emit.data), sop_id, now, chain)
            return going
        if isinstance(step, StartStep):
            going = await self._simple(procedure, path, runs, now, "done")
            other = self.library.get(step.start.sop)
            for run in runs:
                chain = int(run.variables.get("_chain", 0))
                if other is None or chain >= MAX_CHAIN:
                    logger.bind(chat_id=run.chat_id).warning(
                        "{} ({}): cannot start {}", sop_id, label, step.start.sop
                    )
                    continue
                self._spawn(
                    self._start_quietly(other, run.chat_id, run.user_id, {"_chain": chain + 1}, now)
                )
            return going
        raise AssertionError(f"unknown step {type(step).__name__}")

    async def _start_quietly(
        self,
        procedure: Procedure,
        chat_id: int,
        user_id: int | None,
        variables: dict[str, Any],
        now: datetime,
    ) -> None:
        await self._start(
            procedure, chat_id, [user_id], trigger="start", now=now, variables=variables
        )

    async def _simple(
        self,
        procedure: Procedure,
        path: str,
        runs: list[Run],
        now: datetime,
        status: str,
        *,
        moved: bool = False,
        effects: Callable[[AsyncConnection], Awaitable[None]] | None = None,
        first: Callable[[AsyncConnection], Awaitable[None]] | None = None,
        errors: dict[int, str] | None = None,
        branch: dict[int, str] | None = None,
    ) -> list[Run]:
        """Journal the step for each run and move the runs on, with the step's effects, at once.

        A run in `errors` failed this step: it stops there, unless the step continues on error.
        """
        step = procedure.step(path)
        assert step is not None
        label = procedure.label(path)
        errors = errors or {}
        records = []
        for run in runs:
            error = errors.get(run.id)
            records.append(
                StepRecord(
                    run.id,
                    run.seq,
                    label,
                    step.action,
                    "failed" if error else status,
                    now,
                    now,
                    variant=(branch or {}).get(run.id),
                    error=error,
                )
            )
            run.seq += 1
            if error and not step.continue_on_error:
                run.status, run.error, run.finished_at = RunStatus.FAILED, f"{label}: {error}", now
            elif not moved:
                target = (branch or {}).get(run.id)
                if target is not None:
                    self._goto(run, procedure, target, now)
                else:
                    self._goto(run, procedure, path, now, past=True)
        await self.runs.save(runs, now, begun=records, effects=effects, first=first)
        return await self._settle(runs)

    async def _settle(self, runs: list[Run]) -> list[Run]:
        """Release runs that ended (starting any queued behind them); return those going on."""
        ended = [run for run in runs if run.status.is_over]
        if ended:
            self._release(ended)
            self._note_failures(ended)
            await self._promote(ended)
        return [run for run in runs if run.status is RunStatus.RUNNING]

    async def _promote(self, ended: list[Run]) -> None:
        """Mode `queued`: start the oldest queued run of each key whose run ended."""
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
                self._spawn(self._advance([first]))

    # -- the steps ----------------------------------------------------------------------------

    async def _if(
        self, procedure: Procedure, path: str, step: IfStep, runs: list[Run], now: datetime
    ) -> list[Run]:
        branch: dict[int, str] = {}
        by_chat: dict[int, list[Run]] = defaultdict(list)
        for run in runs:
            by_chat[run.chat_id].append(run)
        conditions = step.if_.conditions
        for chat_id, chat_runs in by_chat.items():
            users = [run.user_id for run in chat_runs if run.user_id is not None]
            facts = await self.facts.members(chat_id, users, now, windows(conditions))
            group = self.group_facts(chat_id, await self.facts.member_count(chat_id))
            for run in chat_runs:
                member = facts.get(run.user_id) if run.user_id is not None else None
                people = [member] if member else []
                context = self._context(
                    procedure, chat_id, group, people, run.variables, now, run.id
                )
                if holds(conditions, member=member, group=group, now=now, context=context):
                    branch[run.id] = f"{path}.then.0"
                elif step.if_.else_:
                    branch[run.id] = f"{path}.else.0"
        chosen = {
            run.id: branch.get(run.id, "") for run in runs
        }  # "" = neither branch: go past the if
        targets = {run_id: target for run_id, target in chosen.items() if target}
        return await self._simple(procedure, path, runs, now, "done", branch=targets)

    async def _tag(
        self, procedure: Procedure, path: str, step: TagStep, runs: list[Run], now: datetime
    ) -> list[Run]:
        errors = {
            run.id: "tags need a member; this run is for the whole group"
            for run in runs
            if run.user_id is None
        }
        members = [(run.chat_id, run.user_id) for run in runs if run.user_id is not None]
        source = f"sop:{procedure.id}"

        async def effects(conn: AsyncConnection) -> None:
            if step.tag.add and members:
                add = self.runs.bulk.get("add tags", conn, lambda: _add_tags(conn), TAG_COLUMNS)
                rows = [
                    (chat, user, tag, source, now) for chat, user in members for tag in step.tag.add
                ]
                await add.execute(conn, rows)
            if step.tag.remove and members:
                remove = self.runs.bulk.get(
                    "remove tags", conn, lambda: _REMOVE_TAG, ("chat_id", "user_id", "tag")
                )
                gone = [(chat, user, tag) for chat, user in members for tag in step.tag.remove]
                await remove.execute(conn, gone)

        return await self._simple(
            procedure, path, runs, now, "done", effects=effects, errors=errors
        )

    async def _points(
        self, procedure: Procedure, path: str, step: PointsStep, runs: list[Run], now: datetime
    ) -> list[Run]:
        award = step.points.award
        errors = {
            run.id: "points need a member; this run is for the whole group"
            for run in runs
            if run.user_id is None
        }
        if award < 0:
            for chat_id in {run.chat_id for run in runs}:
                users = [run.user_id for run in runs if run.chat_id == chat_id and run.user_id]
                facts = await self.facts.members(chat_id, users, now)
                for run in runs:
                    fact = facts.get(run.user_id or 0)
                    if run.chat_id == chat_id and fact is not None and fact.points + award < 0:
                        errors[run.id] = f"not enough points ({fact.points}) to take {-award}"
        changes = [
            points.Change(
                run.chat_id, run.user_id, award, step.points.reason, f"sop:{procedure.id}", now
            )
            for run in runs
            if run.id not in errors and run.user_id is not None
        ]

        async def effects(conn: AsyncConnection) -> None:
            # A spend that raced another is refused here: the whole save is rolled back.
            await points.apply(conn, changes)

        return await self._simple(
            procedure, path, runs, now, "done", effects=effects, errors=errors
        )

    async def _checkin(
        self, procedure: Procedure, path: str, step: CheckinStep, runs: list[Run], now: datetime
    ) -> list[Run]:
        """Check members in, in the transaction that moves their runs on: all or nothing."""
        rules = checkin_rules(step.checkin)
        errors = {
            run.id: "a check-in needs a member; this run is for the whole group"
            for run in runs
            if run.user_id is None
        }
        members = [run for run in runs if run.id not in errors]
        results: dict[int, CheckedIn] = {}

        async def first(conn: AsyncConnection) -> None:
            results.clear()
            for run in members:
                assert run.user_id is not None
                zone = self.group_facts(run.chat_id).timezone
                done = await check_in(conn, run.chat_id, run.user_id, now, zone, rules, run.id)
                results[run.id] = done
                reached = done.new and done.streak in rules.bonuses
                milestone = done.streak if reached else None
                run.variables["checkin"] = {**done.as_variables(), "milestone": milestone}

        going = await self._simple(procedure, path, runs, now, "done", first=first, errors=errors)
        for run in members:
            done = results[run.id]
            if not done.new:
                continue
            chain = int(run.variables.get("_chain", 0))
            details: dict[str, Any] = {"streak": done.streak, "points": done.points}
            happened = [("checkin.done", {**details, "rank": done.rank})]
            if run.variables["checkin"]["milestone"] is not None:
                happened.append(("checkin.milestone", {**details, "days": done.streak}))
            for event, data in happened:
                self._emitted(run, event, data, procedure.id, now, chain)
        return going

    async def _lottery(
        self, procedure: Procedure, path: str, step: LotteryStep, runs: list[Run], now: datetime
    ) -> list[Run]:
        """Open a lottery per run in the transaction that moves the run on (a restart never
        opens it twice), then post it."""
        lotteries = self.lotteries
        opened: dict[int, int] = {}

        async def first(conn: AsyncConnection) -> None:
            opened.clear()
            for run in runs:
                lottery = await lotteries.open_in(
                    conn,
                    run.chat_id,
                    step.lottery,
                    source=f"sop:{procedure.id}",
                    run_id=run.id,
                    now=now,
                )
                opened[run.id] = lottery.id
                run.variables["lottery"] = {
                    "id": lottery.id,
                    "prize": lottery.prize,
                    "winners": lottery.winners,
                    "draws_at": lotteries.when(run.chat_id, lottery.draws_at),
                    "commitment": lottery.commitment,
                }

        going = await self._simple(procedure, path, runs, now, "done", first=first)
        for lottery_id in opened.values():
            self._spawn(lotteries.post(lottery_id))
        lotteries.wake()
        return going

    async def _broadcast(
        self, procedure: Procedure, path: str, step: BroadcastStep, runs: list[Run], now: datetime
    ) -> list[Run]:
        """Queue each run's group text as a push, in the transaction that moves the run on (so a
        restart never queues it twice); with `rotate`, the group's next entry is `item`."""
        action = step.broadcast
        errors: dict[int, str] = {}
        rows: list[dict[str, Any]] = []
        advances: list[tuple[int, int]] = []
        entries: list[Any] = []
        if action.rotate is not None:
            try:
                entries = rotations.load(self.library.content_dir, action.rotate)
            except rotations.RotationError as exc:
                errors = {run.id: str(exc) for run in runs}
        for run in runs:
            if run.id in errors:
                continue
            known = self.registry.groups.get(run.chat_id)
            language = known.language if known is not None else None
            variables = dict(run.variables)
            context = self._context(
                procedure,
                run.chat_id,
                self.group_facts(run.chat_id, await self.facts.member_count(run.chat_id)),
                [],
                variables,
                now,
                run.id,
            )
            if action.rotate is not None:
                async with self.db.connect() as conn:
                    at = await rotations.position(conn, run.chat_id, action.rotate)
                entry = entries[at % len(entries)]
                context["item"] = rotations.in_language(
                    entry, language, self.texts.default_language
                )
                advances.append((run.chat_id, at + 1))
            try:
                text = self.texts.render(action.template, language, context)
            except RenderError as exc:
                errors[run.id] = str(exc)
                continue
            rows.append(
                push_row(
                    key=f"sop:{procedure.id}:{run.id}:{path}",
                    kind=PushKind.TEXT,
                    chat_id=run.chat_id,
                    source=f"sop:{procedure.id}",
                    due_at=now,
                    now=now,
                    text=text,
                    pin=action.pin,
                    urgent=action.urgent,
                    over_cap=action.over_cap,
                )
            )

        async def effects(conn: AsyncConnection) -> None:
            await add_pushes(conn, rows)
            if action.rotate is not None:
                for chat_id, to in advances:
                    await rotations.advance(conn, chat_id, action.rotate, to)

        going = await self._simple(
            procedure, path, runs, now, "done", effects=effects, errors=errors
        )
        if rows:
            self.pushes.wake()
        return going

    async def _live(
        self, procedure: Procedure, path: str, step: LiveStep, runs: list[Run], now: datetime
    ) -> list[Run]:
        """Plan a live per run's group, in the transaction that moves the run on."""
        action = step.live
        lives = self.lives
        errors: dict[int, str] = {}
        planned: list[tuple[Run, str, datetime]] = []
        for run in runs:
            zone = (
                ZoneInfo(action.start.timezone)
                if action.start.timezone
                else self.group_facts(run.chat_id).timezone
            )
            day = action.start.on or now.astimezone(zone).date() + timedelta(days=action.start.days)
            starts_at = datetime.combine(day, action.start.at, tzinfo=zone).astimezone(UTC)
            if starts_at <= now:
                errors[run.id] = (
                    f"the live would start in the past ({starts_at:%Y-%m-%d %H:%M} UTC)"
                )
                continue
            known = self.registry.groups.get(run.chat_id)
            language = (known.language if known is not None else None) or self.default_language
            title = action.title
            if isinstance(title, dict):
                title = title.get(language) or next(iter(title.values()))  # type: ignore[call-overload]
            planned.append((run, str(title), starts_at))

        async def first(conn: AsyncConnection) -> None:
            for run, title, starts_at in planned:
                live_id = await lives.create_in(
                    conn,
                    run.chat_id,
                    title=title,
                    starts_at=starts_at,
                    url=action.link,
                    host=action.host,
                    reminders=action.reminders,
                    length=action.length,
                    pin=action.pin,
                    source=f"sop:{procedure.id}",
                    key=f"sop:{procedure.id}:{run.id}:{path}",
                )
                run.variables["live"] = {"id": live_id, "title": title}

        going = await self._simple(
            procedure, path, runs, now, "done", first=first if planned else None, errors=errors
        )
        if planned:
            self.pushes.wake()
        return going

    def _emitted(
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
        self._spawn(self.emit(event, run.chat_id, run.user_id, data, chain=chain))

    async def _wait(
        self, procedure: Procedure, path: str, step: WaitStep, runs: list[Run], now: datetime
    ) -> None:
        wait = step.wait
        records = []
        for run in runs:
            if wait.for_ is not None:
                wake = now + wait.for_
            elif wait.until is not None:
                zone = self.group_facts(run.chat_id).timezone
                wake = _next_time_of_day(now, wait.until, zone)
            else:
                assert wait.timeout is not None
                wake = now + wait.timeout
            records.append(
                StepRecord(run.id, run.seq, procedure.label(path), "wait", "waiting", now)
            )
            run.seq += 1
            run.status, run.wake_at, run.wait_event = RunStatus.WAITING, wake, wait.event
            run.batch = None  # members started together share messages only until they wait
        await self.runs.save(runs, now, begun=records)
        for run in runs:
            if run.wait_event is not None:
                self._waits[run.chat_id, run.user_id, run.wait_event].add(run.id)
        self._release(runs)
        self._wake.set()

    def _unwait(self, run: Run) -> None:
        if run.wait_event is not None:
            key = (run.chat_id, run.user_id, run.wait_event)
            waiting = self._waits.get(key)
            if waiting is not None:
                waiting.discard(run.id)
                if not waiting:
                    del self._waits[key]
        run.wait_event = None

    async def _resume_waits(
        self, chat_id: int, user_id: int | None, event: str, now: datetime
    ) -> None:
        run_ids = self._waits.get((chat_id, user_id, event))
        if not run_ids:
            return
        self._unhold(run_ids)  # the event comes first: its timeout no longer counts
        runs = []
        for run_id in list(run_ids):
            run = None if run_id in self._busy else await self.runs.get(run_id)
            if run is not None:
                runs.append(run)
        resumed = []
        records = []
        for run in runs:
            if run.status is not RunStatus.WAITING or run.wait_event != event:
                run_ids.discard(run.id)
                continue
            procedure = self.library.get(run.sop_id)
            records.append(self._wait_record(run, procedure, now, "done"))
            run.variables["timed_out"] = False
            self._unwait(run)
            run.status, run.wake_at = RunStatus.RUNNING, None
            self._goto(run, procedure, run.position, now, past=True)
            resumed.append(run)
        if not resumed:
            return
        self._busy.update(run.id for run in resumed)
        try:
            await self.runs.save(resumed, now, finished=records)
        except RunMoved:
            self._release(resumed)
            return
        going = await self._settle(resumed)
        if going:
            self._spawn(self._advance(going, claimed=True))

    async def _jump(self, procedure: Procedure, run: Run, path: str, now: datetime) -> None:
        """A flow button was pressed while its run waited: go on at the button's step."""
        self._unhold([run.id])
        self._busy.add(run.id)
        record = self._wait_record(run, procedure, now, "interrupted")
        self._unwait(run)
        run.status, run.wake_at, run.position = RunStatus.RUNNING, None, path
        run.variables["pressed"] = procedure.label(path)
        try:
            await self.runs.save([run], now, finished=[record])
        except RunMoved:
            self._release([run])
            return
        self._spawn(self._advance([run], claimed=True))

    # -- sending ------------------------------------------------------------------------------

    async def _send(
        self, procedure: Procedure, path: str, step: SendStep, runs: list[Run], now: datetime
    ) -> None:
        """Render, claim, then deliver; each message's runs go on once Telegram has answered."""
        send = step.send
        messages: dict[Any, list[Run]] = defaultdict(list)
        for run in runs:
            shared = run.batch is not None and send.to == "group"
            messages[(run.chat_id, run.batch) if shared else run.id].append(run)
        label = procedure.label(path)
        claimed: list[Run] = []
        records: list[StepRecord] = []
        outgoing: list[tuple[list[Run], Rendered | None, str | None]] = []
        facts_by_chat: dict[int, dict[int, MemberFacts]] = {}
        keys = [send.template] if send.template else [v.template for v in send.variants or []]
        keys += [button.text for row in send.buttons for button in row]
        counts_needed = {WEEK} if self.texts.mentions(keys, MESSAGES_7D) else set()
        streaks_needed = self.texts.mentions(keys, STREAK)
        for chat_id in {run.chat_id for run in runs}:
            users = [run.user_id for run in runs if run.chat_id == chat_id and run.user_id]
            facts_by_chat[chat_id] = await self.facts.members(chat_id, users, now, counts_needed)
            if streaks_needed and users:
                rules = self.checkin_rules(chat_id)
                zone = self.group_facts(chat_id).timezone
                streaks = await self.boards.streaks(
                    chat_id, users, now, zone, rules.start_hour, rules.freezes
                )
                for user_id, fact in facts_by_chat[chat_id].items():
                    fact.streak = streaks.get(user_id, 0)
        counts = {chat_id: await self.facts.member_count(chat_id) for chat_id in facts_by_chat}
        for group_runs in messages.values():
            first = group_runs[0]
            facts = facts_by_chat[first.chat_id]
            members = [facts[run.user_id] for run in group_runs if run.user_id in facts]
            group = self.group_facts(first.chat_id, counts[first.chat_id])
            known = self.registry.groups.get(first.chat_id)
            language = known.language if known is not None else None
            rendered: Rendered | None = None
            error: str | None = None
            try:
                if send.to == "member" and first.user_id is None:
                    raise RenderError("'to: member' needs a member; this run is for the group")
                rendered = compose(
                    send,
                    sop_id=procedure.id,
                    who=first.user_id if first.user_id is not None else first.chat_id,
                    texts=self.texts,
                    language=language,
                    context=self._context(
                        procedure, first.chat_id, group, members, first.variables, now, first.id
                    ),
                    content_dir=self.library.content_dir,
                )
            except RenderError as exc:
                error = str(exc)
            for run in group_runs:
                records.append(
                    StepRecord(
                        run.id,
                        run.seq,
                        label,
                        "send",
                        "started" if error is None else "failed",
                        now,
                        None if error is None else now,
                        variant=rendered.variant if rendered else None,
                        error=error,
                    )
                )
                run.seq += 1
                if error is None:
                    run.status = RunStatus.SENDING
                elif step.continue_on_error:
                    self._goto(run, procedure, path, now, past=True)
                else:
                    run.status, run.error, run.finished_at = (
                        RunStatus.FAILED,
                        f"{label}: {error}",
                        now,
                    )
                claimed.append(run)
            outgoing.append((group_runs, rendered, error))
        await self.runs.save(claimed, now, begun=records)
        for group_runs, rendered, error in outgoing:
            if error is not None:
                logger.bind(chat_id=group_runs[0].chat_id).error(
                    "{} ({}): {}", procedure.id, label, error
                )
                going = await self._settle(group_runs)
                if going:
                    self._spawn(self._advance(going, claimed=True))
            else:
                assert rendered is not None
                self._spawn(self._deliver(procedure, path, step, group_runs, rendered))

    async def _deliver(
        self, procedure: Procedure, path: str, step: SendStep, runs: list[Run], rendered: Rendered
    ) -> None:
        send = step.send
        first = runs[0]
        target = first.user_id if send.to == "member" and first.user_id else first.chat_id
        source = f"sop:{procedure.id}"
        reply_to = first.variables.get("trigger", {}).get("message_id") if send.reply else None
        if rendered.photo is not None:
            delivered = await self.outbox.send_photo(
                target,
                rendered.photo,
                caption=rendered.text,
                source=source,
                reply_markup=rendered.markup,
                reply_to_message_id=reply_to,
            )
        else:
            delivered = await self.outbox.send_message(
                target,
                rendered.text,
                source=source,
                reply_markup=rendered.markup,
                reply_to_message_id=reply_to,
                combine=source if send.combine else None,
            )
        now = self.clock.now()
        label = procedure.label(path)
        records = []
        for run in runs:
            records.append(
                StepRecord(
                    run.id,
                    run.seq - 1,
                    label,
                    "send",
                    "done" if delivered.ok else "failed",
                    now,
                    now,
                    chat_id=delivered.chat_id,
                    message_id=delivered.message_id,
                    error=delivered.error,
                )
            )
            if delivered.ok or step.continue_on_error:
                run.status = RunStatus.RUNNING
                self._goto(run, procedure, path, now, past=True)
            elif self._stopping and delivered.attempts == 0:
                # Never tried, because the bot is stopping: send it after the restart.
                run.status, run.wake_at = RunStatus.SCHEDULED, now
            else:
                run.status, run.error, run.finished_at = (
                    RunStatus.FAILED,
                    f"{label}: {delivered.error}",
                    now,
                )
        deletion: dict[str, Any] | None = None
        if delivered.ok and delivered.message_id is not None and send.delete_after is not None:
            deletion = {
                "chat_id": delivered.chat_id,
                "message_id": delivered.message_id,
                "source": source,
                "due_at": now + send.delete_after,
            }

        async def effects(conn: AsyncConnection) -> None:
            if deletion is not None:
                await conn.execute(SCHEDULED_DELETIONS.insert(), [deletion])

        await self.runs.save(runs, now, finished=records, effects=effects)
        if delivered.ok:
            for run in runs:
                self.activity.add(
                    event_row(
                        chat_id=delivered.chat_id if send.to == "group" else run.chat_id,
                        user_id=run.user_id,
                        at=now,
                        type=EventType.SOP_SENT,
                        message_id=delivered.message_id,
                        data={
                            "sop": procedure.id,
                            "step": label,
                            "variant": rendered.variant,
                            "run": run.id,
                        },
                    )
                )
            if send.pin and delivered.message_id is not None:
                await self.outbox.pin(delivered.chat_id, delivered.message_id, source=source)
            if deletion is not None:
                self.deletions.wake()
        scheduled = [run for run in runs if run.status is RunStatus.SCHEDULED]
        self._release(scheduled)
        going = await self._settle([run for run in runs if run not in scheduled])
        if going:
            await self._advance(going, claimed=True)

    def _context(
        self,
        procedure: Procedure,
        chat_id: int,
        group: GroupFacts,
        members: list[MemberFacts],
        variables: dict[str, Any],
        now: datetime,
        run_id: int | None = None,
    ) -> dict[str, Any]:
        people = [member.context(now) for member in members]
        trigger: dict[str, Any] = {"type": None, "event": None, "data": {}, "message_id": None}
        return {
            "member": people[0] if people else None,
            "members": people,
            "group": group_context(id=chat_id, title=group.title, members=group.members),
            "sop": {"id": procedure.id, "name": procedure.sop.name},
            "vars": procedure.sop.variables,
            "trigger": {**trigger, **variables.get("trigger", {})},
            "run": {
                "id": run_id,
                "timed_out": bool(variables.get("timed_out", False)),
                "pressed": variables.get("pressed"),
            },
            "checkin": variables.get("checkin"),
            "leaderboard": board_context(variables.get("leaderboard")),
            "lottery": variables.get("lottery"),
            "live": variables.get("live"),
            "now": now.astimezone(group.timezone),
        }


# Marks a key as taken by a run about to be created, so one trigger starts one run per key.
_STARTING = Run(0, "", 0, None, RunStatus.RUNNING, "0", 0, {}, None, "")


def silent_trigger(procedure: Procedure) -> SilentTrigger | None:
    """The SOP's daily check for silent members, if it has one."""
    return next((t for t in procedure.sop.triggers if isinstance(t, SilentTrigger)), None)


def _matches(trigger: MessageTrigger, text: str) -> bool:
    haystack = text if trigger.case_sensitive else text.casefold()
    for keyword in trigger.keywords:
        if (keyword if trigger.case_sensitive else keyword.casefold()) in haystack:
            return True
    if trigger.regex is not None:
        flags = 0 if trigger.case_sensitive else re.IGNORECASE
        return re.search(trigger.regex, text, flags) is not None
    return False


def _next_time_of_day(now: datetime, at: Any, zone: ZoneInfo) -> datetime:
    """The next moment after `now` when the clock in `zone` shows `at`."""
    local = now.astimezone(zone)
    candidate = datetime.combine(local.date(), at, tzinfo=zone)
    if candidate <= local:
        candidate = datetime.combine(local.date() + timedelta(days=1), at, tzinfo=zone)
    return candidate.astimezone(UTC)


def _ago(delta: timedelta) -> str:
    return format_duration(timedelta(seconds=max(int(delta.total_seconds()), 1)))
