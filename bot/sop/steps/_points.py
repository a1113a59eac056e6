"""The `points` step: award points, or take them (refused where the member has too few)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from bot import points
from bot.sop.format import PointsStep
from bot.sop.runs import Run
from bot.sop.steps._base import Cohort, Seen, StepType

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncConnection

    from bot.sop.steps._base import Tools


class Points(StepType[PointsStep]):
    model = PointsStep
    needs_member = "points need a member; this run is for the whole group"

    async def run(self, cohort: Cohort[PointsStep], tools: Tools) -> list[Run]:
        award, reason, now, runs = (
            cohort.step.points.award,
            cohort.step.points.reason,
            cohort.now,
            cohort.runs,
        )
        errors: dict[int, str] = {}
        if award < 0:
            for chat_id in {run.chat_id for run in runs}:
                users = [run.user_id for run in runs if run.chat_id == chat_id and run.user_id]
                facts = await tools.facts.members(chat_id, users, now)
                for run in runs:
                    fact = facts.get(run.user_id or 0)
                    if run.chat_id == chat_id and fact is not None and fact.points + award < 0:
                        errors[run.id] = f"not enough points ({fact.points}) to take {-award}"
        source = f"sop:{cohort.procedure.id}"
        changes = [
            points.Change(run.chat_id, run.user_id, award, reason, source, now)
            for run in runs
            if run.id not in errors and run.user_id is not None
        ]

        async def effects(conn: AsyncConnection) -> None:
            # A spend that raced another is refused here: the whole save is rolled back.
            await points.apply(conn, changes)

        return await tools.done(cohort, effects=effects, errors=errors)

    def describe(self, step: PointsStep, seen: Seen) -> str:
        return f"{step.points.award:+d} ({step.points.reason})"
