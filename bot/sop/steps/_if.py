"""The `if` step: go on at `then` where every condition holds, else at `else` (or past the step)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING

from bot.sop.format import Condition, IfStep, Step
from bot.sop.runs import Run
from bot.sop.steps._base import Cohort, KeyPath, Seen, StepType

if TYPE_CHECKING:
    from bot.sop.steps._base import Tools


class If(StepType[IfStep]):
    model = IfStep

    async def run(self, cohort: Cohort[IfStep], tools: Tools) -> list[Run]:
        # Imported here, not above: `tidepool check` looks step types up without aiogram.
        from bot.sop.conditions import holds, needs

        procedure, path, step, now = cohort.procedure, cohort.path, cohort.step, cohort.now
        branch: dict[int, str] = {}
        by_chat: dict[int, list[Run]] = defaultdict(list)
        for run in cohort.runs:
            by_chat[run.chat_id].append(run)
        conditions = step.if_.conditions
        reads = needs(conditions)  # `checkin.new` reads the run's variables only: no query
        for chat_id, chat_runs in by_chat.items():
            users = [run.user_id for run in chat_runs if run.user_id is not None]
            facts = (
                await tools.member_facts(chat_id, users, now, conditions) if reads.members else {}
            )
            count = await tools.facts.member_count(chat_id) if reads.count else 0
            group = tools.group_facts(chat_id, count)
            for run in chat_runs:
                member = facts.get(run.user_id) if run.user_id is not None else None
                people = [member] if member else []
                context = tools.context(
                    procedure, chat_id, group, people, run.variables, now, run.id
                )
                if holds(conditions, member=member, group=group, now=now, context=context):
                    branch[run.id] = f"{path}.then.0"
                elif step.if_.else_:
                    branch[run.id] = f"{path}.else.0"
        # A run in neither branch goes past the if. What it read was facts at most: it is
        # stored with the runs' next step (done again after a crash in between).
        return await tools.done(cohort, branch=branch, later=True)

    def describe(self, step: IfStep, seen: Seen) -> str:
        branch = seen.variant or ""
        target = seen.step_label(branch)
        if ".then." in branch:
            return f"conditions hold → then: {target}"
        if ".else." in branch:
            return f"conditions do not hold → else: {target}"
        return "conditions do not hold; nothing to do"

    def nested(self, step: IfStep) -> Iterator[tuple[KeyPath, Sequence[Step]]]:
        yield ("if", "then"), step.if_.then
        yield ("if", "else"), step.if_.else_

    def conditions(self, step: IfStep) -> Iterator[tuple[KeyPath, Condition]]:
        for index, condition in enumerate(step.if_.conditions):
            yield ("if", "conditions", index), condition
