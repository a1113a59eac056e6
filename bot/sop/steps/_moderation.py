"""The moderation steps: restrict, unrestrict, mute, kick, ban, delete and warn.

Each asks the moderation service (`tools.moderation`, a `bot.moderation.protocol.Moderator`)
for every run of the cohort, as `sop:<id>`, and journals how it ended:

- done: the run goes on;
- dry (the group's moderation is in dry mode): recorded as what would have been done, nothing
  changed; the run goes on as if it had been done;
- the bot lacks the right, or moderation is off in the group: the run ends quietly, *stood
  down* (status done; the journal says why). The service has told the admins of a missing
  right once; nobody is told again, and a join check never goes on to kick anyone;
- any other error fails the step as usual (`continue_on_error` goes on past it).

A kick or ban that was done marks the run (`REMOVED`), so that a join check that removed its
member does not let the group's welcome start for them.
"""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

from bot.db import RunStatus
from bot.moderation.protocol import RIGHTS, Done
from bot.sop.format import (
    BanStep,
    DeleteStep,
    KickStep,
    MuteStep,
    RestrictStep,
    SendStep,
    StepBase,
    UnrestrictStep,
    WarnStep,
    format_duration,
)
from bot.sop.runs import Run, StepRecord
from bot.sop.steps._base import Checks, Cohort, KeyPath, Seen, StepType, goto

if TYPE_CHECKING:
    from bot.sop.steps._base import Tools

M = TypeVar("M", bound=StepBase)

REMOVED = "_removed"  # run variable: this run removed its member from the group (kick, ban)
CHECKS = "_checks"  # run variable: the first-message checks that fired, for the log
NEEDS_MEMBER = "moderation needs a member; this run is for the whole group"
OFF = "stood down: moderation is off in this group"
DRY = "dry"  # journal status: dry mode, recorded as what would have been done
STOOD_DOWN = "stood_down"  # journal status: the run ended here without acting
# Triggers that carry the message that started the run (`trigger.message_id`).
WITH_MESSAGE = frozenset({"message", "command", "flood"})


def check_of(run: Run, sop_id: str) -> str:
    """What the moderation log names as the cause: the checks that fired (a `message` trigger
    with `checks`), `flood`, or else the SOP."""
    fired = run.variables.get(CHECKS)
    if run.trigger == "message" and fired:
        return ",".join(fired)
    if run.trigger == "flood":
        return "flood"
    return sop_id


class Moderating(StepType[M]):
    """A moderation step: asks the service once per run, journals how each ended."""

    needs_member: ClassVar[str | None] = NEEDS_MEMBER
    cannot: ClassVar[str] = "restrict members"  # what a missing right keeps the bot from
    removes: ClassVar[bool] = False  # done, it removes the member from the group

    async def act(self, step: M, run: Run, tools: Tools, by: str, check: str) -> Done:
        """Ask the service for this run's action."""
        raise NotImplementedError

    async def run(self, cohort: Cohort[M], tools: Tools) -> list[Run]:
        by = f"sop:{cohort.procedure.id}"
        ended: dict[int, Done] = {}
        for run in cohort.runs:
            ended[run.id] = await self.act(
                cohort.step, run, tools, by, check_of(run, cohort.procedure.id)
            )
        return await journal(cohort, tools, ended, self.cannot, removes=self.removes)

    def describe(self, step: M, seen: Seen) -> str:
        what = self.said(step)
        if seen.status == DRY:
            return f"{what} (dry run: recorded, nothing done)"
        if seen.status == STOOD_DOWN:
            return f"{what}: stood down (the bot may not {self.cannot} here, or moderation is off)"
        return what

    def said(self, step: M) -> str:
        """The step as `tidepool simulate` names it, its reason included."""
        reason = getattr(step, step.action).reason
        parts = [step.action, terms(step), f"({reason})" if reason else ""]
        return " ".join(part for part in parts if part)


def terms(step: StepBase) -> str:
    """The terms of a step for `tidepool simulate`: how long, which message."""
    action = getattr(step, step.action)
    term = getattr(action, "for_", None)
    if isinstance(step, RestrictStep):
        allowed = [name for name, on in (action.permissions or {}).items() if on]
        what = f"may only {', '.join(allowed)}" if allowed else "may send nothing"
        return f"{what}{f' for {format_duration(term)}' if term else ' until lifted'}"
    if isinstance(step, BanStep):
        return f"for {format_duration(term)}" if term else "for good"
    if isinstance(term, timedelta):
        return f"for {format_duration(term)}"
    if isinstance(step, DeleteStep):
        return f"the message of step {action.step}" if action.step else "the triggering message"
    return ""


async def journal(
    cohort: Cohort[Any],
    tools: Tools,
    ended: dict[int, Done],
    cannot: str,
    *,
    removes: bool = False,
    missing: dict[int, str] | None = None,
) -> list[Run]:
    """Journal each run's outcome and move it on (or end it, stood down), in one transaction;
    return the runs that go on. `missing`: runs with nothing to act on (skipped, go on)."""
    procedure, path, now, label = cohort.procedure, cohort.path, cohort.now, cohort.label
    action = cohort.step.action
    records: list[StepRecord] = []
    for run in cohort.all:
        error = cohort.errors.get(run.id)
        if error is not None:
            records.append(cohort.failed(run, error))
            continue
        if missing and run.id in missing:
            records.append(
                StepRecord(
                    run.id, run.seq, label, action, "skipped", now, now, error=missing[run.id]
                )
            )
            run.seq += 1
            goto(run, procedure, path, now, past=True)
            continue
        done = ended[run.id]
        if done.skipped or done.error == RIGHTS:
            why = OFF if done.skipped else f"stood down: the bot may not {cannot} here"
            records.append(
                StepRecord(run.id, run.seq, label, action, STOOD_DOWN, now, now, error=why)
            )
            run.seq += 1
            run.variables["stop_reason"] = why
            run.status, run.finished_at = RunStatus.DONE, now
            continue
        if not done.ok:
            records.append(cohort.failed(run, done.error or f"the bot could not {action}"))
            continue
        status = DRY if done.dry else "done"
        records.append(StepRecord(run.id, run.seq, label, action, status, now, now))
        run.seq += 1
        if removes and not done.dry:
            run.variables[REMOVED] = True
        goto(run, procedure, path, now, past=True)
    await tools.runs.save(cohort.all, now, begun=records)
    return await tools.settle(cohort.all)


def _member(run: Run) -> int:
    assert run.user_id is not None  # the engine refused the group's runs (needs_member)
    return run.user_id


class Restrict(Moderating[RestrictStep]):
    model = RestrictStep

    async def act(self, step: RestrictStep, run: Run, tools: Tools, by: str, check: str) -> Done:
        action = step.restrict
        until = tools.clock.now() + action.for_ if action.for_ is not None else None
        allowed = action.permissions
        return await tools.moderation.restrict(
            run.chat_id,
            _member(run),
            by=by,
            permissions={str(name): on for name, on in allowed.items()} if allowed else None,
            until=until,
            reason=action.reason,
            check=check,
        )


class Unrestrict(Moderating[UnrestrictStep]):
    model = UnrestrictStep

    async def act(self, step: UnrestrictStep, run: Run, tools: Tools, by: str, check: str) -> Done:
        reason = step.unrestrict.reason
        return await tools.moderation.unrestrict(run.chat_id, _member(run), by=by, reason=reason)


class Mute(Moderating[MuteStep]):
    model = MuteStep

    async def act(self, step: MuteStep, run: Run, tools: Tools, by: str, check: str) -> Done:
        return await tools.moderation.mute(
            run.chat_id,
            _member(run),
            duration=step.mute.for_,
            by=by,
            reason=step.mute.reason,
            check=check,
        )


class Kick(Moderating[KickStep]):
    model = KickStep
    cannot = "remove members"
    removes = True

    async def act(self, step: KickStep, run: Run, tools: Tools, by: str, check: str) -> Done:
        reason = step.kick.reason
        return await tools.moderation.kick(
            run.chat_id, _member(run), by=by, reason=reason, check=check
        )


class Ban(Moderating[BanStep]):
    model = BanStep
    cannot = "ban members"
    removes = True

    async def act(self, step: BanStep, run: Run, tools: Tools, by: str, check: str) -> Done:
        term = step.ban.for_
        return await tools.moderation.ban(
            run.chat_id,
            _member(run),
            by=by,
            reason=step.ban.reason,
            check=check,
            until=tools.clock.now() + term if term is not None else None,
        )


class Warn(Moderating[WarnStep]):
    model = WarnStep

    async def act(self, step: WarnStep, run: Run, tools: Tools, by: str, check: str) -> Done:
        reason = step.warn.reason
        warned = await tools.moderation.warn(run.chat_id, _member(run), by=by, reason=reason)
        return warned.done


class Delete(Moderating[DeleteStep]):
    """Deletes the triggering message, or the message a send step of the run sent (read from
    the run's journal); a message deleted once is not asked for again in the same cohort."""

    model = DeleteStep
    needs_member = None  # a group's run may delete a message too
    cannot = "delete messages"

    async def run(self, cohort: Cohort[DeleteStep], tools: Tools) -> list[Run]:
        step, sop_id = cohort.step.delete, cohort.procedure.id
        by = f"sop:{sop_id}"
        targets: dict[int, tuple[int, int]] = {}
        missing: dict[int, str] = {}
        if step.step is not None:
            # A step with an id is journaled by it.
            sent = await tools.runs.sent_by([run.id for run in cohort.runs], step.step)
            for run in cohort.runs:
                if run.id in sent:
                    targets[run.id] = sent[run.id]
                else:
                    missing[run.id] = f"step {step.step} sent no message in this run"
        else:
            for run in cohort.runs:
                message_id = (run.variables.get("trigger") or {}).get("message_id")
                if message_id is None:
                    cohort.errors[run.id] = "no message started this run: nothing to delete"
                else:
                    targets[run.id] = (run.chat_id, int(message_id))
        ended: dict[int, Done] = {}
        asked: dict[tuple[int, int], Done] = {}
        for run in cohort.runs:
            target = targets.get(run.id)
            if target is None:
                continue
            if target not in asked:
                chat_id, message_id = target
                if step.step is not None:  # the bot's own message: tidying up, in any mode
                    asked[target] = await tools.moderation.tidy(chat_id, message_id)
                else:
                    asked[target] = await tools.moderation.delete(
                        chat_id,
                        message_id,
                        run.user_id,
                        by=by,
                        reason=step.reason,
                        check=check_of(run, sop_id),
                    )
            ended[run.id] = asked[target]
        return await journal(cohort, tools, ended, self.cannot, missing=missing)

    def describe(self, step: DeleteStep, seen: Seen) -> str:
        if seen.status == "skipped":
            return f"nothing to delete: step {step.delete.step} sent no message"
        return super().describe(step, seen)

    def check_references(self, step: DeleteStep, at: KeyPath, checks: Checks) -> None:
        wanted = step.delete.step
        where = (*at, "delete", "step")
        if wanted is None:
            if not WITH_MESSAGE & set(checks.trigger_types):
                checks.problem(
                    (*at, "delete"),
                    "'delete' without 'step' deletes the message that started the run, but "
                    f"this SOP's triggers ({', '.join(checks.trigger_types)}) start runs "
                    "without one: name a send step of this SOP with 'step'",
                )
            return
        named = checks.step_of(wanted)
        if named is None:
            have = ", ".join(checks.step_ids) or "no step has an id"
            checks.problem(
                where,
                f"'step' names step '{wanted}', which this SOP does not have; steps are: {have}",
            )
        elif not isinstance(named, SendStep) or named.send.to != "group":
            checks.problem(
                where,
                f"'step' must name a send step of this SOP that sends to the group; "
                f"'{wanted}' is a {named.action} step"
                + (f" sending to {named.send.to}" if isinstance(named, SendStep) else ""),
            )
