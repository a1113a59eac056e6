"""The `send` step: render a message and put it in the outbox; its runs go on once it went.

Runs that a trigger started together (a batch) share one group message until their first wait.
The message is a push (`bot.push`), added in the transaction that claims the send (journal row
`started`, run `sending`), so it is neither lost nor sent twice after a crash. The push queue
sends it when the group allows, and `finish_send` records how it went and moves its runs on.

A message that answers a member (the run was started by their join, command, message, button or
flood, or by an admin's /sop_run, less than `ANSWER_WITHIN` ago) goes at once and does not count
toward the group's daily cap. Every other message to a group is scheduled: it waits out the
group's quiet hours and counts toward its cap (private messages do not count).

`to: admins` sends the message privately to each admin of the run's group who has started the
bot, at once (quiet hours keep members' chats calm; this goes to the admins who asked for it by
switching the SOP on). The run goes on once the first admin's copy went. When no admin can be
reached the step is skipped, said once in the log and in the run's journal: what is meant for
admins is never posted in the group instead.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal

from loguru import logger

from bot.db import SCHEDULED_DELETIONS, EventType, PushKind, RunStatus, reachable
from bot.push.rows import Ended, add_pushes, push_row
from bot.sop.format import SendStep, format_duration
from bot.sop.runs import Run, RunMoved, StepRecord
from bot.sop.steps._base import Checks, Cohort, KeyPath, Seen, StepType, goto

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncConnection

    from bot.sop.messages import Rendered
    from bot.sop.steps._base import Tools

TO_MEMBER = "'to: member' needs a member; this run is for the group"
ONLY_MEMBER = "a button with 'only: member' needs a member; this run is for the group"
NO_ADMIN = "no admin of the group has started the bot in private: nobody to send it to"
ANSWERS = frozenset({"member_joined", "command", "message", "button", "manual", "flood"})
ANSWER_WITHIN = timedelta(minutes=10)


def answers(run: Run, now: datetime) -> bool:
    """The message answers what a member (or an admin) just did, rather than being scheduled."""
    started = run.created_at or now
    return run.trigger in ANSWERS and now - started < ANSWER_WITHIN


class Send(StepType[SendStep]):
    model = SendStep
    joined_by = " "

    def member_error(self, step: SendStep) -> str | None:
        if step.send.to == "member":
            return TO_MEMBER
        return ONLY_MEMBER if _for_one(step) else None

    async def run(self, cohort: Cohort[SendStep], tools: Tools) -> list[Run]:
        """Render, claim, then deliver; each message's runs go on once Telegram has answered."""
        # Imported here, not above: `tidepool check` looks step types up without aiogram.
        from bot.sop.facts import MESSAGES_7D, STREAK, WEEK
        from bot.sop.messages import RenderError, compose

        procedure, path, step, now = cohort.procedure, cohort.path, cohort.step, cohort.now
        send = step.send
        runs = cohort.runs
        messages: dict[Any, list[Run]] = defaultdict(list)
        alone = _for_one(step)  # a button only its member may press: a message each
        for run in runs:
            shared = run.batch is not None and send.to == "group" and not alone
            messages[(run.chat_id, run.batch) if shared else run.id].append(run)
        claimed: list[Run] = []
        records: list[StepRecord] = []
        failures: list[tuple[list[Run], str]] = []
        skipped: list[Run] = []
        pushes: list[tuple[dict[str, Any], list[Run]]] = []
        extra: list[dict[str, Any]] = []  # the copies to the second and further admins
        admins = (
            {chat: await _reachable_admins(tools, chat) for chat in {r.chat_id for r in runs}}
            if send.to == "admins"
            else {}
        )
        for run in cohort.all:
            error = cohort.errors.get(run.id)
            if error is not None:
                records.append(cohort.failed(run, error))
                claimed.append(run)
                failures.append(([run], error))
        keys = [send.template] if send.template else [v.template for v in send.variants or []]
        keys += [button.text for row in send.buttons for button in row]
        counts_needed = {WEEK} if tools.texts.mentions(keys, MESSAGES_7D, procedure.id) else set()
        streaks_needed = tools.texts.mentions(keys, STREAK, procedure.id)
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
            if send.to == "admins" and not admins[first.chat_id]:
                for run in group_runs:
                    records.append(
                        StepRecord(
                            run.id,
                            run.seq,
                            cohort.label,
                            "send",
                            "skipped",
                            now,
                            now,
                            error=NO_ADMIN,
                        )
                    )
                    run.seq += 1
                    goto(run, procedure, path, now, past=True)
                claimed += group_runs
                skipped += group_runs
                continue
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
                    member=first.user_id,
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
            targets: list[int | None] = [*admins.get(first.chat_id, ())] or [None]
            row = _push(
                procedure.id, path, cohort.label, step, group_runs, rendered, now, targets[0]
            )
            pushes.append((row, group_runs))
            extra += [
                _push(procedure.id, path, cohort.label, step, [], rendered, now, admin, first)
                for admin in targets[1:]
            ]
        rows = [row for row, _ in pushes] + extra

        async def effects(conn: AsyncConnection) -> None:
            if rows:
                await add_pushes(conn, rows)

        await tools.runs.save(claimed, now, begun=records, effects=effects)
        for group_runs, error in failures:
            logger.bind(chat_id=group_runs[0].chat_id).error(
                "{} ({}): {}", procedure.id, cohort.label, error
            )
            going = await tools.settle(group_runs)
            if going:
                tools.spawn(tools.advance(going, claimed=True))
        for run in skipped:
            logger.bind(chat_id=run.chat_id).warning(
                "{} ({}) not sent: {}", procedure.id, cohort.label, NO_ADMIN
            )
        if skipped:
            going = await tools.settle(skipped)
            if going:
                tools.spawn(tools.advance(going, claimed=True))
        for row, group_runs in pushes:
            tools.hold(row["key"], group_runs)
        if pushes:
            tools.pushes.wake()
        return []

    def describe(self, step: SendStep, seen: Seen) -> str:
        """Where to, the variant, the message as sent (text, buttons, pin), its deletion."""
        to = step.send.to
        if seen.status == "skipped" and seen.finished_at is not None:
            return f"→ admins: not sent ({NO_ADMIN})"
        parts = [
            "→ group"
            if to == "group"
            else "→ the group's admins (private)"
            if to == "admins"
            else f"→ {seen.member} (private)"
        ]
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
        from bot.sop.messages import LONGEST_USER_ID, RenderError, button_data

        send = step.send
        kind: Literal["message", "caption"] = "caption" if send.photo is not None else "message"
        if send.template is not None:
            checks.text((*at, "send", "template"), send.template, kind)
        for index, variant in enumerate(send.variants or []):
            checks.text((*at, "send", "variants", index, "template"), variant.template, kind)
        for row_index, row in enumerate(send.buttons):
            for index, button in enumerate(row):
                where = (*at, "send", "buttons", row_index, index)
                checks.text((*where, "text"), button.text, "button")
                if button.next is not None:
                    try:
                        member = LONGEST_USER_ID if button.only == "member" else None
                        button_data(checks.sop_id, button.next, member)
                    except RenderError as exc:
                        checks.problem((*where, "next"), str(exc))
        if send.photo is not None and not send.photo.startswith("https://"):
            checks.photo((*at, "send", "photo"), send.photo)


def _for_one(step: SendStep) -> bool:
    """The message has a button only its run's member may press."""
    return any(button.only == "member" for row in step.send.buttons for button in row)


async def _reachable_admins(tools: Tools, chat_id: int) -> list[int]:
    """The group's admins (people, not bots) who started the bot and have not blocked it."""
    people = await tools.admins.people_of(chat_id)
    if not people:
        return []
    async with tools.db.connect() as conn:
        started = await reachable(conn, people)
    return [person for person in people if person in started]


def _push(
    sop_id: str,
    path: str,
    label: str,
    step: SendStep,
    runs: list[Run],
    rendered: Rendered,
    now: datetime,
    admin: int | None = None,
    copy_of: Run | None = None,
) -> dict[str, Any]:
    """The outbox row of one claimed message; `ref` is what `finish_send` needs once it went.

    To admins: `admin` is whom this copy goes to; the first copy carries the runs, the others
    (`copy_of` the run, `runs` empty) only go."""
    send = step.send
    first = runs[0] if runs else copy_of
    assert first is not None
    private = send.to == "member" and first.user_id is not None
    target = (
        admin
        if admin is not None
        else first.user_id
        if private and first.user_id
        else first.chat_id
    )
    reply_to = first.variables.get("trigger", {}).get("message_id") if send.reply else None
    answer = admin is not None or all(answers(run, now) for run in runs)
    source = f"sop:{sop_id}"
    key = (
        f"sop:{first.id}:{first.seq}" if copy_of is None else f"sop:{first.id}:{first.seq}:{admin}"
    )
    return push_row(
        key=key,
        kind=PushKind.SOP,
        chat_id=target,
        group_id=first.chat_id,
        source=source,
        due_at=now,
        now=now,
        text=rendered.text,
        markup=rendered.markup,
        photo=send.photo if rendered.photo is not None else None,
        reply_to=reply_to,
        combine=source if send.combine and rendered.photo is None else None,
        pin=send.pin,
        urgent=answer,
        counts=not answer and not private and admin is None,
        ref={
            "sop": sop_id,
            "path": path,
            "step": label,
            "runs": {str(run.id): run.seq for run in runs},
            "variant": rendered.variant,
            "to": send.to,
            "continue": step.continue_on_error,
            "delete_after": (
                send.delete_after.total_seconds() if send.delete_after is not None else None
            ),
        },
    )


async def finish_sends(tools: Tools, done: list[tuple[Ended, list[Run]]], *, in_hand: bool) -> None:
    """Record how messages went for their runs and move the runs on, all in one transaction
    (replies that shared one Telegram message end together).

    Runs `in_hand` (this process claimed them and still holds them) go on at once; runs read
    back from the database (after a restart, or a wait for quiet hours) are handed to the
    timer. A message that may have arrived when the bot stopped is never sent again: its runs
    go past the step, the journal says `interrupted`."""
    now = tools.clock.now()
    runs = [run for _, part in done for run in part]
    kept = [(run.status, run.position, run.wake_at, run.error, run.finished_at) for run in runs]
    records: list[StepRecord] = []
    deletions: dict[tuple[int, int], dict[str, Any]] = {}  # one per message, however shared
    for end, part in done:
        records += _finished(tools, end, part, now, in_hand=in_hand)
        deletion = _deletion(end, now)
        if deletion is not None:
            deletions[deletion["chat_id"], deletion["message_id"]] = deletion

    async def effects(conn: AsyncConnection) -> None:
        if deletions:
            await conn.execute(SCHEDULED_DELETIONS.insert(), list(deletions.values()))

    try:
        await tools.runs.save(runs, now, finished=records, effects=effects)
    except RunMoved:
        if len(done) == 1:  # moved meanwhile (cancelled, stopped): left as they are now
            tools.release(runs)
            return
        for run, (status, position, wake_at, error, finished_at) in zip(runs, kept, strict=True):
            run.status, run.position, run.wake_at = status, position, wake_at
            run.error, run.finished_at = error, finished_at
        for one in done:  # one message's runs moved: the others are still recorded
            await finish_sends(tools, [one], in_hand=in_hand)
        return
    for end, part in done:
        _log_sent(tools, end, part, now)
    if deletions:
        tools.deletions.wake(min(deletion["due_at"] for deletion in deletions.values()))
    scheduled = [run for run in runs if run.status is RunStatus.SCHEDULED]
    if scheduled:
        tools.waiting(scheduled)
    going = await tools.settle([run for run in runs if run.status is not RunStatus.SCHEDULED])
    if going:
        await tools.advance(going, claimed=True)


def _finished(
    tools: Tools, end: Ended, runs: list[Run], now: datetime, *, in_hand: bool
) -> list[StepRecord]:
    """The runs of one message move past its step (or fail it); their journal rows."""
    ref = end.push.ref or {}
    label = ref.get("step", "")
    procedure = tools.library.get(ref.get("sop", ""))
    status = "done" if end.sent else "interrupted" if end.interrupted else "failed"
    error = None if end.sent else end.note  # INTERRUPTED when the bot stopped mid-send
    chat_id, message_id = _where(end)
    records = []
    for run in runs:
        records.append(
            StepRecord(
                run.id,
                run.seq - 1,
                label,
                "send",
                status,
                now,
                now,
                chat_id=chat_id,
                message_id=message_id,
                error=error,
            )
        )
        if end.sent or end.interrupted or ref.get("continue"):
            run.status = RunStatus.RUNNING
            goto(run, procedure, ref.get("path", run.position), now, past=True)
            if not in_hand and not run.status.is_over:
                run.status, run.wake_at = RunStatus.SCHEDULED, now
        else:
            run.status, run.error, run.finished_at = RunStatus.FAILED, f"{label}: {error}", now
    return records


def _where(end: Ended) -> tuple[int, int | None]:
    """The chat a message went to and its id (from Telegram's answer, or as recorded)."""
    delivered = end.delivered
    chat_id = delivered.chat_id if delivered is not None else end.push.chat_id
    if not end.sent:
        return chat_id, None
    return chat_id, delivered.message_id if delivered is not None else end.push.message_id


def _deletion(end: Ended, now: datetime) -> dict[str, Any] | None:
    """The message's deletion, when its step deletes it after a while."""
    delete_after = (end.push.ref or {}).get("delete_after")
    chat_id, message_id = _where(end)
    if message_id is None or delete_after is None:
        return None
    return {
        "chat_id": chat_id,
        "message_id": message_id,
        "source": end.push.source,
        "due_at": now + timedelta(seconds=delete_after),
    }


def _log_sent(tools: Tools, end: Ended, runs: list[Run], now: datetime) -> None:
    """Each run's `sop_sent` event, with the variant (what analytics compares)."""
    from bot.activity import event_row  # here, not above: see Send.run

    if not end.sent:
        return
    ref = end.push.ref or {}
    chat_id, message_id = _where(end)
    for run in runs:
        tools.activity.add(
            event_row(
                chat_id=chat_id if ref.get("to") == "group" else run.chat_id,
                user_id=run.user_id,
                at=now,
                type=EventType.SOP_SENT,
                message_id=message_id,
                data={
                    "sop": ref.get("sop"),
                    "step": ref.get("step", ""),
                    "variant": ref.get("variant"),
                    "run": run.id,
                },
            )
        )
