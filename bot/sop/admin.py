"""What the SOP admin commands do (/sops, /sop_on, /sop_off, /sop_run, /reload), as replies."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, select

from bot.db import LIVE, SOP_RUNS, RunStatus
from bot.events import SopsReloaded
from bot.sop.engine import Engine, silent_trigger
from bot.sop.library import LoadReport, Procedure

Reply = tuple[str, dict[str, Any]]  # a text key and its values
EPOCH = datetime(2000, 1, 1, tzinfo=UTC)  # before any run


class Key(str):
    """A value that is itself a text key: rendered in the reader's language before use."""

    __slots__ = ()


@dataclass
class SopAdmin:
    """The SOP engine as group admins steer it."""

    engine: Engine

    async def overview(self, chat_id: int) -> list[Reply]:
        """Every SOP with its state in this group and its runs here; broken files last."""
        library = self.engine.library
        counts = await self._counts(chat_id)
        lines: list[Reply] = [("sop.list_header", {})]
        broken_ids = {b.sop_id for b in library.broken.values() if b.sop_id}
        for procedure in library:
            runs_here = self.engine.runs_in(procedure, chat_id)
            state = self.state(procedure, chat_id, broken_ids)
            mine = counts[procedure.id]
            lines.append(
                (
                    "sop.list_line",
                    {
                        "mark": "🟢" if runs_here else "⚪️",
                        "id": procedure.id,
                        "name": procedure.sop.name,
                        "state": Key(state),
                        "live": sum(mine[s.value] for s in LIVE) + mine[RunStatus.QUEUED.value],
                        "done": mine[RunStatus.DONE.value],
                        "failed": mine[RunStatus.FAILED.value] + mine[RunStatus.SKIPPED.value],
                    },
                )
            )
            if mine[RunStatus.FAILED.value]:
                lines.append(await self._last_failure(procedure.id, chat_id))
            count, last = await self.engine.runs.interrupted(procedure.id, chat_id)
            if count:
                at = self._at(chat_id, last)
                lines.append(("sop.list_interrupted", {"count": count, "at": at}))
        for broken in library.broken.values():
            problem = broken.problems[0]
            more = f" (+{len(broken.problems) - 1})" if len(broken.problems) > 1 else ""
            lines.append(
                ("sop.list_broken", {"file": broken.file.name, "problem": f"{problem}{more}"})
            )
        if len(lines) == 1:
            lines.append(("sop.list_empty", {}))
        return lines

    def state(self, procedure: Procedure, chat_id: int, broken_ids: set[str]) -> str:
        """The text key of an SOP's state in a group: its file is broken (the last good version
        runs), it is not for this group, switched on or off here, or on or off as its file says.
        `broken_ids`: the SOPs whose file is broken now."""
        library = self.engine.library
        switched = library.switched(procedure.id, chat_id)
        if procedure.id in broken_ids:
            return "sop.state_broken_kept"
        if not library.selects(procedure, chat_id, self._tags(chat_id)):
            return "sop.state_not_here"
        if switched is not None:
            return "sop.state_on_here" if switched else "sop.state_off_here"
        return "sop.state_on" if procedure.sop.enabled else "sop.state_off"

    async def _last_failure(self, sop_id: str, chat_id: int) -> Reply:
        """The newest failed run of an SOP in this group: when, on the group's clock, and why."""
        failed = await self.engine.runs.failures(sop_id, EPOCH, chat_id=chat_id)
        at = self._at(chat_id, failed.last_at)
        return "sop.list_failed", {"at": at, "reason": failed.last_error or ""}

    def _at(self, chat_id: int, moment: datetime | None) -> str:
        """A stored moment on the group's clock, or "" when there is none."""
        if moment is None:
            return ""
        moment = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
        zone = self.engine.group_facts(chat_id).timezone
        return f"{moment.astimezone(zone):%Y-%m-%d %H:%M}"

    async def switch(self, chat_id: int, sop_id: str, on: bool, by: int | None) -> Reply:
        engine = self.engine
        procedure = engine.library.get(sop_id)
        if procedure is None:
            return self.unknown(sop_id)
        if not engine.library.selects(procedure, chat_id, self._tags(chat_id)):
            return "sop.not_for_group", {"id": sop_id}
        await engine.library.switch(engine.db, sop_id, chat_id, on, by, engine.clock.now())
        if not on:
            await engine.stop_runs(sop_id, chat_id, "switched off in this group by an admin")
        await engine.bus.publish(SopsReloaded())  # the calendar plans its jobs again
        return ("sop.switched_on" if on else "sop.switched_off"), {"id": sop_id}

    async def run(self, chat_id: int, sop_id: str, user_id: int | None, who: str) -> Reply:
        procedure = self.engine.library.get(sop_id)
        if procedure is None:
            return self.unknown(sop_id)
        started = await self.engine.run_by_hand(sop_id, chat_id, user_id)
        silent = silent_trigger(procedure)
        if (
            not started
            and silent is not None
            and user_id is None
            and self.engine.runs_in(procedure, chat_id)
        ):
            return "sop.none_silent", {"id": sop_id, "days": silent.days}
        if not started:
            return "sop.not_started", {"id": sop_id}
        runs = await self.engine.outcome(started)
        failed = [run for run in runs if run.status is RunStatus.FAILED]
        if failed:
            return "sop.run_failed", {"id": sop_id, "who": who, "reason": failed[0].error or ""}
        if runs and all(run.status is RunStatus.DONE for run in runs):
            return "sop.run_done", {"id": sop_id, "who": who}
        return "sop.started", {"id": sop_id, "who": who}

    def reload(self) -> list[Reply]:
        report: LoadReport = self.engine.reload_files()
        replies: list[Reply] = [
            (
                "sop.reloaded",
                {
                    "count": len(report.loaded),
                    "changed": ", ".join(report.changed),
                    "removed": ", ".join(report.removed),
                },
            )
        ]
        for broken in report.broken:
            replies.append(
                (
                    "sop.reload_broken",
                    {"file": broken.file.name, "kept": broken.sop_id, "problems": broken.summary()},
                )
            )
        return replies

    def unknown(self, sop_id: str) -> Reply:
        ids = ", ".join(p.id for p in self.engine.library) or "-"
        return "sop.unknown", {"id": sop_id, "ids": ids}

    def _tags(self, chat_id: int) -> list[str]:
        known = self.engine.registry.groups.get(chat_id)
        return known.tags if known is not None else []

    async def _counts(self, chat_id: int) -> dict[str, dict[str, int]]:
        counts: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
        async with self.engine.db.connect() as conn:
            rows = await conn.execute(
                select(SOP_RUNS.c.sop_id, SOP_RUNS.c.status, func.count())
                .where(SOP_RUNS.c.chat_id == chat_id)
                .group_by(SOP_RUNS.c.sop_id, SOP_RUNS.c.status)
            )
            for sop_id, status, count in rows:
                counts[sop_id][status] = int(count)
        return counts
