"""The flow's own steps: `emit` an event, `start` another SOP, `stop` this run.

SOPs starting SOPs (an emitted event others start on, a started SOP) go at most MAX_CHAIN deep,
so that SOPs cannot start each other without end.
"""

from __future__ import annotations

import difflib
from typing import TYPE_CHECKING

from loguru import logger

from bot.db import RunStatus
from bot.sop.format import EmitStep, StartStep, StopStep
from bot.sop.runs import Run
from bot.sop.steps._base import Checks, Cohort, KeyPath, Seen, StepType

if TYPE_CHECKING:
    from bot.sop.steps._base import Tools

MAX_CHAIN = 8  # SOPs starting SOPs (emit, start) at most this deep: no endless loops


class Emit(StepType[EmitStep]):
    model = EmitStep

    async def run(self, cohort: Cohort[EmitStep], tools: Tools) -> list[Run]:
        emit, now, sop_id = cohort.step.emit, cohort.now, cohort.procedure.id
        going = await tools.done(cohort)
        for run in cohort.runs:
            chain = int(run.variables.get("_chain", 0))
            tools.emitted(run, emit.event, dict(emit.data), sop_id, now, chain)
        return going

    def describe(self, step: EmitStep, seen: Seen) -> str:
        return f"event {step.emit.event}"


class Start(StepType[StartStep]):
    model = StartStep

    async def run(self, cohort: Cohort[StartStep], tools: Tools) -> list[Run]:
        wanted, now = cohort.step.start.sop, cohort.now
        going = await tools.done(cohort)
        other = tools.library.get(wanted)
        for run in cohort.runs:
            chain = int(run.variables.get("_chain", 0))
            if other is None or chain >= MAX_CHAIN:
                logger.bind(chat_id=run.chat_id).warning(
                    "{} ({}): cannot start {}", cohort.procedure.id, cohort.label, wanted
                )
                continue
            tools.start(other, run, {"_chain": chain + 1}, now)
        return going

    def describe(self, step: StartStep, seen: Seen) -> str:
        return f"starts SOP {step.start.sop}"

    def check_references(self, step: StartStep, at: KeyPath, checks: Checks) -> None:
        wanted, known = step.start.sop, sorted(checks.sop_ids)
        if wanted in checks.sop_ids:
            return
        close = difflib.get_close_matches(wanted, known, n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        checks.problem(
            (*at, "start", "sop"),
            f"'sop' names SOP '{wanted}', which is not in {checks.folder}{hint}; "
            f"SOPs there are: {', '.join(known)}",
        )


class Stop(StepType[StopStep]):
    model = StopStep

    async def run(self, cohort: Cohort[StopStep], tools: Tools) -> list[Run]:
        for run in cohort.runs:
            run.variables["stop_reason"] = cohort.step.stop.reason
            run.status, run.finished_at = RunStatus.DONE, cohort.now
        return await tools.done(cohort, moved=True)

    def describe(self, step: StopStep, seen: Seen) -> str:
        return step.stop.reason
