"""The `checkin` step: check members in, in the transaction that moves their runs on.

It sets `checkin` for the texts after it, emits `checkin.done` for a new check-in and
`checkin.milestone` when the streak reaches a milestone. The first SOP in a group with a
check-in step sets the group's check-in rules (`/top`, `/me`, streaks in texts).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from bot.checkin.service import Arrival, CheckedIn, CheckinRules, check_in_all, checkin_rules
from bot.sop.format import CheckinStep, walk_steps
from bot.sop.runs import Run
from bot.sop.steps._base import Cohort, Seen, StepType

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncConnection

    from bot.sop.library import Procedure
    from bot.sop.steps._base import Tools


def group_checkin_rules(procedures: Iterable[Procedure]) -> CheckinRules:
    """The rules of the first of these SOPs that checks members in (the defaults if none)."""
    for procedure in procedures:
        for step in walk_steps(procedure.sop.steps):
            if isinstance(step, CheckinStep) and step.enabled:
                return checkin_rules(step.checkin)
    return CheckinRules()


class Checkin(StepType[CheckinStep]):
    model = CheckinStep
    needs_member = "a check-in needs a member; this run is for the whole group"
    output = "checkin"

    async def run(self, cohort: Cohort[CheckinStep], tools: Tools) -> list[Run]:
        rules = checkin_rules(cohort.step.checkin)
        members, now = cohort.runs, cohort.now
        results: dict[int, CheckedIn] = {}

        zones = {run.chat_id: tools.group_facts(run.chat_id).timezone for run in members}
        arrivals = [Arrival(run.chat_id, run.user_id or 0, run.id) for run in members]

        async def first(conn: AsyncConnection) -> None:
            # The whole cohort checks in together: a few statements, whatever its size.
            checked = await check_in_all(conn, arrivals, now, zones, rules)
            results.clear()
            for run, done in zip(members, checked, strict=True):
                results[run.id] = done
                reached = done.new and done.streak in rules.bonuses
                milestone = done.streak if reached else None
                run.variables["checkin"] = {**done.as_variables(), "milestone": milestone}

        going = await tools.done(cohort, first=first)
        sop_id = cohort.procedure.id
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
                tools.emitted(run, event, data, sop_id, now, chain)
        return going

    def describe(self, step: CheckinStep, seen: Seen) -> str:
        done = seen.variables.get("checkin") or {}
        if done.get("new"):
            return f"+{done['points']} points, streak {done['streak']}, #{done['rank']} today"
        return "already checked in today"
