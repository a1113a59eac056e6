"""What starts runs and ends waits: the loaded SOPs indexed by trigger, and the things that happen
in groups (joins, leaves, messages, button presses, events, the calendar, `/sop_run`).

Joins, the join check first, are started in `_joins`. A member's messages are counted toward
floods (`_floods`) on their way.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol

from loguru import logger

from bot.db import LIVE, RunStatus
from bot.sop.engine._floods import Burst, Bursts, FloodLimits
from bot.sop.engine._joins import Joins
from bot.sop.engine._shared import Shared
from bot.sop.engine._starting import Starting
from bot.sop.engine._stepping import Stepping
from bot.sop.engine._waits import wait_record
from bot.sop.format import (
    ButtonTrigger,
    CommandTrigger,
    EventTrigger,
    FloodTrigger,
    MemberJoinedTrigger,
    MemberLeftTrigger,
    MessageChecks,
    MessageTrigger,
    ScheduleTrigger,
    SilentTrigger,
)
from bot.sop.library import Library, Procedure
from bot.sop.messages import parse_button
from bot.sop.runs import Run, RunMoved
from bot.sop.steps import CHECKS, MAX_CHAIN, goto

PRESS_MEMORY = 60.0  # seconds a flow-button press is remembered, so a double tap counts once
PRESS_PATIENCE = 5.0  # seconds a press waits for its run to finish the step in hand


class Judgement(Protocol):
    """What the first-message checks found in a newcomer's message (`bot.moderation.checks`):
    whether it is judged spam, and the names of the checks that fired."""

    @property
    def spam(self) -> bool: ...

    @property
    def fired(self) -> Sequence[str]: ...


@dataclass
class TriggerIndex:
    """The loaded SOPs by what starts them, each with its trigger (for its `cooldown`)."""

    joined: list[tuple[Procedure, MemberJoinedTrigger]] = field(default_factory=list)
    left: list[tuple[Procedure, MemberLeftTrigger]] = field(default_factory=list)
    messages: list[tuple[Procedure, MessageTrigger]] = field(default_factory=list)
    commands: dict[str, list[tuple[Procedure, CommandTrigger]]] = field(default_factory=dict)
    buttons: dict[str, list[tuple[Procedure, ButtonTrigger]]] = field(default_factory=dict)
    events: dict[str, list[tuple[Procedure, EventTrigger]]] = field(default_factory=dict)
    # With the trigger's place among its SOP's triggers: which of them fired, per burst.
    floods: list[tuple[Procedure, FloodTrigger, int]] = field(default_factory=list)

    @classmethod
    def of(cls, library: Library) -> TriggerIndex:
        triggers = cls()
        for procedure in library:
            for place, trigger in enumerate(procedure.sop.triggers):
                if isinstance(trigger, FloodTrigger):
                    triggers.floods.append((procedure, trigger, place))
                elif isinstance(trigger, MemberJoinedTrigger):
                    triggers.joined.append((procedure, trigger))
                elif isinstance(trigger, MemberLeftTrigger):
                    triggers.left.append((procedure, trigger))
                elif isinstance(trigger, MessageTrigger):
                    triggers.messages.append((procedure, trigger))
                elif isinstance(trigger, CommandTrigger):
                    triggers.commands.setdefault(trigger.command, []).append((procedure, trigger))
                elif isinstance(trigger, ButtonTrigger):
                    triggers.buttons.setdefault(trigger.data, []).append((procedure, trigger))
                elif isinstance(trigger, EventTrigger):
                    triggers.events.setdefault(trigger.event, []).append((procedure, trigger))
        return triggers


def silent_trigger(procedure: Procedure) -> SilentTrigger | None:
    """The SOP's daily check for silent members, if it has one."""
    return next((t for t in procedure.sop.triggers if isinstance(t, SilentTrigger)), None)


def matches(trigger: MessageTrigger, text: str | None, judgement: Judgement | None = None) -> bool:
    """Whether a message starts a `message` trigger: its checks found what the trigger asks
    (when it asks), and its text has a keyword or matches the regex (when it gives them)."""
    if trigger.checks is not None:
        if judgement is None or not judged(trigger.checks, judgement):
            return False
        if not trigger.keywords and trigger.regex is None:
            return True
    if not text:
        return False
    if trigger.keywords:
        haystack = text if trigger.case_sensitive else text.casefold()
        for keyword in trigger.keywords:
            if (keyword if trigger.case_sensitive else keyword.casefold()) in haystack:
                return True
    if trigger.regex is not None:
        return _pattern(trigger.regex, trigger.case_sensitive).search(text) is not None
    return False


def judged(checks: MessageChecks, judgement: Judgement) -> bool:
    """The checks found what a trigger's `checks` ask: spam (or not), or one of the named
    checks fired."""
    if checks.spam is not None:
        return judgement.spam == checks.spam
    return any(name in judgement.fired for name in checks.fired or ())


@functools.lru_cache(maxsize=256)
def _pattern(regex: str, case_sensitive: bool) -> re.Pattern[str]:
    return re.compile(regex, 0 if case_sensitive else re.IGNORECASE)


class Triggers:
    """Starts runs for what happens in groups, and resumes the runs waiting for it."""

    def __init__(
        self,
        shared: Shared,
        *,
        stepping: Stepping,
        starting: Starting,
        unhold: Callable[[Iterable[int]], None],
    ) -> None:
        self._index = TriggerIndex()
        self._bursts = Bursts()  # members' latest messages, for `flood` triggers
        self._shared = shared
        self._stepping = stepping
        self._start = starting.start
        self._cancel = starting.cancel
        self._unhold = unhold  # the timer lets go of runs it read ahead
        self._joins = Joins(shared, starting=starting, joined=lambda: self._index.joined)
        self._presses: dict[tuple[int, int, int, str], float] = {}

    @property
    def index(self) -> TriggerIndex:
        """The loaded SOPs by what starts them."""
        return self._index

    @index.setter
    def index(self, index: TriggerIndex) -> None:
        self._index = index
        self._bursts.arm(FloodLimits.of(trigger for _, trigger, _ in index.floods))

    # -- members ------------------------------------------------------------------------------

    async def member_joined(self, chat_id: int, user_id: int) -> None:
        """Start the join checks for a counted join; the other `member_joined` SOPs now, or
        when the check ends (`gate_ended`)."""
        await self._joins.member_joined(chat_id, user_id)

    async def gate_ended(self, runs: list[Run]) -> None:
        """Join checks ended: the other `member_joined` SOPs start for their members."""
        await self._joins.gate_ended(runs)

    async def member_left(self, chat_id: int, user_id: int) -> None:
        """Start `member_left` SOPs; end the member's other runs in that group."""
        now = self._shared.clock.now()
        leaving = {procedure.id for procedure, _trigger in self.index.left}
        for procedure in self._shared.library:
            if procedure.id in leaving or procedure.sop.concurrency_key != "member":
                continue
            pending = await self._shared.runs.pending(procedure.id, chat_id, user_id)
            await self._cancel(pending, now, "the member left the group")
        for procedure, trigger in self.index.left:
            await self._start(
                procedure,
                chat_id,
                [user_id],
                trigger="member_left",
                now=now,
                cooldown=trigger.cooldown,
            )

    # -- messages, buttons, events ------------------------------------------------------------

    def watches_messages(self, chat_id: int, user_id: int) -> bool:
        """Cheap check on the hot path: does anything want this member's messages?"""
        index = self.index
        return bool(
            index.messages
            or index.commands
            or index.floods
            or (chat_id, user_id, "member.message") in self._shared.waits
        )

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
        message, flood and command SOPs.

        Floods are timed by when Telegram says the messages were sent (`sent_at`), not by when
        they arrive: updates held back while the bot was down arrive all at once, and their
        senders did not flood.

        This is every group message's way (a shipped SOP has a keyword trigger, another a
        flood trigger): what most messages come to, nothing, costs a few lookups and a match
        here."""
        if (chat_id, user_id, "member.message") in self._shared.waits:
            await self._resume_waits(chat_id, user_id, "member.message", self._shared.clock.now())
        if self._bursts.armed:
            now = self._shared.clock.now()
            at = (sent_at or now).timestamp()
            burst = self._bursts.note(chat_id, user_id, at)
            if burst is not None:
                await self._flood(chat_id, user_id, message_id, burst, now, at)
        if not text and judgement is None:
            return
        commands = self.index.commands
        if text and text[0] == "/" and commands:
            name, _, addressee = text[1:].split(maxsplit=1)[0].partition("@")
            if not addressee or addressee.lower() == bot_username.lower():
                for procedure, command in commands.get(name.lower(), []):
                    await self._start(  # the chat's next update does not wait for the run
                        procedure,
                        chat_id,
                        [user_id],
                        trigger="command",
                        now=self._shared.clock.now(),
                        variables={"trigger": {"message_id": message_id}},
                        cooldown=command.cooldown,
                        wait=False,
                    )
            return
        for procedure, trigger in self.index.messages:
            if matches(trigger, text, judgement):
                variables: dict[str, Any] = {"trigger": {"message_id": message_id}}
                if trigger.checks is not None and judgement is not None:
                    variables[CHECKS] = list(judgement.fired)  # for the moderation log
                await self._start(
                    procedure,
                    chat_id,
                    [user_id],
                    trigger="message",
                    now=self._shared.clock.now(),
                    variables=variables,
                    cooldown=trigger.cooldown,
                    wait=False,
                )

    async def _flood(
        self,
        chat_id: int,
        user_id: int,
        message_id: int,
        burst: Burst,
        now: datetime,
        at: float,
    ) -> None:
        """A member's burst may have reached flood triggers: start each one reached, once per
        burst, where its SOP runs, unless the member is an admin (asked only now). `at`: when
        the message was sent, in seconds."""
        admin: bool | None = None
        for procedure, trigger, place in self.index.floods:
            key = (procedure.id, place)
            if not burst.reached(trigger, key, at):
                continue
            burst.fire(key)  # an admin's burst too: not asked again until the next one
            if not self._shared.context.runs_in(procedure, chat_id):
                continue
            if admin is None:
                admin = await self._stepping.admins.is_admin(chat_id, user_id)
            if admin:
                continue
            await self._start(
                procedure,
                chat_id,
                [user_id],
                trigger="flood",
                now=now,
                variables={"trigger": {"message_id": message_id}},
                cooldown=trigger.cooldown,
                wait=False,
            )

    async def button(self, chat_id: int, user_id: int, message_id: int, data: str) -> str | None:
        """A member pressed a button; returns a text key to answer with, or None.

        A flow button for one member only (`only: member`), pressed by anyone else, changes
        nothing: they are told it is not for them. It continues the member's run in progress
        and nothing else: pressed after that run ended, it starts none (a join check's prompt
        left behind must not lift a restriction put on the member since)."""
        target = parse_button(data)
        if target is not None and target.member is not None and target.member != user_id:
            return "sop.not_for_you"
        now = self._shared.clock.now()
        await self._resume_waits(chat_id, user_id, f"button.{data}", now)
        for procedure, trigger in self.index.buttons.get(data, []):
            await self._start(
                procedure,
                chat_id,
                [user_id],
                trigger="button",
                now=now,
                cooldown=trigger.cooldown,
            )
        if target is None:
            return None
        key = (chat_id, message_id, user_id, data)
        tick = now.timestamp()
        self._presses = {k: t for k, t in self._presses.items() if tick - t < PRESS_MEMORY}
        if key in self._presses:
            return "sop.pressed_already"
        self._presses[key] = tick
        sop_id, step_id = target.sop, target.step
        flow = self._shared.library.get(sop_id)
        if flow is None or step_id not in flow.path_of:
            return "sop.button_gone"
        path = flow.path_of[step_id]
        by_group = flow.sop.concurrency_key == "group"
        busy = self._shared.leases.busy
        pending = await self._shared.runs.pending(sop_id, chat_id, user_id, any_member=by_group)
        working = {run.id for run in pending if run.id in busy}
        if working:  # pressed while the run still sends the message: let it reach its wait
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(PRESS_PATIENCE):
                    await self._shared.leases.until_idle(working)
            pending = await self._shared.runs.pending(sop_id, chat_id, user_id, any_member=by_group)
        for run in pending:
            if run.status is RunStatus.WAITING and run.id not in busy:
                await self._jump(flow, run, path, now)
                return None
            if run.status in LIVE:
                return "sop.busy"
        if target.member is not None:  # it continues the member's run, which has ended
            return "sop.button_gone"
        await self._start(
            flow, chat_id, [user_id], trigger="button", now=now, position=path, force=True
        )
        return None

    def listens(self, name: str, chat_id: int, user_id: int | None) -> bool:
        """Whether a run waits for the event or an SOP starts on it."""
        return name in self.index.events or (chat_id, user_id, name) in self._shared.waits

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
        now = self._shared.clock.now()
        await self._resume_waits(chat_id, user_id, name, now)
        if chain >= MAX_CHAIN:
            logger.bind(chat_id=chat_id).warning(
                "event {} not passed on: SOPs started each other {} deep", name, chain
            )
            return
        variables = {"trigger": {"event": name, "data": dict(data or {})}, "_chain": chain + 1}
        for procedure, trigger in self.index.events.get(name, []):
            await self._start(
                procedure,
                chat_id,
                [user_id],
                trigger="event",
                now=now,
                variables=variables,
                cooldown=trigger.cooldown,
            )

    # -- the calendar, and admins -------------------------------------------------------------

    async def fire_schedule(self, sop_id: str, chat_id: int, index: int | None = None) -> None:
        """A calendar trigger (the SOP's trigger at `index`; None: its first schedule) fired
        for one group: one run for the whole group."""
        procedure = self._shared.library.get(sop_id)
        if procedure is None:
            return
        triggers = procedure.sop.triggers
        chosen = triggers[index] if index is not None and index < len(triggers) else None
        if not isinstance(chosen, ScheduleTrigger):
            chosen = next((t for t in triggers if isinstance(t, ScheduleTrigger)), None)
        await self._start(
            procedure,
            chat_id,
            [None],
            trigger="schedule",
            now=self._shared.clock.now(),
            cooldown=chosen.cooldown if chosen is not None else None,
        )

    async def check_silent(self, sop_id: str, chat_id: int, days: int) -> int:
        """The daily check of a `silent` trigger: start runs, as one batch, for silent members."""
        procedure = self._shared.library.get(sop_id)
        if procedure is None:
            return 0
        silent = silent_trigger(procedure)
        return len(
            await self._start_silent(
                procedure,
                chat_id,
                days,
                wake_at=self._shared.clock.now(),
                cooldown=silent.cooldown if silent is not None else None,
            )
        )

    async def _start_silent(
        self,
        procedure: Procedure,
        chat_id: int,
        days: int,
        *,
        wake_at: datetime | None,
        cooldown: timedelta | None = None,
    ) -> list[Run]:
        """Runs, as one batch, for the members silent these `days` whom the SOP lets in."""
        now = self._shared.clock.now()
        silent = await self._shared.facts.silent_members(chat_id, now - timedelta(days=days))
        if not silent:
            return []
        batch = f"{procedure.id}:{chat_id}:{now.timestamp():.0f}"
        return await self._start(
            procedure,
            chat_id,
            silent,
            trigger="silent",
            now=now,
            batch=batch,
            wake_at=wake_at,
            cooldown=cooldown,
        )

    async def run_by_hand(self, sop_id: str, chat_id: int, user_id: int | None) -> list[Run]:
        """`/sop_run`: start an SOP now, for one member or for the group, ignoring its mode.

        An SOP for silent members, run for the group, does its daily check now (its conditions
        hold, so nobody is nudged twice): a group run of it would have no member to nudge.
        """
        procedure = self._shared.library.get(sop_id)
        if procedure is None:
            return []
        silent = silent_trigger(procedure)
        if user_id is None and silent is not None and procedure.sop.concurrency_key == "member":
            return await self._start_silent(procedure, chat_id, silent.days, wake_at=None)
        return await self._start(
            procedure,
            chat_id,
            [user_id],
            trigger="manual",
            now=self._shared.clock.now(),
            force=True,
        )

    async def stop_runs(self, sop_id: str, chat_id: int, reason: str) -> None:
        """End every run of an SOP in a group (it was switched off there); a join check's
        members waiting for it go on to the welcome."""
        pending = await self._shared.runs.pending(sop_id, chat_id, None, any_member=True)
        await self._cancel(pending, self._shared.clock.now(), reason)
        procedure = self._shared.library.get(sop_id)
        if procedure is not None and procedure.sop.join_gate:
            await self._joins.gate_ended(
                [run for run in pending if run.status is RunStatus.CANCELLED]
            )

    # -- ending waits -------------------------------------------------------------------------

    async def _resume_waits(
        self, chat_id: int, user_id: int | None, event: str, now: datetime
    ) -> None:
        run_ids = self._shared.waits.get((chat_id, user_id, event))
        if not run_ids:
            return
        self._unhold(run_ids)  # the event comes first: its timeout no longer counts
        busy = self._shared.leases.busy
        runs = []
        for run_id in list(run_ids):
            run = None if run_id in busy else await self._shared.runs.get(run_id)
            if run is not None:
                runs.append(run)
        resumed = []
        records = []
        for run in runs:
            if run.status is not RunStatus.WAITING or run.wait_event != event:
                run_ids.discard(run.id)
                continue
            procedure = self._shared.library.get(run.sop_id)
            records.append(wait_record(run, procedure, now, "done"))
            run.variables["timed_out"] = False
            self._shared.waits.unwait(run)
            run.status, run.wake_at = RunStatus.RUNNING, None
            goto(run, procedure, run.position, now, past=True)
            resumed.append(run)
        if not resumed:
            return
        busy.update(run.id for run in resumed)
        try:
            await self._shared.runs.save(resumed, now, finished=records)
        except RunMoved:
            self._shared.leases.release(resumed)
            return
        stepping = self._stepping
        going = await stepping.settle(resumed)
        if going:
            stepping.spawn(stepping.advance(going, claimed=True))

    async def _jump(self, procedure: Procedure, run: Run, path: str, now: datetime) -> None:
        """A flow button was pressed while its run waited: go on at the button's step."""
        self._unhold([run.id])
        self._shared.leases.busy.add(run.id)
        record = wait_record(run, procedure, now, "interrupted")
        self._shared.waits.unwait(run)
        run.status, run.wake_at, run.position = RunStatus.RUNNING, None, path
        run.variables["pressed"] = procedure.label(path)
        try:
            await self._shared.runs.save([run], now, finished=[record])
        except RunMoved:
            self._shared.leases.release([run])
            return
        self._stepping.spawn(self._stepping.advance([run], claimed=True))
