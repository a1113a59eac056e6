"""Starting runs: where the SOP runs and its conditions hold, as its mode says; ending runs.

The mode says what a trigger does while a run of the SOP is in progress for the same key (the
member, or the group): `single` starts none, `restart` cancels the old one, `queued` queues the
new one behind it, `parallel` starts it anyway.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from typing import Any

from loguru import logger

from bot.db import RunStatus
from bot.sop.conditions import holds, windows
from bot.sop.engine._context import Context
from bot.sop.engine._leases import Leases, Tasks
from bot.sop.engine._stepping import Stepping
from bot.sop.engine._waits import EventWaits, wait_record
from bot.sop.facts import Facts
from bot.sop.library import Library, Procedure
from bot.sop.runs import Run, RunMoved, RunStore

MEMBERS_IN_QUERY = 500  # more members than this starting at once: read every live run

# Marks a key as taken by a run about to be created, so one trigger starts one run per key.
_STARTING = Run(0, "", 0, None, RunStatus.RUNNING, "0", 0, {}, None, "")


class Starting:
    """Creates runs for triggers (and moves them on) and cancels runs."""

    def __init__(
        self,
        *,
        runs: RunStore,
        library: Library,
        facts: Facts,
        context: Context,
        leases: Leases,
        tasks: Tasks,
        waits: EventWaits,
        stepping: Stepping,
        unhold: Callable[[Iterable[int]], None],
        wake: asyncio.Event,
    ) -> None:
        self.runs = runs
        self.library = library
        self.facts = facts
        self._context = context
        self._leases = leases
        self._tasks = tasks
        self._waits = waits
        self._stepping = stepping
        self._unhold = unhold  # the timer lets go of runs it read ahead
        self._wake = wake  # the timer: runs were created that wait for their time
        self._lock = asyncio.Lock()

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
    ) -> list[Run]:
        """Start runs for these members (None: the group) where the SOP's conditions hold.

        `force` (a press of a flow button, `/sop_run`) starts even where the SOP's mode would
        not, and without its conditions; the SOP must still run in this group.
        """
        if chat_id >= 0 or not self._context.runs_in(procedure, chat_id) or self._tasks.stopping:
            return []
        sop = procedure.sop
        if sop.conditions and not force:
            # Conditions see the trigger (an event's data, say) as the run's texts will.
            seen = {"trigger": {"type": trigger, **(variables or {}).get("trigger", {})}}
            users = await self._where_conditions_hold(procedure, chat_id, users, now, seen)
        if not users:
            return []
        async with self._lock:
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
                await self.cancel(cancel, now, "restarted by a new trigger (mode restart)")
            created = await self.runs.create(rows)
        running = [run for run in created if run.status is RunStatus.RUNNING]
        if len(created) > len(running):
            self._wake.set()
        if running:
            self._leases.busy.update(run.id for run in running)  # busy from now: see `outcome`
            self._tasks.spawn(self._stepping.advance(running, claimed=True))
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
        group = self._context.group_facts(chat_id, await self.facts.member_count(chat_id))
        kept: list[int | None] = []
        for user in users:
            member = facts.get(user) if user is not None else None
            people = [member] if member else []
            context = self._context.build(procedure, chat_id, group, people, variables or {}, now)
            if holds(conditions, member=member, group=group, now=now, context=context):
                kept.append(user)
        return kept

    async def cancel(self, runs: Iterable[Run], now: datetime, reason: str) -> None:
        """End these runs (those in hand elsewhere are left to find out when they save)."""
        runs = list(runs)
        self._unhold(run.id for run in runs)
        busy = self._leases.busy
        live = [run for run in runs if not run.status.is_over and run.id not in busy]
        waits = []
        for run in live:
            if run.status is RunStatus.WAITING:
                procedure = self.library.get(run.sop_id)
                waits.append(wait_record(run, procedure, now, "cancelled"))
            self._waits.unwait(run)
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
                await self.runs.save(live, now, finished=waits)
            except RunMoved:
                pass
            finally:
                self._leases.release(live)
