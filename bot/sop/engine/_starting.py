"""Starting runs: where the SOP runs and its conditions hold, as its mode says; ending runs.

The mode says what a trigger does while a run of the SOP is in progress for the same key (the
member, or the group): `single` starts none, `restart` cancels the old one, `queued` queues the
new one behind it, `parallel` starts it anyway.

Starts are written in batches: what triggers ask for while a batch is being written waits for
the next one, so check-ins from hundreds of members in a busy minute become a few transactions
whose runs move on together as one cohort, instead of a transaction (and a step) each. A
member's message hands its start over (`wait=False`) and goes on; the rest of the chat's
updates do not wait for the run to be written. A clean stop writes every start handed over
before it (`flush`); a crash (SIGKILL, power) loses those not written yet, the batch being
written and those asked for while it was (milliseconds' worth, as with the updates Telegram
has handed over and the activity log holds then).
"""

from __future__ import annotations

import asyncio
from collections import defaultdict, deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from loguru import logger

from bot.db import RunStatus
from bot.sop.conditions import holds, needs
from bot.sop.engine._cooldowns import Cooldowns
from bot.sop.engine._shared import Shared
from bot.sop.engine._stepping import Stepping
from bot.sop.engine._waits import wait_record
from bot.sop.library import Procedure
from bot.sop.runs import Run, RunMoved

MEMBERS_IN_QUERY = 500  # more members than this starting at once: read every live run

# Marks a key as taken by a run about to be created, so one trigger starts one run per key.
_STARTING = Run(0, "", 0, None, RunStatus.RUNNING, "0", 0, {}, None, "")


@dataclass(slots=True)
class _Start:
    """Runs a trigger asked for: of `procedure` in `chat_id`, for `users` (None: the group)."""

    procedure: Procedure
    chat_id: int
    users: list[int | None]
    trigger: str
    now: datetime
    variables: dict[str, Any]
    batch: str | None
    wake_at: datetime | None
    position: str
    force: bool
    cooldown: timedelta | None  # of the trigger: at most one start per period and key
    created: asyncio.Future[list[Run]] | None  # None: nobody waits for the runs
    runs: list[Run] = field(default_factory=list)

    @property
    def seen(self) -> dict[str, Any]:
        """The trigger as the run's conditions and texts see it."""
        return {"type": self.trigger, **self.variables.get("trigger", {})}


class Starting:
    """Creates runs for triggers (and moves them on) and cancels runs."""

    def __init__(
        self,
        shared: Shared,
        *,
        stepping: Stepping,
        cooldowns: Cooldowns,
        unhold: Callable[[Iterable[int]], None],
    ) -> None:
        self._shared = shared
        self._stepping = stepping
        self._cooldowns = cooldowns
        self._unhold = unhold  # the timer lets go of runs it read ahead
        self._lock = asyncio.Lock()
        self._asked: list[_Start] = []  # starts waiting for the next batch
        self._writer: asyncio.Task[None] | None = None  # writes batches while starts wait

    async def start(
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
        cooldown: timedelta | None = None,
        wait: bool = True,
    ) -> list[Run]:
        """Start runs for these members (None: the group) where the SOP's conditions hold;
        return them once written (with the batch they were written in). With `wait` false,
        return at once: the runs are written with the next batch (a member's message).

        `force` (a press of a flow button, `/sop_run`) starts even where the SOP's mode would
        not, and without its conditions or a cooldown; the SOP must still run in this group.
        A trigger's `cooldown` refuses a start for a key (member, or group) that started the SOP
        within it (`Cooldowns`).
        """
        created: asyncio.Future[list[Run]] | None = None
        if wait:
            created = asyncio.get_running_loop().create_future()
        asked = _Start(
            procedure,
            chat_id,
            list(users),
            trigger,
            now,
            dict(variables or {}),
            batch,
            wake_at,
            position,
            force,
            cooldown,
            created,
        )
        if not self._ask(asked) or created is None:
            return []
        return await created

    async def flush(self) -> None:
        """Write every start asked for so far (a stop: none is lost)."""
        while self._writer is not None:
            await asyncio.shield(self._writer)

    def _ask(self, start: _Start) -> bool:
        """Queue `start` for the next batch; False if no run can start (the SOP does not run in
        the group, or the bot is stopping)."""
        chat_id = start.chat_id
        if chat_id >= 0 or not self._shared.context.runs_in(start.procedure, chat_id):
            return False
        if self._shared.tasks.stopping:
            return False
        self._asked.append(start)
        if self._writer is None:
            self._writer = self._shared.tasks.spawn(self._write())
        return True

    async def _write(self) -> None:
        """Write the starts asked for, a batch at a time, until none waits."""
        try:
            while self._asked:
                asked, self._asked = self._asked, []
                try:
                    await self._write_batch(asked)
                except Exception as exc:
                    logger.exception("{} SOP starts failed", len(asked))
                    self._cooldowns.forget()  # starts it noted may not be stored
                    for start in asked:
                        if start.created is not None and not start.created.done():
                            start.created.set_exception(exc)
                finally:  # cancelled (the engine closed): nobody waits in vain
                    _cancel_waiting(asked)
        finally:
            self._writer = None
            _cancel_waiting(self._asked)

    async def _write_batch(self, asked: list[_Start]) -> None:
        for (_sop, chat_id), starts in _by_sop_and_group(asked).items():
            procedure = starts[0].procedure
            if procedure.sop.conditions:
                await self._where_conditions_hold(procedure, chat_id, starts)
        every = asked
        asked = [start for start in asked if start.users]
        async with self._lock:
            self._cooldowns.trim()
            rows: list[dict[str, Any]] = []
            owners: list[_Start] = []  # the start of each row
            cancel: list[Run] = []
            by_sop: dict[str, list[_Start]] = defaultdict(list)
            for start in asked:
                by_sop[start.procedure.id].append(start)
            stopping = self._shared.tasks.stopping
            for starts in by_sop.values():
                for start, row, held in await self._rows(starts, stopping):
                    rows.append(row)
                    owners.append(start)
                    cancel += held
            if cancel:
                await self.cancel(cancel, asked[0].now, "restarted by a new trigger (mode restart)")
            created = await self._shared.runs.create(rows)
        # Each start its runs: by SOP, group and member; one key's runs in the order of their
        # ids, which is the order they were inserted in.
        made: dict[tuple[str, int, int | None], deque[Run]] = defaultdict(deque)
        for run in sorted(created, key=lambda run: run.id):
            made[run.sop_id, run.chat_id, run.user_id].append(run)
        for start, row in zip(owners, rows, strict=True):
            start.runs.append(made[row["sop_id"], row["chat_id"], row["user_id"]].popleft())
        for start in every:
            if start.created is not None and not start.created.done():
                start.created.set_result(start.runs)
        running = [run for run in created if run.status is RunStatus.RUNNING]
        if len(created) > len(running):
            self._shared.wake.set()
        queued = [run for run in created if run.status is RunStatus.QUEUED]
        if queued:  # the run each queued behind may have ended while this batch was written
            await self._stepping.promote(queued)
        if running:
            self._shared.leases.busy.update(
                run.id for run in running
            )  # busy from now: see `outcome`
            self._shared.tasks.spawn(self._stepping.advance(running, claimed=True))

    async def _rows(
        self, starts: list[_Start], stopping: bool
    ) -> list[tuple[_Start, dict[str, Any], list[Run]]]:
        """The runs to create for the starts of one SOP, as its mode says, with the runs each
        cancels; in the order asked, so that of two starts for one key the first wins."""
        procedure = starts[0].procedure
        sop = procedure.sop
        by_group = sop.concurrency_key == "group"
        # Only the runs that can stand in the way: a group key's, or these members' (a busy
        # group may have thousands of runs live, say check-in replies waiting their turn).
        chats = {start.chat_id for start in starts}
        members = {user for start in starts for user in start.users if user is not None}
        if by_group or len(members) > MEMBERS_IN_QUERY:
            pending = await self._shared.runs.pending_in(procedure.id, chats)
        else:
            pending = await self._shared.runs.pending_in(procedure.id, chats, members)
        holders: dict[tuple[int, int | None], list[Run]] = defaultdict(list)
        for run in pending:
            holders[run.chat_id, None if by_group else run.user_id].append(run)
        cools = any(trigger.cooldown is not None for trigger in sop.triggers)
        cooled: dict[int, set[int | None]] = defaultdict(set)  # the keys a cooldown may refuse
        for start in starts:
            if start.cooldown is not None and not start.force:
                cooled[start.chat_id].update(start.users)
        for chat_id, users in cooled.items():
            await self._cooldowns.load(procedure.id, chat_id, users, by_group=by_group)
        made: list[tuple[_Start, dict[str, Any], list[Run]] | None] = []
        made_for: dict[tuple[int, int | None], int] = {}  # the row of this batch for a key
        for start in starts:
            for user_id in dict.fromkeys(start.users):
                key = (start.chat_id, None if by_group else user_id)
                cooldown = None if start.force else start.cooldown
                refused = self._cooldowns.refusal(
                    (procedure.id, *key), user_id, cooldown, start.now
                )
                if refused is not None:
                    logger.bind(chat_id=start.chat_id).debug(
                        "{} not started for {}: {}", procedure.id, user_id, refused.reason()
                    )
                    continue
                held = holders[key]
                cancel: list[Run] = []
                # Written while stopping: the run waits for the restart instead of moving now.
                wake_at = start.wake_at or (start.now if stopping else None)
                status = RunStatus.SCHEDULED if wake_at is not None else RunStatus.RUNNING
                if held and not start.force:
                    if sop.mode == "single":
                        logger.bind(chat_id=start.chat_id).debug(
                            "{} not started for {}: a run is in progress (mode single)",
                            procedure.id,
                            user_id,
                        )
                        continue
                    if sop.mode == "restart":  # the run stored, or the row of this batch
                        cancel = [run for run in held if run is not _STARTING]
                        if key in made_for:
                            made[made_for.pop(key)] = None
                    elif sop.mode == "queued":
                        status = RunStatus.QUEUED
                held.append(_STARTING)
                self._cooldowns.started((procedure.id, *key), start.now, cools=cools)
                row = {
                    "sop_id": procedure.id,
                    "chat_id": start.chat_id,
                    "user_id": user_id,
                    "status": status.value,
                    "position": start.position,
                    "seq": 0,
                    "variables": {**start.variables, "trigger": start.seen},
                    "batch": start.batch,
                    "trigger": start.trigger,
                    "sop_digest": procedure.digest,
                    "wake_at": wake_at if status is RunStatus.SCHEDULED else None,
                    "created_at": start.now,
                    "updated_at": start.now,
                }
                made_for[key] = len(made)
                made.append((start, row, cancel))
        return [one for one in made if one is not None]

    async def _where_conditions_hold(
        self, procedure: Procedure, chat_id: int, starts: list[_Start]
    ) -> None:
        """Keep the members of each start (not forced) for whom the SOP's conditions hold; the
        facts they need are read once for all of them."""
        checked = [start for start in starts if not start.force]
        if not checked:
            return
        conditions = procedure.sop.conditions
        reads = needs(conditions)
        members = [user for start in checked for user in start.users if user is not None]
        facts = (
            await self._stepping.member_facts(chat_id, members, checked[0].now, conditions)
            if reads.members
            else {}
        )
        count = await self._shared.facts.member_count(chat_id) if reads.count else 0
        group = self._shared.context.group_facts(chat_id, count)
        for start in checked:
            kept: list[int | None] = []
            for user in start.users:
                member = facts.get(user) if user is not None else None
                people = [member] if member else []
                seen = {"trigger": start.seen}  # conditions see the trigger as texts will
                context = self._shared.context.build(
                    procedure, chat_id, group, people, seen, start.now
                )
                if holds(conditions, member=member, group=group, now=start.now, context=context):
                    kept.append(user)
            start.users = kept

    async def cancel(self, runs: Iterable[Run], now: datetime, reason: str) -> None:
        """End these runs (those in hand elsewhere are left to find out when they save)."""
        runs = list(runs)
        self._unhold(run.id for run in runs)
        busy = self._shared.leases.busy
        live = [run for run in runs if not run.status.is_over and run.id not in busy]
        waits = []
        for run in live:
            if run.status is RunStatus.WAITING:
                procedure = self._shared.library.get(run.sop_id)
                waits.append(wait_record(run, procedure, now, "cancelled"))
            self._shared.waits.unwait(run)
            run.seq += 1  # a step in flight elsewhere will find the run moved and stop
            run.status, run.error, run.finished_at, run.wake_at = (
                RunStatus.CANCELLED,
                reason,
                now,
                None,
            )
        if live:
            busy.update(run.id for run in live)
            try:
                await self._shared.runs.save(live, now, finished=waits)
            except RunMoved:
                pass
            finally:
                self._shared.leases.release(live)


def _by_sop_and_group(starts: list[_Start]) -> dict[tuple[str, int], list[_Start]]:
    grouped: dict[tuple[str, int], list[_Start]] = defaultdict(list)
    for start in starts:
        grouped[start.procedure.id, start.chat_id].append(start)
    return grouped


def _cancel_waiting(starts: list[_Start]) -> None:
    for start in starts:
        if start.created is not None and not start.created.done():
            start.created.cancel()
