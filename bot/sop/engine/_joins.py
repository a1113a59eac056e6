"""Joins: the group's `member_joined` SOPs started for a joiner, the join check first.

Joins are greeted leading edge and trailing edge per SOP and group: the first joiner of a quiet
group after `JOIN_GATHER`, joiners while the `batch_window` after a greeting is open together
when it closes. Runs started together are one batch, and share a message for each send step
until their first wait.

A join check (an SOP with `join_gate`) comes first: while its run for a joiner is live, the
group's other `member_joined` SOPs wait; they start for the member when it ends (`gate_ended`,
which the run's end calls, after a restart too: the run is in the database), unless the member
left or the check removed them. When the check does not start for the joiner (its conditions:
an admin, a member approved before), they start at once.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from bot.db import LIVE
from bot.sop.engine._shared import Shared
from bot.sop.engine._starting import Starting
from bot.sop.facts import PRESENT
from bot.sop.format import MemberJoinedTrigger
from bot.sop.library import Procedure
from bot.sop.runs import Run
from bot.sop.steps import REMOVED

JOIN_GATHER = timedelta(seconds=1.3)  # a quiet group's first joiner waits this for company
GREETING_CLOSING = timedelta(milliseconds=300)  # joins this close to a greeting wait for the next


@dataclass(frozen=True)
class _Greeting:
    """The next greeting of joiners in a group: its batch, when it goes, when the window after
    it closes (joins before then wait for the greeting after it)."""

    batch: str
    greets_at: datetime
    window_closes: datetime

    @classmethod
    def at(cls, sop_id: str, chat_id: int, moment: datetime, window: timedelta) -> _Greeting:
        return cls(f"{sop_id}:{chat_id}:{moment.timestamp():.6f}", moment, moment + window)


class Joins:
    """Starts the `member_joined` SOPs for joiners: join checks at once, the others throttled
    per SOP and group, and after the joiner's check when there is one."""

    def __init__(
        self,
        shared: Shared,
        *,
        starting: Starting,
        joined: Callable[[], list[tuple[Procedure, MemberJoinedTrigger]]],
    ) -> None:
        self._shared = shared
        self._start = starting.start
        self._joined = joined  # the loaded SOPs with a member_joined trigger, and it
        self._batches: dict[tuple[str, int], _Greeting] = {}  # per SOP and group: the next

    async def member_joined(self, chat_id: int, user_id: int) -> None:
        """Start the join checks for a counted join; the other `member_joined` SOPs now, or
        when the check ends (`gate_ended`)."""
        now = self._shared.clock.now()
        if not await self._gated(chat_id, user_id, now):
            await self._greet(chat_id, user_id, now)

    async def _gated(self, chat_id: int, user_id: int, now: datetime) -> bool:
        """Start the join checks (SOPs with `join_gate`) for a joiner, each alone and at once;
        whether one of them is under way for them."""
        gated = False
        for procedure, trigger in self._joined():
            if not procedure.sop.join_gate:
                continue
            started = await self._start(
                procedure,
                chat_id,
                [user_id],
                trigger="member_joined",
                now=now,
                cooldown=trigger.cooldown,
            )
            gated = gated or bool(started) or await self._checking(procedure, chat_id, user_id)
        return gated

    async def _checking(self, procedure: Procedure, chat_id: int, user_id: int) -> bool:
        """A run of this join check is under way for the member (say, they left and came
        back while it ran: mode single started none)."""
        if not self._shared.context.runs_in(procedure, chat_id):
            return False
        pending = await self._shared.runs.pending(procedure.id, chat_id, user_id)
        return any(run.status in LIVE for run in pending)

    async def gate_ended(self, runs: list[Run]) -> None:
        """Join checks ended: start the group's other `member_joined` SOPs for each member who
        is still in the group, unless the check removed them or another check is under way."""
        now = self._shared.clock.now()
        for run in runs:
            user_id = run.user_id
            if run.trigger != "member_joined" or user_id is None or run.variables.get(REMOVED):
                continue
            if await self._other_check(run, user_id):
                continue  # the last check to end lets them in
            facts = await self._shared.facts.members(run.chat_id, [user_id], now)
            member = facts.get(user_id)
            if member is None or member.status not in PRESENT:
                continue
            await self._greet(run.chat_id, user_id, now)

    async def _other_check(self, run: Run, user_id: int) -> bool:
        """Another join check than `run`'s is under way for the member."""
        others = [p for p, _ in self._joined() if p.sop.join_gate and p.id != run.sop_id]
        for procedure in others:
            if await self._checking(procedure, run.chat_id, user_id):
                return True
        return False

    async def _greet(self, chat_id: int, user_id: int, now: datetime) -> None:
        """Start the `member_joined` SOPs that are not join checks for a member who joined.

        With a `batch_window`, greetings are throttled per SOP and group, leading edge and
        trailing edge: the first joiner of a quiet group is greeted after `JOIN_GATHER` (joins
        in that moment share the message); joiners who come while the window after a greeting
        is open are greeted together when it closes. So a burst of joins gets one message per
        window, and nobody waits for a window when the group was quiet.
        """
        for procedure, trigger in self._joined():
            if procedure.sop.join_gate:
                continue
            window = trigger.batch_window
            batch = wake_at = None  # without a window: each joiner starts at once, alone
            if window is not None:
                greeting = self._batches.get((procedure.id, chat_id))
                if greeting is None or greeting.window_closes <= now:  # a quiet group: greet soon
                    greeting = _Greeting.at(procedure.id, chat_id, now + JOIN_GATHER, window)
                elif greeting.greets_at - GREETING_CLOSING <= now:  # greeted (or about to be):
                    # the next greeting closes the window; a run made in the moment of the
                    # greeting could miss it and get a message of its own
                    greeting = _Greeting.at(procedure.id, chat_id, greeting.window_closes, window)
                self._batches[procedure.id, chat_id] = greeting
                batch, wake_at = greeting.batch, greeting.greets_at
            await self._start(
                procedure,
                chat_id,
                [user_id],
                trigger="member_joined",
                now=now,
                batch=batch,
                wake_at=wake_at,
                cooldown=trigger.cooldown,
            )
