"""The `review` step: read the group's weekly activity review (活动复盘) for the texts after it."""

from __future__ import annotations

from typing import TYPE_CHECKING

from bot.sop.format import ReviewStep
from bot.sop.runs import Run
from bot.sop.steps._base import Cohort, Seen, StepType

if TYPE_CHECKING:
    from bot.sop.steps._base import Tools


class Review(StepType[ReviewStep]):
    model = ReviewStep
    output = "review"

    async def run(self, cohort: Cohort[ReviewStep], tools: Tools) -> list[Run]:
        wanted, now = cohort.step.review, cohort.now
        for run in cohort.runs:
            zone = tools.group_facts(run.chat_id).timezone
            run.variables["review"] = await tools.reviews.week(
                run.chat_id,
                now.astimezone(zone).date(),
                zone,
                period=wanted.period,
                min_sends=wanted.min_sends,
            )
        return await tools.done(cohort)

    def describe(self, step: ReviewStep, seen: Seen) -> str:
        review = seen.variables.get("review") or {}
        return (
            f"{review.get('first_day')} to {review.get('last_day')}: "
            f"{review.get('active', 0)} of {review.get('members', 0)} members active, "
            f"{review.get('messages', 0)} messages, {review.get('steps', 0)} steps ranked"
        )
