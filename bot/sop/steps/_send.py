"""The `send` step: render a message, claim it, deliver it; its runs go on once Telegram answered.

Runs that a trigger started together (a batch) share one group message until their first wait.
A send is claimed (journal row `started`, run `sending`) before Telegram is asked, so that
after a crash it is never sent twice.
"""

from __future__ import annotations

from collections import defaultdict
from typing import TYPE_CHECKING, Any

from loguru import logger

from bot.db import SCHEDULED_DELETIONS, EventType, RunStatus
from bot.sop.format import SendStep, format_duration
from bot.sop.runs import Run, StepRecord
from bot.sop.steps._base import Checks, Cohort, KeyPath, Seen, StepType, Tools, goto

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncConnection

    from bot.sop.library import Procedure
    from bot.sop.messages import Rendered

TO_MEMBER = "'to: member' needs a member; this run is for the group"


class Send(StepType[SendStep]):
    model = SendStep
    joined_by = " "

    def member_error(self, step: SendStep) -> str | None:
        return TO_MEMBER if step.send.to == "member" else None

    async def run(self, cohort: Cohort[SendStep], tools: Tools) -> list[Run]:
        """Render, claim, then deliver; each message's runs go on once Telegram has answered."""
        # Imported here, not above: `tidepool check` looks step types up without aiogram.
        from bot.sop.facts import MESSAGES_7D, STREAK, WEEK
        from bot.sop.messages import RenderError, compose

        procedure, path, step, now = cohort.procedure, cohort.path, cohort.step, cohort.now
        send = step.send
        runs = cohort.runs
        messages: dict[Any, list[Run]] = defaultdict(list)
        for run in runs:
            shared = run.batch is not None and send.to == "group"
            messages[(run.chat_id, run.batch) if shared else run.id].append(run)
        claimed: list[Run] = []
        records: list[StepRecord] = []
        failures: list[tuple[list[Run], str]] = []
        deliveries: list[tuple[list[Run], Rendered]] = []
        for run in cohort.all:
            error = cohort.errors.get(run.id)
            if error is not None:
                records.append(cohort.failed(run, error))
                claimed.append(run)
                failures.append(([run], error))
        keys = [send.template] if send.template else [v.template for v in send.variants or []]
        keys += [button.text for row in send.buttons for button in row]
        counts_needed = {WEEK} if tools.texts.mentions(keys, MESSAGES_7D) else set()
        streaks_needed = tools.texts.mentions(keys, STREAK)
        wanted: dict[int, list[int]] = {run.chat_id: [] for run in runs}
        for run in runs:
            if run.user_id:
                wanted[run.chat_id].append(run.user_id)
        # Every group's members in a few statements (a cohort of check-in replies spans many).
        facts_by_chat = await tools.facts.members_of(wanted, now, counts_needed)
        for chat_id, users in wanted.items():
            if streaks_needed and users:
                rules = tools.checkin_rules(chat_id)
                zone = tools.group_facts(chat_id).timezone
                streaks = await tools.boards.streaks(
                    chat_id, users, now, zone, rules.start_hour, rules.freezes
                )
                for user_id, fact in facts_by_chat[chat_id].items():
                    fact.streak = streaks.get(user_id, 0)
        counts = await tools.facts.member_counts(facts_by_chat)
        for group_runs in messages.values():
            first = group_runs[0]
            facts = facts_by_chat[first.chat_id]
            members = [facts[run.user_id] for run in group_runs if run.user_id in facts]
            group = tools.group_facts(first.chat_id, counts[first.chat_id])
            try:
                rendered = compose(
                    send,
                    sop_id=procedure.id,
                    who=first.user_id if first.user_id is not None else first.chat_id,
                    texts=tools.texts,
                    language=tools.language(first.chat_id),
                    context=tools.context(
                        procedure, first.chat_id, group, members, first.variables, now, first.id
                    ),
                    content_dir=tools.library.content_dir,
                )
            except RenderError as exc:
                for run in group_runs:
                    records.append(cohort.failed(run, str(exc)))
                claimed += group_runs
                failures.append((group_runs, str(exc)))
                continue
            for run in group_runs:
                records.append(
                    StepRecord(
                        run.id,
                        run.seq,
                        cohort.label,
                        "send",
                        "started",
                        now,
                        variant=rendered.variant,
                    )
                )
                run.seq += 1
                run.status = RunStatus.SENDING
            claimed += group_runs
            deliveries.append((group_runs, rendered))
        await tools.runs.save(claimed, now, begun=records)
        for group_runs, error in failures:
            logger.bind(chat_id=group_runs[0].chat_id).error(
                "{} ({}): {}", procedure.id, cohort.label, error
            )
            going = await tools.settle(group_runs)
            if going:
                tools.spawn(tools.advance(going, claimed=True))
        for group_runs, rendered in deliveries:
            tools.spawn(_deliver(tools, procedure, path, step, group_runs, rendered))
        return []

    def describe(self, step: SendStep, seen: Seen) -> str:
        """Where to, the variant, the message as sent (text, buttons, pin), its deletion."""
        parts = ["→ group" if step.send.to == "group" else f"→ {seen.member} (private)"]
        if seen.variant:
            parts.append(f"[variant: {seen.variant}]")
        parts += seen.message()
        if step.send.delete_after is not None:
            parts.append(f"delete after {format_duration(step.send.delete_after)}")
        return " ".join(parts)

    def check_references(self, step: SendStep, at: KeyPath, checks: Checks) -> None:
        step_ids = ", ".join(checks.step_ids)
        for row_index, row in enumerate(step.send.buttons):
            for index, button in enumerate(row):
                if button.next is None or button.next in checks.step_ids:
                    continue
                have = f"steps are: {step_ids}" if step_ids else "no step has an id"
                checks.problem(
                    (*at, "send", "buttons", row_index, index, "next"),
                    f"'next' names step '{button.next}', which this SOP does not have; {have}",
                )

    def check_content(self, step: SendStep, at: KeyPath, checks: Checks) -> None:
        send = step.send
        if send.template is not None:
            checks.text((*at, "send", "template"), send.template)
        for index, variant in enumerate(send.variants or []):
            checks.text((*at, "send", "variants", index, "template"), variant.template)
        for row_index, row in enumerate(send.buttons):
            for index, button in enumerate(row):
                checks.text((*at, "send", "buttons", row_index, index, "text"), button.text)
        if send.photo is not None and not send.photo.startswith("https://"):
            checks.photo((*at, "send", "photo"), send.photo)


async def _deliver(
    tools: Tools,
    procedure: Procedure,
    path: str,
    step: SendStep,
    runs: list[Run],
    rendered: Rendered,
) -> None:
    """Send one claimed message; record the answer and move its runs on."""
    from bot.activity import event_row  # here, not above: see Send.run

    send = step.send
    first = runs[0]
    target = first.user_id if send.to == "member" and first.user_id else first.chat_id
    source = f"sop:{procedure.id}"
    reply_to = first.variables.get("trigger", {}).get("message_id") if send.reply else None
    if rendered.photo is not None:
        delivered = await tools.outbox.send_photo(
            target,
            rendered.photo,
            caption=rendered.text,
            source=source,
            reply_markup=rendered.markup,
            reply_to_message_id=reply_to,
        )
    else:
        delivered = await tools.outbox.send_message(
            target,
            rendered.text,
            source=source,
            reply_markup=rendered.markup,
            reply_to_message_id=reply_to,
            combine=source if send.combine else None,
        )
    now = tools.clock.now()
    label = procedure.label(path)
    records = []
    for run in runs:
        records.append(
            StepRecord(
                run.id,
                run.seq - 1,
                label,
                "send",
                "done" if delivered.ok else "failed",
                now,
                now,
                chat_id=delivered.chat_id,
                message_id=delivered.message_id,
                error=delivered.error,
            )
        )
        if delivered.ok or step.continue_on_error:
            run.status = RunStatus.RUNNING
            goto(run, procedure, path, now, past=True)
        elif tools.stopping and delivered.attempts == 0:
            # Never tried, because the bot is stopping: send it after the restart.
            run.status, run.wake_at = RunStatus.SCHEDULED, now
        else:
            run.status, run.error, run.finished_at = (
                RunStatus.FAILED,
                f"{label}: {delivered.error}",
                now,
            )
    deletion: dict[str, Any] | None = None
    if delivered.ok and delivered.message_id is not None and send.delete_after is not None:
        deletion = {
            "chat_id": delivered.chat_id,
            "message_id": delivered.message_id,
            "source": source,
            "due_at": now + send.delete_after,
        }

    async def effects(conn: AsyncConnection) -> None:
        if deletion is not None:
            await conn.execute(SCHEDULED_DELETIONS.insert(), [deletion])

    await tools.runs.save(runs, now, finished=records, effects=effects)
    if delivered.ok:
        for run in runs:
            tools.activity.add(
                event_row(
                    chat_id=delivered.chat_id if send.to == "group" else run.chat_id,
                    user_id=run.user_id,
                    at=now,
                    type=EventType.SOP_SENT,
                    message_id=delivered.message_id,
                    data={
                        "sop": procedure.id,
                        "step": label,
                        "variant": rendered.variant,
                        "run": run.id,
                    },
                )
            )
        if send.pin and delivered.message_id is not None:
            await tools.outbox.pin(delivered.chat_id, delivered.message_id, source=source)
        if deletion is not None:
            tools.deletions.wake()
    scheduled = [run for run in runs if run.status is RunStatus.SCHEDULED]
    tools.release(scheduled)
    going = await tools.settle([run for run in runs if run not in scheduled])
    if going:
        await tools.advance(going, claimed=True)
