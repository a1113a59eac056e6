"""The `broadcast` step: queue the group's text as a push (quiet hours, daily cap, once).

With `rotate`, the text gets `item`: the group's next entry of `content/rotations/<rotate>.yaml`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from bot.push import rotations
from bot.sop.format import BroadcastStep
from bot.sop.runs import Run
from bot.sop.steps._base import Checks, Cohort, KeyPath, Seen, StepType

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncConnection

    from bot.sop.steps._base import Tools


class Broadcast(StepType[BroadcastStep]):
    model = BroadcastStep

    async def run(self, cohort: Cohort[BroadcastStep], tools: Tools) -> list[Run]:
        """Queue each run's group text as a push, in the transaction that moves the run on (so a
        restart never queues it twice); with `rotate`, the group's next entry is `item`."""
        # Imported here, not above: `tidepool check` looks step types up without aiogram.
        from bot.push.broadcasts import text_push
        from bot.push.rows import add_pushes
        from bot.sop.messages import RenderError

        procedure, path, now, runs = cohort.procedure, cohort.path, cohort.now, cohort.runs
        action = cohort.step.broadcast
        source = f"sop:{procedure.id}"
        errors: dict[int, str] = {}
        rows: list[dict[str, Any]] = []
        advances: list[tuple[int, int]] = []
        entries: list[Any] = []
        if action.rotate is not None:
            try:
                entries = rotations.load(tools.library.content_dir, action.rotate)
            except rotations.RotationError as exc:
                errors = {run.id: str(exc) for run in runs}
        for run in runs:
            if run.id in errors:
                continue
            language = tools.language(run.chat_id)
            variables = dict(run.variables)
            context = tools.context(
                procedure,
                run.chat_id,
                tools.group_facts(run.chat_id, await tools.facts.member_count(run.chat_id)),
                [],
                variables,
                now,
                run.id,
            )
            if action.rotate is not None:
                async with tools.db.connect() as conn:
                    at = await rotations.position(conn, run.chat_id, action.rotate)
                entry = entries[at % len(entries)]
                context["item"] = rotations.in_language(
                    entry, language, tools.texts.default_language
                )
                advances.append((run.chat_id, at + 1))
            try:
                text = tools.texts.render(action.template, language, context, procedure.id)
            except RenderError as exc:
                errors[run.id] = str(exc)
                continue
            key = f"{source}:{run.id}:{path}"
            rows.append(text_push(key, run.chat_id, text, now, action, source=source))

        async def effects(conn: AsyncConnection) -> None:
            await add_pushes(conn, rows)
            if action.rotate is not None:
                for chat_id, to in advances:
                    await rotations.advance(conn, chat_id, action.rotate, to)

        going = await tools.done(cohort, effects=effects, errors=errors)
        if rows:
            tools.pushes.wake()
        return going

    def describe(self, step: BroadcastStep, seen: Seen) -> str:
        return "queued to the group (it waits out quiet hours and counts toward the cap)"

    def check_content(self, step: BroadcastStep, at: KeyPath, checks: Checks) -> None:
        """The template renders, with `item` when the step rotates through a readable list."""
        at = (*at, "broadcast")
        rotate = step.broadcast.rotate
        extra: dict[str, Any] = {}
        if rotate is not None:
            try:
                entries = rotations.load(checks.content_dir, rotate)
            except rotations.RotationError as exc:
                checks.problem((*at, "rotate"), str(exc))
                return
            extra["item"] = rotations.in_language(entries[0], "en", "en")
        checks.text((*at, "template"), step.broadcast.template, **extra)
