"""The `leaderboard` step: read the group's leaderboard for the texts after it."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from bot.checkin.boards import board_context
from bot.sop.format import LeaderboardStep
from bot.sop.runs import Run
from bot.sop.steps._base import Cohort, Seen, StepType

if TYPE_CHECKING:
    from bot.sop.steps._base import Tools


class Leaderboard(StepType[LeaderboardStep]):
    model = LeaderboardStep
    output = "leaderboard"

    def shown(self, value: Any) -> Any:
        return board_context(value)

    async def run(self, cohort: Cohort[LeaderboardStep], tools: Tools) -> list[Run]:
        wanted, now = cohort.step.leaderboard, cohort.now
        for run in cohort.runs:
            zone = tools.group_facts(run.chat_id).timezone
            start_hour = tools.checkin_rules(run.chat_id).start_hour
            board = await tools.boards.board(
                run.chat_id, wanted.period, now, zone, start_hour, wanted.limit
            )
            run.variables["leaderboard"] = board.as_variables()
        return await tools.done(cohort)

    def describe(self, step: LeaderboardStep, seen: Seen) -> str:
        board = seen.variables.get("leaderboard") or {}
        counted = len(board.get("checkins", [])) + len(board.get("points", []))
        return f"{step.leaderboard.period}, top {step.leaderboard.limit}: {counted} entries"
