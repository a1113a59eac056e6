"""Dry runs of an SOP (`tidepool simulate`): the real engine, a simulated group, a fake clock.

Nothing reaches Telegram: a `RecordingOutbox` answers like the delivery service and keeps what
it was asked to send. The clock jumps from one moment something happens to the next (a run
falls due, the member acts, a message is deleted), so days pass in well under a second. The
timeline is read back from what the outbox recorded and from the run journal (`sop_steps`).
"""

from __future__ import annotations

import html
import importlib
import itertools
import json
import re
import tempfile
from dataclasses import dataclass, field
from datetime import UTC, datetime, time, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from aiogram.types import Chat, FSInputFile, InlineKeyboardMarkup, User
from sqlalchemy import func, select

from bot.activity import ActivityLog, event_row
from bot.clock import Clock, ManualClock
from bot.db import SCHEDULED_DELETIONS, SOP_RUNS, SOP_STEPS, EventType, create_engine, upgrade
from bot.deletions import Deletions
from bot.delivery import Delivered
from bot.registry import Registry
from bot.sop.engine import Engine
from bot.sop.format import (
    EmitStep,
    EventTrigger,
    IfStep,
    MemberJoinedTrigger,
    MemberLeftTrigger,
    MessageTrigger,
    PointsStep,
    ScheduleTrigger,
    SendStep,
    SilentTrigger,
    StartStep,
    Step,
    TagStep,
    Trigger,
    WaitStep,
    format_duration,
    parse_duration,
    walk_steps,
)
from bot.sop.library import Library, Procedure
from bot.sop.messages import RenderError, button_data, parse_button

GROUP_ID = -1000000000001
MEMBER_ID = 100001
BOT_USERNAME = "tidepool_bot"
TEXT_LIMIT = 100  # characters of a message shown in the timeline
MAX_FIRES = 1000  # calendar fires within --until; more is surely a mistake
STUCK = 1000  # rounds without the clock moving before the simulation gives up


class SimulationError(Exception):
    """The simulation cannot run as asked; the message says why, in one line."""


# --- The outbox ---------------------------------------------------------------------------------


@dataclass
class Sent:
    """A message the outbox was asked to send."""

    chat_id: int
    text: str
    message_id: int
    method: str = "sendMessage"
    markup: InlineKeyboardMarkup | None = None
    reply_to: int | None = None
    at: datetime | None = None
    photo: str | None = None


@dataclass
class RecordingOutbox:
    """Answers like the delivery service (`bot.delivery.Delivery`) and remembers every request."""

    clock: Clock
    sent: list[Sent] = field(default_factory=list)
    pinned: list[tuple[int, int]] = field(default_factory=list)
    deleted: list[tuple[int, int]] = field(default_factory=list)
    refuse: set[int] = field(default_factory=set)  # chats that answer 403
    ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1000))

    def _record(self, sent: Sent) -> Delivered:
        if sent.chat_id in self.refuse:
            return Delivered(False, None, sent.chat_id, "Forbidden: bot was kicked", 1)
        sent.message_id, sent.at = next(self.ids), self.clock.now()
        self.sent.append(sent)
        return Delivered(True, sent.message_id, sent.chat_id, None, 1)

    async def send_message(
        self,
        chat_id: int,
        text: str,
        *,
        source: str,
        reply_markup: InlineKeyboardMarkup | None = None,
        reply_to_message_id: int | None = None,
    ) -> Delivered:
        return self._record(
            Sent(chat_id, text, 0, "sendMessage", reply_markup, reply_to_message_id)
        )

    async def send_photo(
        self,
        chat_id: int,
        photo: str | FSInputFile,
        *,
        caption: str | None = None,
        source: str,
        reply_markup: InlineKeyboardMarkup | None = None,
        reply_to_message_id: int | None = None,
    ) -> Delivered:
        shown = photo if isinstance(photo, str) else Path(str(photo.path)).name
        sent = Sent(chat_id, caption or "", 0, "sendPhoto", reply_markup, reply_to_message_id)
        sent.photo = shown
        return self._record(sent)

    async def pin(self, chat_id: int, message_id: int, *, source: str) -> Delivered:
        self.pinned.append((chat_id, message_id))
        return Delivered(True, message_id, chat_id, None, 1)

    async def delete(self, chat_id: int, message_id: int, *, source: str) -> Delivered:
        self.deleted.append((chat_id, message_id))
        return Delivered(True, message_id, chat_id, None, 1)

    def texts(self, chat_id: int | None = None) -> list[str]:
        return [sent.text for sent in self.sent if chat_id is None or sent.chat_id == chat_id]


# --- What to simulate ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Press:
    """The member presses the flow button that leads to `step`, `after` the start."""

    step: str
    after: timedelta


@dataclass(frozen=True)
class Script:
    """The simulated group, its member, and what the member does when."""

    member: str = "Lin"
    until: timedelta = timedelta(days=3)
    writes: tuple[timedelta, ...] = ()
    presses: tuple[Press, ...] = ()
    language: str | None = None
    start: datetime | None = None
    group_title: str = "Simulated group"
    text: str | None = None  # of the message that starts a `message` flow


def parse_script(
    *,
    member: str = "Lin",
    until: str = "3d",
    writes: list[str] | None = None,
    presses: list[str] | None = None,
    language: str | None = None,
    start: str | None = None,
    group_title: str = "Simulated group",
    text: str | None = None,
    timezone: ZoneInfo = ZoneInfo("UTC"),
) -> Script:
    """The command line's options as a Script; SimulationError names the option that is wrong."""
    pressed = []
    for value in presses or []:
        step, at, after = value.rpartition("@")
        if not at or not step:
            raise SimulationError(f"--presses {value!r} must look like STEP@AFTER, e.g. rules@30m")
        pressed.append(Press(step, _duration("--presses", after)))
    moment = None
    if start is not None:
        try:
            moment = datetime.fromisoformat(start)
        except ValueError:
            raise SimulationError(
                f"--start {start!r} is not a date-time like 2026-11-02T09:00"
            ) from None
        moment = moment if moment.tzinfo is not None else moment.replace(tzinfo=timezone)
    if not member.strip():
        raise SimulationError("--member needs a name")
    return Script(
        member=member.strip(),
        until=_duration("--until", until),
        writes=tuple(_duration("--writes", value) for value in writes or []),
        presses=tuple(pressed),
        language=language,
        start=moment,
        group_title=group_title,
        text=text,
    )


def _duration(option: str, value: str) -> timedelta:
    try:
        return parse_duration(value)
    except ValueError as exc:
        raise SimulationError(f"{option}: {exc}") from None


# --- The timeline -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Entry:
    """One thing that happened; `order` sorts things that happened at the same moment."""

    at: datetime
    kind: str
    text: str
    run: int | None = None
    sop: str | None = None
    step: str | None = None
    variant: str | None = None
    order: tuple[int, ...] = ()


@dataclass
class Timeline:
    """What a simulation did: the setting, the entries in time order, and how each run ended."""

    sop_id: str
    file: Path
    start: datetime
    end: datetime
    timezone: ZoneInfo
    notes: list[str] = field(default_factory=list)
    entries: list[Entry] = field(default_factory=list)
    runs: list[str] = field(default_factory=list)

    def offset(self, moment: datetime) -> str:
        delta = moment - self.start
        sign = "-" if delta < timedelta(0) else "+"
        return sign + format_duration(abs(delta))

    def text(self) -> str:
        several = len({entry.run for entry in self.entries if entry.run is not None}) > 1
        lines = [*self.notes, ""]
        for entry in self.entries:
            local = entry.at.astimezone(self.timezone).strftime("%H:%M")
            who = f"[run {entry.run}] " if several and entry.run is not None else ""
            lines.append(f"{self.offset(entry.at):<9}{local:<7}{entry.kind:<10}{who}{entry.text}")
        return "\n".join([*lines, "", *self.runs]) + "\n"

    def json(self) -> str:
        entries = [
            {
                "offset": self.offset(entry.at),
                "seconds": int((entry.at - self.start).total_seconds()),
                "at": entry.at.isoformat(),
                "local": entry.at.astimezone(self.timezone).isoformat(),
                "kind": entry.kind,
                "text": entry.text,
                "run": entry.run,
                "sop": entry.sop,
                "step": entry.step,
                "variant": entry.variant,
            }
            for entry in self.entries
        ]
        document = {
            "sop": self.sop_id,
            "file": str(self.file),
            "start": self.start.isoformat(),
            "end": self.end.isoformat(),
            "notes": self.notes,
            "entries": entries,
            "runs": self.runs,
        }
        return json.dumps(document, ensure_ascii=False, indent=2) + "\n"


def one_line(text: str, limit: int = TEXT_LIMIT) -> str:
    """A message as one line of plain text: HTML tags dropped, entities read, cut at `limit`."""
    plain = " ".join(html.unescape(re.sub(r"<[^>]+>", "", text)).split())
    return plain if len(plain) <= limit else plain[: limit - 1].rstrip() + "…"


def _buttons(markup: InlineKeyboardMarkup | None, sop_id: str) -> str:
    shown = []
    for row in markup.inline_keyboard if markup is not None else []:
        for button in row:
            target = parse_button(button.callback_data or "")
            if button.url is not None:
                shown.append(f"[{button.text} ↗ {button.url}]")
            elif target is not None:
                step = target[1] if target[0] == sop_id else f"{target[0]}:{target[1]}"
                shown.append(f"[{button.text} → {step}]")
            else:
                shown.append(f"[{button.text}: {button.callback_data}]")
    return " ".join(shown)


def _describe_wait(step: WaitStep, zone: ZoneInfo, start: datetime, wake: datetime | None) -> str:
    wait = step.wait
    if wait.event is not None:
        assert wait.timeout is not None
        return f"for {wait.event}, at most {format_duration(wait.timeout)}"
    if wait.for_ is not None:
        return f"for {format_duration(wait.for_)}"
    assert wait.until is not None
    return f"until {wait.until.strftime('%H:%M')} ({zone.key})"


# --- Running it ---------------------------------------------------------------------------------


async def simulate(
    file: Path, content_dir: Path, script: Script, *, timezone: ZoneInfo, language: str
) -> Timeline:
    """Run the SOP in `file` (already checked) as `script` says, and return its timeline."""
    with tempfile.TemporaryDirectory(prefix="tidepool-simulate-") as folder:
        db = create_engine(f"sqlite+aiosqlite:///{Path(folder) / 'simulate.db'}")
        try:
            await upgrade(db)
            simulation = _Simulation(db, file, content_dir, script, timezone, language)
            return await simulation.run()
        finally:
            await db.dispose()


class _Simulation:
    """One simulated group with one member, the engine working on it, and the clock it reads."""

    def __init__(
        self,
        db: Any,
        file: Path,
        content_dir: Path,
        script: Script,
        timezone: ZoneInfo,
        language: str,
    ) -> None:
        self.db, self.file, self.script = db, file, script
        self.language = script.language or language
        nominal = script.start or _next_full_hour(datetime.now(UTC), timezone)
        self.clock = ManualClock(nominal)
        self.outbox = RecordingOutbox(self.clock)
        self.activity = ActivityLog(db)
        self.registry = Registry(db, self.activity)
        self.library = Library(file.parent, content_dir)
        self.engine = Engine(
            db,
            self.library,
            self.registry,
            self.activity,
            self.outbox,
            self.clock,
            default_timezone=timezone,
            default_language=language,
        )
        self.deletions = Deletions(db, self.outbox, self.clock)
        self.user = User(id=MEMBER_ID, is_bot=False, first_name=script.member)
        self.chat_id = GROUP_ID
        self.notes: list[str] = []
        self.entries: list[Entry] = []
        self.actions: list[tuple[datetime, int, Any]] = []  # (when, order, coroutine function)
        self.deleted_at: dict[int, datetime] = {}

    async def run(self) -> Timeline:
        await self.engine.open()
        try:
            procedure = self._procedure()
            trigger = procedure.sop.triggers[0]
            await self._group(procedure)
            start = self._plan(procedure, trigger)
            self.clock.set(start)
            end = start + self.script.until
            await self._member(trigger, start)
            self._script(procedure, start, end)
            await self._loop(end)
            return await self._timeline(procedure, start, end)
        finally:
            await self.engine.close()
            await self.activity.close()

    def _procedure(self) -> Procedure:
        wanted = self.file.resolve()
        for procedure in self.library:
            if procedure.file.resolve() == wanted:
                return procedure
        raise SimulationError(
            f"{self.file} is not loaded from its folder: SOP files end in .yaml or .yml and "
            "their names do not start with _"
        )

    async def _group(self, procedure: Procedure) -> None:
        """The simulated group, made to be one the SOP runs in."""
        sop, tags = procedure.sop, []
        where = f"{sop.id} runs in all groups"
        if sop.groups != "all":
            if sop.groups.tags:
                tags = list(sop.groups.tags)
                where = f"given the SOP's group tags ({', '.join(tags)}) so that {sop.id} runs"
            else:
                ids = [chat_id for chat_id in sop.groups.ids if chat_id < 0]
                if not ids:
                    raise SimulationError(f"{sop.id}'s groups.ids name no group (group ids are < 0)")
                self.chat_id = ids[0]
                where = f"with the id from the SOP's groups.ids so that {sop.id} runs"
        chat = Chat(id=self.chat_id, type="supergroup", title=self.script.group_title)
        await self.registry.save_group(
            chat, bot_status="administrator", language=self.language, tags=tags
        )
        if not sop.enabled:
            await self.library.switch(self.db, sop.id, self.chat_id, True, None, self.clock.now())
            where += "; the SOP is disabled (enabled: false), switched on for this simulation"
        zone = self.engine.group_facts(self.chat_id).timezone
        self.zone = zone
        self.notes.append(f"Simulating {sop.id} ({sop.name}) from {self.file}")
        self.notes.append(
            f'Group "{self.script.group_title}" ({self.chat_id}), language {self.language}, '
            f"time zone {zone.key}; {where}"
        )
        # Only this SOP starts on the member's doings; others run when this one starts them.
        triggers = self.engine.triggers
        triggers.joined[:] = [item for item in triggers.joined if item[0].id == sop.id]
        triggers.left[:] = [item for item in triggers.left if item.id == sop.id]
        triggers.messages[:] = [item for item in triggers.messages if item[0].id == sop.id]
        for index in (triggers.commands, triggers.buttons):
            for key in list(index):
                index[key] = [item for item in index[key] if item.id == sop.id]

    def _plan(self, procedure: Procedure, trigger: Trigger) -> datetime:
        """When the simulation starts: now-ish, or the first time a calendar trigger fires."""
        nominal = self.clock.now()
        if not isinstance(trigger, ScheduleTrigger | SilentTrigger):
            return nominal
        fires = _fire_times(trigger, nominal, self.script.until, self.zone)
        if not fires:
            raise SimulationError(
                f"{procedure.id}'s schedule does not fire after {nominal.isoformat()}; "
                "give an earlier --start"
            )
        sop_id, chat_id = procedure.id, self.chat_id
        for order, moment in enumerate(fires):
            if isinstance(trigger, SilentTrigger):
                days = trigger.days

                async def check(days: int = days, first: bool = order == 0) -> None:
                    started = await self.engine.check_silent(sop_id, chat_id, days)
                    if first or started:
                        self._note(
                            "check",
                            f"daily check for members silent {days}d: {started} run(s) started",
                        )

                self.actions.append((moment, order, check))
            else:

                async def fire() -> None:
                    self._note("schedule", f"the schedule fires ({_schedule_text(trigger)})")
                    await self.engine.fire_schedule(sop_id, chat_id)

                self.actions.append((moment, order, fire))
        return fires[0]

    async def _member(self, trigger: Trigger, start: datetime) -> None:
        """The member, joined when the trigger needs them to have joined."""
        name, chat_id, user = self.script.member, self.chat_id, self.user
        joined = start
        if isinstance(trigger, MemberLeftTrigger):
            joined = start - timedelta(days=30)
        elif isinstance(trigger, SilentTrigger):
            joined = start - timedelta(days=trigger.days + 30)
        if isinstance(trigger, MemberJoinedTrigger):
            self.notes.append(f"Member {name} ({user.id}) joins at the start")
        else:
            await self.registry.member_joined(chat_id, user, joined, source="simulate")
            self.notes.append(
                f"Member {name} ({user.id}), in the group since {self._ago(joined, start)}"
            )
        if isinstance(trigger, SilentTrigger):
            last = start - timedelta(days=trigger.days, hours=1)
            self.activity.add(
                event_row(chat_id=chat_id, user_id=user.id, at=last, type=EventType.MESSAGE)
            )
            self.activity.touch(chat_id, user, last, 1)
            await self.activity.flush()
            self.notes[-1] += f", last wrote {self._ago(last, start)}"

    def _ago(self, moment: datetime, start: datetime) -> str:
        if moment >= start:
            return "the start"
        return f"{format_duration(start - moment)} before the start"

    def _script(self, procedure: Procedure, start: datetime, end: datetime) -> None:
        """The trigger (unless on the calendar), the writes and the presses, at their times."""
        trigger = procedure.sop.triggers[0]
        kind = trigger.type
        described = {
            "member_joined": "member_joined"
            + (
                f" (joins within {format_duration(trigger.batch_window)} are greeted together)"
                if isinstance(trigger, MemberJoinedTrigger) and trigger.batch_window
                else ""
            ),
            "silent": f"silent, checked daily at "
            f"{trigger.at.strftime('%H:%M') if isinstance(trigger, SilentTrigger) else ''}",
        }.get(kind, kind)
        count = len(procedure.sop.triggers)
        more = f" (the first of its {count} triggers)" if count > 1 else ""
        self.notes.append(f"Trigger: {described}{more}")
        if not isinstance(trigger, ScheduleTrigger | SilentTrigger):
            self.actions.append((start, 0, self._starter(procedure, trigger)))
        for order, after in enumerate(self.script.writes, start=1):
            self.actions.append((start + after, order, self._write))
        for order, press in enumerate(self.script.presses, start=len(self.script.writes) + 1):
            self._check_press(procedure, press)
            self.actions.append((start + press.after, order, self._presser(procedure, press)))
        late = [at for at, _order, _work in self.actions if at > end]
        if late:
            self.notes.append(f"{len(late)} scripted action(s) fall after --until; not simulated")
        self.notes.append(
            f"From {_local(start, self.zone)} to {_local(end, self.zone)} "
            f"({format_duration(self.script.until)}); sends are recorded, nothing reaches Telegram"
        )

    def _starter(self, procedure: Procedure, trigger: Trigger) -> Any:
        engine, chat_id, user, name = self.engine, self.chat_id, self.user, self.script.member

        async def start() -> None:
            now = self.clock.now()
            if isinstance(trigger, MemberJoinedTrigger):
                self._note("join", f"{name} joins the group")
                await self.registry.member_joined(chat_id, user, now, source="simulate")
                await engine.member_joined(chat_id, user.id)
            elif isinstance(trigger, MemberLeftTrigger):
                self._note("leave", f"{name} leaves the group")
                await self.registry.member_left(chat_id, user, now, source="simulate")
                await engine.member_left(chat_id, user.id)
            elif isinstance(trigger, MessageTrigger):
                text = self.script.text or _message_for(trigger)
                self._note("write", f'{name} writes "{one_line(text)}"')
                await self._say(text, EventType.MESSAGE)
            elif trigger.type == "command":
                self._note("command", f"{name} sends /{getattr(trigger, 'command', '')}")
                await self._say(f"/{getattr(trigger, 'command', '')}", EventType.COMMAND)
            elif trigger.type == "button":
                data = str(getattr(trigger, "data", ""))
                self._note("press", f"{name} presses a button with data {data!r}")
                await engine.button(chat_id, user.id, next(self.outbox.ids), data)
            elif isinstance(trigger, EventTrigger):
                self._note("event", f"event {trigger.event} for {name}")
                events = engine.triggers.events
                everyone = events.get(trigger.event, [])
                events[trigger.event] = [item for item in everyone if item is procedure]
                try:
                    await engine.emit(trigger.event, chat_id, user.id)
                finally:
                    events[trigger.event] = everyone

        return start

    async def _write(self) -> None:
        self._note("write", f'{self.script.member} writes "Hi everyone!"')
        await self._say("Hi everyone!", EventType.MESSAGE)

    async def _say(self, text: str, kind: EventType) -> None:
        """The member sends `text` to the group: logged like a real message, then the engine."""
        now, message_id = self.clock.now(), next(self.outbox.ids)
        data = {"command": text[1:].split()[0]} if kind is EventType.COMMAND else None
        self.activity.add(
            event_row(
                chat_id=self.chat_id,
                user_id=self.user.id,
                at=now,
                type=kind,
                kind="text",
                message_id=message_id,
                text_length=len(text),
                data=data,
            )
        )
        self.activity.touch(self.chat_id, self.user, now, 1)
        await self.engine.message(self.chat_id, self.user.id, message_id, text, BOT_USERNAME)

    def _check_press(self, procedure: Procedure, press: Press) -> None:
        if press.step not in procedure.path_of:
            ids = ", ".join(procedure.path_of) or "none"
            raise SimulationError(
                f"--presses {press.step}@…: {procedure.id} has no step {press.step!r}; "
                f"step ids: {ids}"
            )
        targets = {
            button.next
            for step in walk_steps(procedure.sop.steps)
            if isinstance(step, SendStep)
            for row in step.send.buttons
            for button in row
        }
        if press.step not in targets:
            raise SimulationError(
                f"--presses {press.step}@…: no button of {procedure.id} leads to step "
                f"{press.step!r}; buttons lead to: {', '.join(sorted(map(str, targets - {None}))) or 'none'}"
            )

    def _presser(self, procedure: Procedure, press: Press) -> Any:
        data = button_data(procedure.id, press.step)

        async def pressed() -> None:
            name = self.script.member
            carrier = next(
                (
                    sent
                    for sent in reversed(self.outbox.sent)
                    if sent.chat_id == self.chat_id
                    and sent.message_id not in self.deleted_at
                    and data in _callback_data(sent.markup)
                ),
                None,
            )
            if carrier is None:
                self._note("press", f"{name} cannot press → {press.step}: no message has it now")
                return
            now = self.clock.now()
            self.activity.add(
                event_row(
                    chat_id=self.chat_id,
                    user_id=self.user.id,
                    at=now,
                    type=EventType.CALLBACK,
                    message_id=carrier.message_id,
                    data={"data": data},
                )
            )
            self.activity.touch(self.chat_id, self.user, now)
            answer = await self.engine.button(self.chat_id, self.user.id, carrier.message_id, data)
            said = ""
            if answer is not None:
                try:
                    said = f'; the bot answers "{self.engine.texts.render(answer, self.language, {})}"'
                except RenderError:
                    said = f"; the bot answers {answer}"
            label = _buttons(carrier.markup, procedure.id).split("] [")
            shown = next((part.strip("[]") for part in label if f"→ {press.step}" in part), "")
            self._note("press", f"{name} presses [{shown}] on message {carrier.message_id}{said}")

        return pressed

    def _note(self, kind: str, text: str) -> None:
        self.entries.append(Entry(self.clock.now(), kind, text, order=(0, len(self.entries))))

    async def _loop(self, end: datetime) -> None:
        """Move the clock from one moment something happens to the next, until `end`."""
        self.actions.sort(key=lambda action: (action[0], action[1]))
        pending = list(self.actions)
        stuck = 0
        while True:
            now = self.clock.now()
            while pending and pending[0][0] <= now:
                _at, _order, work = pending.pop(0)
                await work()
                await self.engine.settle()
            await self.engine.tick()
            await self.engine.settle()
            before = len(self.outbox.deleted)
            await self.deletions.delete_due()
            for _chat, message_id in self.outbox.deleted[before:]:
                self.deleted_at[message_id] = now
            moments = [await self.engine.next_wake(), await self._next_deletion()]
            moments.append(pending[0][0] if pending else None)
            upcoming = min((moment for moment in moments if moment is not None), default=None)
            if upcoming is None or upcoming > end:
                return
            stuck = stuck + 1 if upcoming <= now else 0
            if stuck > STUCK:
                self.notes.append("The engine did not move on at one moment; simulation stopped")
                return
            self.clock.set(max(upcoming, now))

    async def _next_deletion(self) -> datetime | None:
        async with self.db.connect() as conn:
            due = await conn.execute(select(func.min(SCHEDULED_DELETIONS.c.due_at)))
            value: datetime | None = due.scalar_one()
            return value

    # -- reading back what happened -----------------------------------------------------------

    async def _timeline(self, procedure: Procedure, start: datetime, end: datetime) -> Timeline:
        async with self.db.connect() as conn:
            runs = list(await conn.execute(select(SOP_RUNS).order_by(SOP_RUNS.c.id)))
            steps = list(
                await conn.execute(select(SOP_STEPS).order_by(SOP_STEPS.c.run_id, SOP_STEPS.c.seq))
            )
        timeline = Timeline(procedure.id, self.file, start, end, self.zone, self.notes)
        sent = {message.message_id: message for message in self.outbox.sent}
        pinned = {message_id for _chat, message_id in self.outbox.pinned}
        by_run: dict[int, list[Any]] = {}
        for row in steps:
            by_run.setdefault(row.run_id, []).append(row)
        entries = list(self.entries)
        for run in runs:
            flow = self.library.get(run.sop_id)
            rows = by_run.get(run.id, [])
            who = self.script.member if run.user_id is not None else "the group"
            first = f"; first step at {_hm(rows[0].started_at, self.zone)}" if rows else ""
            if rows and rows[0].started_at > run.created_at and run.trigger == "member_joined":
                first += " (after the join batch window)"
            elif not rows or rows[0].started_at == run.created_at:
                first = ""
            entries.append(
                Entry(
                    run.created_at,
                    "run",
                    f"run {run.id} of {run.sop_id} starts for {who} (trigger {run.trigger}){first}",
                    run.id,
                    run.sop_id,
                    order=(1, run.id, -1),
                )
            )
            for row in rows:
                entries += self._step_entries(flow, run, row, sent, pinned)
            if run.finished_at is not None:
                ended = f"run {run.id}: {run.status}" + (f": {run.error}" if run.error else "")
                entries.append(
                    Entry(run.finished_at, "end", ended, run.id, run.sop_id, order=(1, run.id, 1 << 30))
                )
            timeline.runs.append(self._summary(flow, run, rows, timeline))
        for message_id, at in self.deleted_at.items():
            message = sent.get(message_id)
            sent_at = timeline.offset(message.at) if message and message.at else "?"
            entries.append(
                Entry(at, "delete", f"message {message_id} (sent {sent_at}) is deleted", order=(2, message_id))
            )
        timeline.entries = sorted(entries, key=lambda entry: (entry.at, entry.order))
        if not runs:
            timeline.runs.append(f"no run of {procedure.id} started (its conditions did not hold?)")
        return timeline

    def _step_entries(
        self,
        flow: Procedure | None,
        run: Any,
        row: Any,
        sent: dict[int, Sent],
        pinned: set[int],
    ) -> list[Entry]:
        step = _step_of(flow, row.step)
        label = row.step if run.sop_id == self.library.get(run.sop_id) and False else row.step
        if flow is None or flow.id != self.file_sop:
            label = f"{run.sop_id}:{row.step}"
        entries: list[Entry] = []

        def add(at: datetime, kind: str, text: str, last: int = 0) -> None:
            entries.append(
                Entry(at, kind, text, run.id, run.sop_id, row.step, row.variant, (1, run.id, row.seq, last))
            )

        if row.status == "failed":
            add(row.started_at, "fail", f"{label}: {row.error}")
            return entries
        if row.status == "disabled":
            add(row.started_at, "skip", f"{label}: disabled (enabled: false)")
            return entries
        if isinstance(step, SendStep) and row.status == "done":
            message = sent.get(row.message_id)
            to = "group" if step.send.to == "group" else f"{self.script.member} (private chat)"
            variant = f" [variant: {row.variant}]" if row.variant else ""
            photo = f" [photo {message.photo}]" if message and message.photo else ""
            text = f' "{one_line(message.text)}"' if message else ""
            buttons = _buttons(message.markup if message else None, run.sop_id)
            extras = [buttons] if buttons else []
            if row.message_id in pinned:
                extras.append("pinned")
            if step.send.delete_after is not None:
                extras.append(f"delete after {format_duration(step.send.delete_after)}")
            tail = (" " + ", ".join(extras)) if extras else ""
            add(row.started_at, "send", f"{label} → {to}{variant}{photo}{text}{tail}")
        elif isinstance(step, WaitStep):
            add(row.started_at, "wait", f"{label}: {_describe_wait(step, self.zone, row.started_at, None)}")
            if row.finished_at is not None:
                waited = row.finished_at - row.started_at
                if row.status == "interrupted":
                    add(row.finished_at, "resume", f"{label}: cut short by a flow button", 1)
                elif row.status == "skipped":
                    add(row.finished_at, "skip", f"{label}: fell due while the bot was down", 1)
                elif step.wait.event is not None and step.wait.timeout is not None:
                    if waited >= step.wait.timeout:
                        add(row.finished_at, "timeout", f"{label}: no {step.wait.event} within {format_duration(step.wait.timeout)}", 1)
                    else:
                        add(row.finished_at, "resume", f"{label}: {step.wait.event} came", 1)
        elif isinstance(step, IfStep):
            branch = row.variant or ""
            if ".then." in branch:
                said = f"conditions hold → then: {flow.label(branch) if flow else branch}"
            elif ".else." in branch:
                said = f"conditions do not hold → else: {flow.label(branch) if flow else branch}"
            else:
                said = "conditions do not hold; nothing to do"
            add(row.started_at, "if", f"{label}: {said}")
        elif isinstance(step, TagStep):
            changes = [f"+{tag}" for tag in step.tag.add] + [f"-{tag}" for tag in step.tag.remove]
            add(row.started_at, "tag", f"{label}: {' '.join(changes)}")
        elif isinstance(step, PointsStep):
            add(row.started_at, "points", f"{label}: {step.points.award:+d} ({step.points.reason})")
        elif isinstance(step, EmitStep):
            add(row.started_at, "emit", f"{label}: event {step.emit.event}")
        elif isinstance(step, StartStep):
            add(row.started_at, "start", f"{label}: starts SOP {step.start.sop}")
        elif row.action == "stop":
            reason = getattr(getattr(step, "stop", None), "reason", "")
            add(row.started_at, "stop", f"{label}" + (f": {reason}" if reason else ""))
        return entries
