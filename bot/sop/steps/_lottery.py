"""The `lottery` step: open a lottery in the group and post it; it sets `lottery` for the texts."""

from __future__ import annotations

from typing import TYPE_CHECKING

from bot.sop.format import LotteryStep
from bot.sop.runs import Run
from bot.sop.steps._base import Cohort, Seen, StepType

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncConnection

    from bot.sop.steps._base import Tools


class Lottery(StepType[LotteryStep]):
    model = LotteryStep
    output = "lottery"

    async def run(self, cohort: Cohort[LotteryStep], tools: Tools) -> list[Run]:
        """Open a lottery per run in the transaction that moves the run on, its post queued in
        the outbox in the same transaction (a restart never opens or posts it twice)."""
        lotteries, action, now, runs = tools.lotteries, cohort.step.lottery, cohort.now, cohort.runs
        source = f"sop:{cohort.procedure.id}"
        opened: dict[int, int] = {}

        async def first(conn: AsyncConnection) -> None:
            opened.clear()
            for run in runs:
                lottery = await lotteries.open_in(
                    conn, run.chat_id, action, source=source, run_id=run.id, now=now
                )
                opened[run.id] = lottery.id
                run.variables["lottery"] = {
                    "id": lottery.id,
                    "prize": lottery.prize,
                    "winners": lottery.winners,
                    "draws_at": lotteries.when(run.chat_id, lottery.draws_at),
                    "commitment": lottery.commitment,
                }

        going = await tools.done(cohort, first=first)
        if opened:
            tools.pushes.wake()
        lotteries.wake()
        return going

    def describe(self, step: LotteryStep, seen: Seen) -> str:
        opened = seen.variables.get("lottery") or {}
        return (
            f"opens lottery #{opened.get('id')}: {opened.get('prize')}, "
            f"{step.lottery.winners} winner(s), drawn {opened.get('draws_at')}"
        )
