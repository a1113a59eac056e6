"""The SOP engine's calendar: schedule and daily silent-member triggers as persistent jobs.

Each (SOP, trigger, group) pair where the SOP runs is one job, `sop:<id>:group:<chat>:<n>`.
The plan is made again when SOP files are reloaded, an SOP is switched in a group, or the bot
joins or leaves a group; jobs that did not change keep their stored next time, so a time that
passed while the bot was down is run late within the SOP's catch-up grace, or reported missed.
"""

from __future__ import annotations

from datetime import datetime

from loguru import logger

from bot.clock import Clock
from bot.db import GroupStatus
from bot.events import Bus, GroupsChanged, SopsReloaded
from bot.sop.engine import CATCH_UP_AFTER, Engine
from bot.sop.format import ScheduleTrigger, SilentTrigger
from bot.sop.schedules import Args, PlannedJob, Schedules, daily_trigger, trigger_for


def plan(engine: Engine) -> list[PlannedJob]:
    """Every calendar job the loaded SOPs want in the groups the bot is in."""
    jobs: list[PlannedJob] = []
    groups = [
        chat_id
        for chat_id, known in engine.registry.groups.items()
        if known.status is GroupStatus.ACTIVE and chat_id < 0
    ]
    for procedure in engine.library:
        catch_up = procedure.sop.catch_up
        grace = catch_up.grace if catch_up.policy == "run_late" else CATCH_UP_AFTER
        for index, trigger in enumerate(procedure.sop.triggers):
            if not isinstance(trigger, ScheduleTrigger | SilentTrigger):
                continue
            for chat_id in groups:
                if not engine.runs_in(procedure, chat_id):
                    continue
                zone = engine.group_facts(chat_id).timezone
                if isinstance(trigger, ScheduleTrigger):
                    kind, when = "schedule", trigger_for(trigger, zone)
                else:
                    kind, when = "silent", daily_trigger(trigger.at, zone)
                jobs.append(
                    PlannedJob(
                        f"sop:{procedure.id}:group:{chat_id}:{index}",
                        when,
                        (kind, procedure.id, chat_id, index),
                        grace,
                    )
                )
    return jobs


class Calendar:
    """Keeps the job store in step with the engine's plan and hands fires to the engine."""

    def __init__(self, engine: Engine, database_url: str, clock: Clock, bus: Bus) -> None:
        self.engine = engine
        self.schedules = Schedules(database_url, clock, self._fire, self._missed)
        self._running = False
        bus.subscribe(SopsReloaded, self._changed)
        bus.subscribe(GroupsChanged, self._changed)

    def start(self) -> None:
        self.schedules.start()
        self._running = True
        self.replan()

    def _changed(self, _event: SopsReloaded | GroupsChanged) -> None:
        if self._running:
            self.replan()

    def replan(self) -> None:
        try:
            self.schedules.sync(plan(self.engine))
        except Exception:
            logger.exception("could not update the SOP calendar; the previous plan stays")

    async def close(self) -> None:
        self._running = False
        await self.schedules.shutdown()

    async def _fire(self, _job_id: str, args: Args) -> None:
        kind, sop_id, chat_id, index = args
        assert isinstance(sop_id, str) and isinstance(chat_id, int) and isinstance(index, int)
        if kind == "schedule":
            await self.engine.fire_schedule(sop_id, chat_id, index)
            return
        procedure = self.engine.library.get(sop_id)
        trigger = procedure.sop.triggers[index] if procedure is not None else None
        if isinstance(trigger, SilentTrigger):
            started = await self.engine.check_silent(sop_id, chat_id, trigger.days)
            logger.bind(chat_id=chat_id).info("{}: {} silent members found", sop_id, started)

    async def _missed(self, _job_id: str, args: Args, scheduled: datetime) -> None:
        _kind, sop_id, chat_id, _index = args
        assert isinstance(sop_id, str) and isinstance(chat_id, int)
        await self.engine.report_missed(sop_id, chat_id, scheduled)
