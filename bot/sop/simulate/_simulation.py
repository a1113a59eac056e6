"""The simulated group: its members, what they do when, the engine working there, the clock."""

from __future__ import annotations

import contextlib
import re
import tempfile
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from functools import partial
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from aiogram.types import Chat, User
from sqlalchemy import select

from bot.activity import event_row
from bot.clock import ManualClock
from bot.db import PUSHES, SOP_RUNS, SOP_STEPS, EventType, PushKind, create_engine, upgrade
from bot.factory import Tidepool, assemble
from bot.settings import Settings
from bot.sop import format as fmt
from bot.sop.engine import JOIN_GATHER
from bot.sop.format import format_duration
from bot.sop.library import Procedure
from bot.sop.messages import RenderError
from bot.sop.simulate._script import Press, Script, SimulationError, Write
from bot.sop.simulate._telegram import unreachable_bot
from bot.sop.simulate._timeline import (
    TEXT_LIMIT,
    Entry,
    JournalRow,
    RecordingOutbox,
    Timeline,
    carries,
    one_line,
    push_entry,
)
from bot.sop.steps import STEPS
from bot.sop.templates import EVENT_EXAMPLES

GROUP_ID = -1000000000001
MEMBER_ID = 100001  # the first member's id; the next members' count on from it
BOT_USERNAME = "tidepool_bot"
WRITE_TEXT = "Hi everyone!"  # what a member writes at a --writes that gives no text
# Pushes the timeline shows through their step (an SOP's send, a lottery's lines), not as pushes.
SHOWN_ELSEWHERE = (PushKind.SOP, PushKind.LOTTERY_POST, PushKind.LOTTERY_ANNOUNCE)
STUCK = 1000  # rounds at one moment without the clock moving before the simulation gives up

Work = Callable[[], Awaitable[None]]


@dataclass(frozen=True)
class _Judged:
    """What the first-message checks found in a simulated newcomer's message (`Judgement`)."""

    spam: bool
    fired: list[str]

    @classmethod
    def for_(cls, checks: fmt.MessageChecks) -> _Judged:
        """A judgement that a trigger's `checks` accept."""
        if checks.fired:
            return cls(True, [checks.fired[0]])
        spam = bool(checks.spam)
        return cls(spam, ["links"] if spam else [])

    def said(self) -> str:
        fired = f" ({', '.join(self.fired)} fired)" if self.fired else ""
        return f"the checks judge it {'spam' if self.spam else 'not spam'}{fired}"


def _message_for(trigger: fmt.MessageTrigger) -> str:
    """A message that starts a `message` flow: its first keyword, or a guess at its regex."""
    if trigger.keywords:
        return trigger.keywords[0]
    if trigger.regex is None:
        return WRITE_TEXT  # only its checks decide
    regex = trigger.regex or ""
    guess = re.sub(r"\\d", "1", re.sub(r"\\[bBAZ]|[\^$]|.[?*]", "", regex)).replace("\\", "")
    if re.search(regex, guess, 0 if trigger.case_sensitive else re.IGNORECASE):
        return guess
    raise SimulationError(f"cannot make up a message matching /{regex}/: give it with --text")


def _at_or_after(moment: datetime, at: time, zone: ZoneInfo) -> datetime:
    local = moment.astimezone(zone)
    day = local.date() + timedelta(days=int(local.time() > at))
    return datetime.combine(day, at, tzinfo=zone).astimezone(UTC)


async def simulate(
    file: Path, content_dir: Path, script: Script, *, timezone: ZoneInfo, language: str
) -> Timeline:
    """Run the SOP in `file` (checked already) as `script` says, and return its timeline.

    The bot is assembled as `tidepool run` assembles it (`bot.factory`), with the SOP's folder
    as SOPS_DIR; Telegram is a recording outbox and a server that never answers, the clock is
    manual, and no loop runs: the simulation moves the clock and runs what falls due.
    """
    hour = datetime.now(UTC).astimezone(timezone).replace(minute=0, second=0, microsecond=0)
    clock = ManualClock(script.start or (hour + timedelta(hours=1)).astimezone(UTC))
    outbox = RecordingOutbox(clock)
    bot, me = unreachable_bot(BOT_USERNAME)
    with tempfile.TemporaryDirectory(prefix="tidepool-simulate-") as folder:
        settings = Settings(
            _env_file=None,
            database_url=f"sqlite+aiosqlite:///{Path(folder) / 'simulate.db'}",
            sops_dir=file.parent,
            content_dir=content_dir,
            language=language,
            timezone=timezone.key,
            owner_ids=[],  # owners are not messaged in a simulation
            quiet_hours="22:00-08:00",
            daily_cap=6,
        )
        db = create_engine(settings.database_url)
        try:
            await upgrade(db)
            async with assemble(settings, bot, clock, me, db=db, outbox=outbox, loops=False) as app:
                return await _Simulation(app, clock, outbox, file, script).run()
        finally:
            await db.dispose()


@dataclass(frozen=True)
class _Pressed:
    """A press that reached the engine: when, by whom, which button, to which step."""

    at: datetime
    user_id: int
    label: str
    step: str


class _Simulation:
    """One simulated group with its members, the engine working in it, and the clock it reads."""

    def __init__(
        self, app: Tidepool, clock: ManualClock, outbox: RecordingOutbox, file: Path, script: Script
    ) -> None:
        self.db, self.file, self.script = app.db, file, script
        self.zone: ZoneInfo = app.settings.tz
        self.language = script.language or app.settings.language
        self.clock, self.outbox = clock, outbox
        self.activity, self.registry = app.activity, app.registry
        self.library, self.engine = app.engine.library, app.engine
        self.lotteries, self.pushes = app.lotteries, app.pushes
        self.users = {
            name: User(id=MEMBER_ID + n, is_bot=False, first_name=name)
            for n, name in enumerate(script.members)
        }
        self.names = {user.id: name for name, user in self.users.items()}
        self.limit = None if script.full else TEXT_LIMIT
        self.chat_id = GROUP_ID
        self.notes: list[str] = []
        self.entries: list[Entry] = []
        self.actions: list[tuple[datetime, int, Work]] = []
        self.pressed: list[_Pressed] = []
        self.refusals = self.engine.cooldowns.refusals  # refused starts seen so far

    def who(self, user_id: int | None) -> str:
        """A member's name as the timeline gives it (None: the group)."""
        return "the group" if user_id is None else self.names.get(user_id, str(user_id))

    async def run(self) -> Timeline:
        self.flow = self._flow()
        self.trigger = trigger = self.flow.sop.triggers[0]
        await self._group()
        start = self.clock.now()
        if isinstance(trigger, fmt.SilentTrigger) and self.script.start is None:
            start = _at_or_after(start, trigger.at, self.zone)
        self.clock.set(start)
        for user in self.users.values():
            await self._member(start, user)
        self._plan(start, start + self.script.until)
        await self._loop(start + self.script.until)
        return await self._timeline(start)

    def _flow(self) -> Procedure:
        wanted = self.file.resolve()
        found = next((item for item in self.library if item.file.resolve() == wanted), None)
        if found is not None:
            return found
        raise SimulationError(
            f"{self.file} is not loaded from its folder: SOP files end in .yaml or .yml and "
            "their names do not start with _"
        )

    async def _group(self) -> None:
        """The simulated group, made one the SOP runs in; only this SOP's triggers fire."""
        sop, tags = self.flow.sop, []
        where = f"{sop.id} runs in all groups"
        if sop.groups != "all" and sop.groups.tags:
            tags = list(sop.groups.tags)
            where = f"given the SOP's group tags ({', '.join(tags)}) so that {sop.id} runs here"
        elif sop.groups != "all":
            ids = [chat_id for chat_id in sop.groups.ids if chat_id < 0]
            if not ids:
                raise SimulationError(f"{sop.id}: groups.ids names no group (group ids are < 0)")
            self.chat_id = ids[0]
            where = f"its id is from the SOP's groups.ids so that {sop.id} runs here"
        chat = Chat(id=self.chat_id, type="supergroup", title=self.script.group_title)
        await self.registry.save_group(
            chat, bot_status="administrator", language=self.language, tags=tags
        )
        if not sop.enabled:
            await self.library.switch(self.db, sop.id, self.chat_id, True, None, self.clock.now())
            where += "; the SOP says enabled: false, switched on here for the simulation"
        self.zone = self.engine.group_facts(self.chat_id).timezone
        self.notes.append(f"Simulating {sop.id} ({sop.name}) from {self.file}")
        self.notes.append(
            f'Group "{self.script.group_title}" ({self.chat_id}), language {self.language}, '
            f"time zone {self.zone.key}; {where}"
        )
        triggers = self.engine.triggers
        triggers.joined[:] = [item for item in triggers.joined if item[0].id == sop.id]
        triggers.left[:] = [item for item in triggers.left if item[0].id == sop.id]
        triggers.messages[:] = [item for item in triggers.messages if item[0].id == sop.id]
        triggers.floods[:] = [item for item in triggers.floods if item[0].id == sop.id]
        for key, commands in triggers.commands.items():
            triggers.commands[key] = [item for item in commands if item[0].id == sop.id]
        for key, buttons in triggers.buttons.items():
            triggers.buttons[key] = [item for item in buttons if item[0].id == sop.id]

    async def _member(self, start: datetime, user: User) -> None:
        """A member, in the group for as long as the trigger needs."""
        name, trigger = user.first_name, self.trigger
        if isinstance(trigger, fmt.MemberJoinedTrigger):
            self.notes.append(f"Member {name} ({user.id}) joins at the start")
            return
        joined = start
        if isinstance(trigger, fmt.MemberLeftTrigger):
            joined = start - timedelta(days=30)
        elif isinstance(trigger, fmt.SilentTrigger):
            joined = start - timedelta(days=trigger.days + 30)
        await self.registry.member_joined(self.chat_id, user, joined, source="simulate")
        since = format_duration(start - joined) + " before the start" if joined < start else "now"
        self.notes.append(f"Member {name} ({user.id}) joined {since}")
        if isinstance(trigger, fmt.SilentTrigger):
            last = start - timedelta(days=trigger.days, hours=1)
            self._log(EventType.MESSAGE, user, last)
            await self.activity.flush()
            self.notes[-1] += f", last wrote {format_duration(start - last)} before the start"

    def _plan(self, start: datetime, end: datetime) -> None:
        """The trigger, the members' writes and presses, each at its time."""
        trigger, count = self.trigger, len(self.flow.sop.triggers)
        described = trigger.type + (f" (the first of {count} triggers)" if count > 1 else "")
        if isinstance(trigger, fmt.MemberJoinedTrigger) and trigger.batch_window is not None:
            window = format_duration(trigger.batch_window)
            described += (
                f"; a quiet group's first joiner is greeted after {format_duration(JOIN_GATHER)},"
                f" later joiners together when the {window} after a greeting has passed"
            )
        elif isinstance(trigger, fmt.SilentTrigger):
            described += f", checked daily at {trigger.at:%H:%M}"
            first = _at_or_after(start, trigger.at, self.zone)
            for day in range((end - first).days + 1 if first <= end else 0):
                self.actions.append((first + timedelta(days=day), 0, self._check_silent))
        elif isinstance(trigger, fmt.ScheduleTrigger):
            described += ", fired once, at the start"
        cooldowns = [t.cooldown for t in self.flow.sop.triggers if t.cooldown is not None]
        if trigger.cooldown is not None:
            key = "group" if self.flow.sop.concurrency_key == "group" else "member"
            described += f"; cooldown {format_duration(trigger.cooldown)} per {key}"
        elif cooldowns:
            described += "; other triggers have a cooldown"
        self.notes.append(f"Trigger: {described}")
        if not isinstance(trigger, fmt.SilentTrigger):
            self.actions.append((start, 0, self._start_flow))
        for write in self.script.writes:
            self.actions.append((start + write.after, 1, partial(self._write, write)))
        for press in self.script.presses:
            if press.step not in self.flow.path_of:
                ids = ", ".join(self.flow.path_of) or "none"
                raise SimulationError(
                    f"--presses {press.step}@…: {self.flow.id} has no step {press.step!r}; "
                    f"its step ids: {ids}"
                )
            self.actions.append((start + press.after, 1, partial(self._press, press)))
        late = sum(1 for at, _order, _work in self.actions if at > end)
        if late:
            self.notes.append(f"{late} of the members' actions fall after --until: not simulated")
        first, last = (moment.astimezone(self.zone) for moment in (start, end))
        self.notes.append(
            f"From {first:%a %Y-%m-%d %H:%M} to {last:%a %Y-%m-%d %H:%M} "
            f"({format_duration(end - start)}); sends are recorded, nothing reaches Telegram"
        )

    async def _check_silent(self) -> None:
        assert isinstance(self.trigger, fmt.SilentTrigger)
        days = self.trigger.days
        started = await self.engine.check_silent(self.flow.id, self.chat_id, days)
        if started or not any(entry.kind == "check" for entry in self.entries):
            found = f"{started} run(s) started" if started else "nobody to start a run for"
            self._note("check", f"daily check for members silent {days}d: {found}")

    async def _start_flow(self) -> None:
        """The SOP's first trigger happens: for each member (a schedule: for the group)."""
        engine, chat_id, trigger = self.engine, self.chat_id, self.trigger
        if isinstance(trigger, fmt.ScheduleTrigger):
            self._note("schedule", "the schedule fires")
            await engine.fire_schedule(self.flow.id, chat_id, 0)
            return
        for name, user in self.users.items():
            await self._trigger(name, user)

    async def _trigger(self, name: str, user: User) -> None:
        """The SOP's first trigger happens for one member."""
        engine, chat_id, trigger, now = self.engine, self.chat_id, self.trigger, self.clock.now()
        if isinstance(trigger, fmt.MemberJoinedTrigger):
            self._note("join", f"{name} joins the group")
            await self.registry.member_joined(chat_id, user, now, source="simulate")
            await engine.member_joined(chat_id, user.id)
        elif isinstance(trigger, fmt.MemberLeftTrigger):
            self._note("leave", f"{name} leaves the group")
            await self.registry.member_left(chat_id, user, now, source="simulate")
            await engine.member_left(chat_id, user.id)
        elif isinstance(trigger, fmt.MessageTrigger):
            text = self.script.text or _message_for(trigger)
            matching = (
                f" (matches /{trigger.regex}/)" if trigger.regex and not trigger.keywords else ""
            )
            judged = _Judged.for_(trigger.checks) if trigger.checks is not None else None
            if judged is not None:
                matching += f"; {judged.said()}"
            said = f'{name} writes "{one_line(text, self.limit)}"{matching}'
            await self._say(text, user, said=said, judgement=judged)
        elif isinstance(trigger, fmt.FloodTrigger):
            count, within = trigger.messages, format_duration(trigger.within)
            self._note("write", f'{name} writes "{WRITE_TEXT}" {count} times within {within}')
            for _ in range(count):
                await self._say(WRITE_TEXT, user, said=None)
        elif isinstance(trigger, fmt.CommandTrigger):
            said = f"{name} sends /{trigger.command}"
            await self._say(f"/{trigger.command}", user, EventType.COMMAND, said)
        elif isinstance(trigger, fmt.ButtonTrigger):
            self._note("press", f"{name} presses a button with data {trigger.data!r}")
            await engine.button(chat_id, user.id, next(self.outbox.ids), trigger.data)
        elif isinstance(trigger, fmt.EventTrigger):
            self._note("event", f"event {trigger.event} for {name}")
            data = dict(EVENT_EXAMPLES.get(trigger.event, {}))  # what the real one carries
            events = engine.triggers.events
            listeners = events.get(trigger.event, [])
            events[trigger.event] = [item for item in listeners if item[0].id == self.flow.id]
            try:
                await engine.emit(trigger.event, chat_id, user.id, data)
            finally:
                events[trigger.event] = listeners

    async def _write(self, write: Write) -> None:
        """A member writes what `--writes` says."""
        text = write.text if write.text is not None else WRITE_TEXT
        said = f'{write.member} writes "{one_line(text, self.limit)}"'
        kind = EventType.COMMAND if text.startswith("/") else EventType.MESSAGE
        await self._say(text, self.users[write.member], kind, said)

    async def _say(
        self,
        text: str,
        user: User,
        kind: EventType = EventType.MESSAGE,
        said: str | None = "",
        judgement: _Judged | None = None,
    ) -> None:
        """A member sends `text` to the group: logged as the bot logs it, then the engine
        (`said` None: the timeline said it already)."""
        if said is not None:
            self._note("command" if kind is EventType.COMMAND else "write", said or f'"{text}"')
        message_id = next(self.outbox.ids)
        command = {"command": text[1:].split()[0]} if kind is EventType.COMMAND else None
        self._log(
            kind, user, message_id=message_id, data=command, text_length=len(text), kind="text"
        )
        await self.engine.message(
            self.chat_id, user.id, message_id, text, BOT_USERNAME, judgement=judgement
        )

    def _log(self, type: EventType, user: User, at: datetime | None = None, **row: Any) -> None:
        """An event of a member (now), in the activity log, and their last activity."""
        now, chat_id = at or self.clock.now(), self.chat_id
        self.activity.add(event_row(chat_id=chat_id, user_id=user.id, at=now, type=type, **row))
        self.activity.touch(chat_id, user, now, int(type is not EventType.CALLBACK))

    async def _press(self, press: Press) -> None:
        """A member presses the button to `press.step` on the last message that has it."""
        name, user = press.member, self.users[press.member]
        group = [sent for sent in self.outbox.sent if sent.chat_id == self.chat_id]
        # The presser's own button first (`only: member`); else the last one, which may
        # tell them it is not for them.
        found = next(
            (
                (sent, button)
                for member in (user.id, 0)
                for sent in reversed(group)
                if (button := carries(sent, self.flow.id, press.step, member)) is not None
            ),
            None,
        )
        if found is None:
            self._note("press", f"{name} cannot press → {press.step}: no message has it now")
            return
        carrier, (label, data) = found
        self._log(EventType.CALLBACK, user, message_id=carrier.message_id, data={"data": data})
        text = f"{name} presses [{label}] on message {carrier.message_id}"
        self.pressed.append(_Pressed(self.clock.now(), user.id, label, press.step))
        answer = await self.engine.button(self.chat_id, user.id, carrier.message_id, data)
        if answer is not None:
            with contextlib.suppress(RenderError):
                answer = self.engine.texts.render(answer, self.language, {})
            text += f'; the bot answers "{one_line(answer, self.limit)}"'
        self._note("press", text)

    def _note(self, kind: str, text: str, at: datetime | None = None) -> None:
        moment = at or self.clock.now()
        self.entries.append(Entry(moment, kind, text, order=(0, len(self.entries))))

    def _refused(self) -> None:
        """The starts a trigger's cooldown refused since the last look, as entries."""
        cooldowns = self.engine.cooldowns
        new, self.refusals = cooldowns.refusals - self.refusals, cooldowns.refusals
        for refusal in list(cooldowns.refused)[-new:] if new else []:
            who = self.who(refusal.user_id)
            said = f"{refusal.sop_id} not started for {who}: {refusal.reason()}"
            self._note("refused", said, refusal.at)

    async def _loop(self, end: datetime) -> None:
        """Move the clock from one moment something happens to the next, up to `end`."""
        pending = sorted(self.actions, key=lambda action: (action[0], action[1]))
        stuck = 0
        while True:
            now = self.clock.now()
            while pending and pending[0][0] <= now:
                await pending.pop(0)[2]()
                await self._settle()
                self._refused()
            await self.engine.tick()
            await self._settle()
            self._refused()
            await self.lotteries.draw_due()
            await self._settle()
            moments = [
                await self.engine.next_wake(),
                await self.lotteries.store.next_due(),
                await self.pushes.next_due(),
                pending[0][0] if pending else None,
            ]
            upcoming = min((moment for moment in moments if moment is not None), default=None)
            stuck = stuck + 1 if upcoming is not None and upcoming <= now else 0
            if upcoming is None or upcoming > end or stuck > STUCK:
                return
            self.clock.set(max(upcoming, now))

    async def _settle(self) -> None:
        """Let the engine and the outbox finish what is due now (a message sent moves its runs
        on, which may send the next)."""
        while True:
            await self.engine.settle()
            wait = await self.pushes.run_due()
            await self.pushes.settle()
            await self.engine.settle()
            if wait > 0 and self.pushes.busy == 0 and not self.engine.tasks:
                return

    async def _timeline(self, start: datetime) -> Timeline:
        async with self.db.connect() as conn:
            runs = list(await conn.execute(select(SOP_RUNS).order_by(SOP_RUNS.c.id)))
            journal = select(SOP_STEPS).order_by(SOP_STEPS.c.run_id, SOP_STEPS.c.seq)
            steps: dict[int, list[Any]] = {}
            for row in await conn.execute(journal):
                steps.setdefault(row.run_id, []).append(row)
            pushes = list(await conn.execute(select(PUSHES).order_by(PUSHES.c.id)))
        timeline = Timeline(self.flow.id, start, self.zone, self.notes)
        entries = list(self.entries)
        for run in runs:
            rows = steps.get(run.id, [])
            who = self.who(run.user_id)
            text = f"run {run.id} of {run.sop_id} starts for {who} (trigger {run.trigger})"
            if rows and rows[0].started_at > run.created_at:
                text += f"; its first step at {rows[0].started_at.astimezone(self.zone):%H:%M}"
            entries.append(Entry(run.created_at, "run", text, run.id, (1, run.id)))
            for row in rows:
                entries += self._entries(run, row)
            timeline.runs.append(self._summary(run, rows, timeline))
        entries += [
            push_entry(push, self.outbox, self.limit)
            for push in pushes
            if push.status != "pending" and push.kind not in SHOWN_ELSEWHERE
        ]
        timeline.entries = sorted(entries, key=lambda entry: (entry.at, entry.order))
        if not runs:
            timeline.runs.append(f"no run of {self.flow.id} started: its conditions did not hold")
        return timeline

    def _entries(self, run: Any, row: Any) -> list[Entry]:
        """The timeline entries of one journal row: the step, as its type describes it, and
        what else its type says happened (the end of a wait)."""
        flow = self.library.get(run.sop_id)
        path = row.step[6:] if row.step.startswith("steps.") else None
        path = path or (flow.path_of.get(row.step) if flow is not None else None)
        step = flow.step(path) if flow is not None and path is not None else None
        label = row.step if run.sop_id == self.flow.id else f"{run.sop_id}:{row.step}"
        seen = JournalRow(
            row,
            run.variables or {},
            label,
            self.who(run.user_id),
            run.sop_id,
            flow,
            self.outbox,
            limit=self.limit,
        )
        kind, said, joined_by = row.action, "", ": "
        if row.status in ("failed", "disabled", "skipped"):
            kind = "fail" if row.status == "failed" else "skip"
            said = row.error or ("enabled: false" if row.status == "disabled" else "catch-up")
        elif step is not None:
            step_type = STEPS.of(step)
            said, joined_by = step_type.describe(step, seen), step_type.joined_by
        order = (1, run.id, row.seq)
        text = f"{label}{joined_by}{said}" if said else label
        entries = [Entry(row.started_at, kind, text, run.id, (*order, 0))]
        more = seen.more
        if row.action == "wait" and row.status == "interrupted" and row.finished_at is not None:
            more = [item for item in more if item[1] != "resume"]  # said here, with who pressed
            more.append((row.finished_at, "resume", f"{label}: {self._cut_short(run, row)}"))
        for after, (at, later_kind, later_text) in enumerate(more, start=1):
            entries.append(Entry(at, later_kind, later_text, run.id, (*order, after)))
        return entries

    def _cut_short(self, run: Any, row: Any) -> str:
        """How a press ended a wait: who pressed which button, to which step."""
        press = next(
            (
                press
                for press in reversed(self.pressed)
                if press.at == row.finished_at and run.user_id in (None, press.user_id)
            ),
            None,
        )
        if press is None:
            return "cut short by a flow button"
        who = self.who(press.user_id)
        return f"cut short by {who}'s press of [{press.label}] → {press.step}"

    def _summary(self, run: Any, rows: list[Any], timeline: Timeline) -> str:
        """One line on how a run ended, or where it is when the simulation ends."""
        head = f"run {run.id} ({run.sop_id}, {self.who(run.user_id)}): {run.status}"
        if run.finished_at is not None:
            head += f" at {timeline.offset(run.finished_at)}"
        stop = (run.variables or {}).get("stop_reason")
        if run.error or stop:
            return f"{head}: {run.error}" if run.error else f"{head}, stop reason: {stop}"
        if run.status in ("waiting", "scheduled") and run.wake_at is not None:
            at = rows[-1].step if rows and run.status == "waiting" else "its next step"
            event = f" or {run.wait_event}" if run.wait_event else ""
            return f"{head} at {at} until {timeline.offset(run.wake_at)}{event}"
        return head
