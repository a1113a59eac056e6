"""The `live` step: plan a live session in the group; it sets `live` for the texts after it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

from bot.sop.format import LiveStep
from bot.sop.runs import Run
from bot.sop.steps._base import Cohort, Seen, StepType

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncConnection

    from bot.sop.steps._base import Tools


class Live(StepType[LiveStep]):
    model = LiveStep
    output = "live"

    async def run(self, cohort: Cohort[LiveStep], tools: Tools) -> list[Run]:
        """Plan a live per run's group, in the transaction that moves the run on."""
        procedure, path, now = cohort.procedure, cohort.path, cohort.now
        action = cohort.step.live
        lives = tools.lives
        errors: dict[int, str] = {}
        planned: list[tuple[Run, str, datetime]] = []
        for run in cohort.runs:
            zone = (
                ZoneInfo(action.start.timezone)
                if action.start.timezone
                else tools.group_facts(run.chat_id).timezone
            )
            day = action.start.on or now.astimezone(zone).date() + timedelta(days=action.start.days)
            starts_at = datetime.combine(day, action.start.at, tzinfo=zone).astimezone(UTC)
            if starts_at <= now:
                errors[run.id] = (
                    f"the live would start in the past ({starts_at:%Y-%m-%d %H:%M} UTC)"
                )
                continue
            language = tools.language(run.chat_id) or tools.default_language
            title = action.title
            if isinstance(title, dict):
                title = title.get(language) or next(iter(title.values()))  # type: ignore[call-overload]
            planned.append((run, str(title), starts_at))

        async def first(conn: AsyncConnection) -> None:
            for run, title, starts_at in planned:
                live_id = await lives.create_in(
                    conn,
                    run.chat_id,
                    title=title,
                    starts_at=starts_at,
                    url=action.link,
                    host=action.host,
                    reminders=action.reminders,
                    length=action.length,
                    pin=action.pin,
                    source=f"sop:{procedure.id}",
                    key=f"sop:{procedure.id}:{run.id}:{path}",
                )
                run.variables["live"] = {"id": live_id, "title": title}

        going = await tools.done(cohort, first=first if planned else None, errors=errors)
        if planned:
            tools.pushes.wake()
        return going

    def describe(self, step: LiveStep, seen: Seen) -> str:
        planned = seen.variables.get("live") or {}
        return f"plans live #{planned.get('id')}: {planned.get('title')}"
