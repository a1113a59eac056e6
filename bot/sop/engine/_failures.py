"""Failed runs told to the owners: once per SOP and day, with how many failed, where and why.

A run started by hand is not told here: `/sop_run` answers its admin with the outcome. The day
is the owners' (the bot's default time zone). Whether a day's failures were told already is read
from the database, so a restart on the same day does not tell them again.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable
from datetime import date, datetime, time
from typing import Any
from zoneinfo import ZoneInfo

from loguru import logger

from bot.clock import Clock
from bot.db import RunStatus
from bot.sop.runs import Run, RunStore

GATHER = 3.0  # seconds an SOP's first failure of the day waits for others to tell with it
SHOWN_GROUPS = 10  # groups named in a notice; the rest are counted

Notify = Callable[..., Awaitable[None]]


class FailureNotices:
    """Tells the owners of each SOP's failed runs once a day, a moment after the first."""

    def __init__(
        self,
        runs: RunStore,
        clock: Clock,
        zone: ZoneInfo,
        notify: Notify,
        title: Callable[[int], str],
    ) -> None:
        self.runs = runs
        self.clock = clock
        self.zone = zone
        self.notify = notify
        self.title = title
        self.gather = GATHER
        self._told: set[tuple[str, date]] = set()  # (SOP, owners' day) told or being told
        self._telling: set[asyncio.Task[None]] = set()

    def note(self, ended: Iterable[Run]) -> None:
        """Runs ended: those that failed are told (the first of their SOP today starts it)."""
        now = self.clock.now()
        day = now.astimezone(self.zone).date()
        failed = {r.sop_id for r in ended if r.status is RunStatus.FAILED and r.trigger != "manual"}
        for sop_id in failed:
            if (sop_id, day) in self._told:
                continue
            self._told.add((sop_id, day))
            task = asyncio.create_task(self._tell(sop_id, now), name=f"failures-{sop_id}")
            self._telling.add(task)
            task.add_done_callback(self._telling.discard)

    async def wait(self, grace: float) -> None:
        """Let the notices gathering now go out (before the delivery service closes)."""
        if self._telling:
            await asyncio.wait(list(self._telling), timeout=grace)

    async def _tell(self, sop_id: str, first: datetime) -> None:
        midnight = datetime.combine(first.astimezone(self.zone).date(), time(0), tzinfo=self.zone)
        try:
            if (await self.runs.failures(sop_id, midnight, until=first)).count:
                return  # told already today, before a restart
            await asyncio.sleep(self.gather)  # runs in other groups failing with this one
            failed = await self.runs.failures(sop_id, midnight)
            logger.warning("{}: {} runs failed today: {}", sop_id, failed.count, failed.last_error)
            values: dict[str, Any] = {
                "sop": sop_id,
                "count": failed.count,
                "groups": ", ".join(self.title(chat) for chat in failed.groups[:SHOWN_GROUPS]),
                "more": max(len(failed.groups) - SHOWN_GROUPS, 0),
                "reason": failed.last_error or "",
            }
            await self.notify("sop.failed_owner", **values)
        except Exception:
            logger.exception("could not tell the owners that {} failed", sop_id)
