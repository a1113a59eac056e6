"""The `wait` step: for a while, until a time of day, or for an event with a timeout.

A waiting run is stored with its `wake_at` (and `wait_event`); the engine's timer takes it when
it falls due, an event or a flow button sooner. Members started together share messages only
until they wait: after it each goes on alone.
"""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

from bot.db import RunStatus
from bot.sop.format import WaitStep, format_duration
from bot.sop.runs import Run, StepRecord
from bot.sop.steps._base import Cohort, Seen, StepType

if TYPE_CHECKING:
    from bot.sop.steps._base import Tools


class Wait(StepType[WaitStep]):
    model = WaitStep

    async def run(self, cohort: Cohort[WaitStep], tools: Tools) -> list[Run]:
        wait, now, runs = cohort.step.wait, cohort.now, cohort.runs
        records = []
        for run in runs:
            if wait.for_ is not None:
                wake = now + wait.for_
            elif wait.until is not None:
                zone = tools.group_facts(run.chat_id).timezone
                wake = next_time_of_day(now, wait.until, zone)
            else:
                assert wait.timeout is not None
                wake = now + wait.timeout
            records.append(StepRecord(run.id, run.seq, cohort.label, "wait", "waiting", now))
            run.seq += 1
            run.status, run.wake_at, run.wait_event = RunStatus.WAITING, wake, wait.event
            run.batch = None  # members started together share messages only until they wait
        await tools.runs.save(runs, now, begun=records)
        tools.waiting(runs)
        return []

    def describe(self, step: WaitStep, seen: Seen) -> str:
        """How long; for an event, also how the wait ended (an entry of its own)."""
        wait, at, label = step.wait, seen.started_at, seen.label
        said = f"until {wait.until:%H:%M}" if wait.until is not None else ""
        if wait.for_ is not None:
            said = f"for {format_duration(wait.for_)}"
        elif wait.event is not None and wait.timeout is not None:
            said = f"for {wait.event}, at most {format_duration(wait.timeout)}"
            ended = seen.finished_at
            if seen.status == "interrupted" and ended is not None:
                seen.later(ended, "resume", f"{label}: cut short by a flow button")
            elif ended is not None and ended - at >= wait.timeout:
                within = format_duration(wait.timeout)
                seen.later(ended, "timeout", f"{label}: no {wait.event} within {within}")
            elif ended is not None:
                seen.later(ended, "resume", f"{label}: {wait.event} came")
        return said


def next_time_of_day(now: datetime, at: time, zone: ZoneInfo) -> datetime:
    """The next moment after `now` when the clock in `zone` shows `at`."""
    local = now.astimezone(zone)
    candidate = datetime.combine(local.date(), at, tzinfo=zone)
    if candidate <= local:
        candidate = datetime.combine(local.date() + timedelta(days=1), at, tzinfo=zone)
    return candidate.astimezone(UTC)
