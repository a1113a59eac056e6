"""What a simulation records and shows: the outbox that keeps what it was asked to send, the
timeline's entries, and a journal row as step types describe it."""

from __future__ import annotations

import html
import itertools
import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, cast
from zoneinfo import ZoneInfo

from aiogram.types import InlineKeyboardMarkup, InputFile

from bot.clock import Clock
from bot.delivery import Delivered
from bot.sop.format import format_duration
from bot.sop.library import Procedure
from bot.sop.messages import parse_button

TEXT_LIMIT = 100  # characters of a message shown in the timeline


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
    """Answers like the delivery service (`bot.delivery.Delivery`, same keywords) and remembers
    every request."""

    clock: Clock
    sent: list[Sent] = field(default_factory=list)
    pinned: list[tuple[int, int]] = field(default_factory=list)
    deleted: list[tuple[int, int]] = field(default_factory=list)
    moderated: list[tuple[str, int, int]] = field(default_factory=list)  # (action, chat, user)
    refuse: set[int] = field(default_factory=set)  # chats that answer 403
    ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1000))

    def _record(self, method: str, chat_id: int, text: str, options: dict[str, Any]) -> Delivered:
        if chat_id in self.refuse:
            return Delivered(False, None, chat_id, "Forbidden: bot was kicked", 1)
        markup, reply = options.get("reply_markup"), options.get("reply_to_message_id")
        sent = Sent(chat_id, text, next(self.ids), method, markup, reply, self.clock.now())
        self.sent.append(sent)
        return Delivered(True, sent.message_id, chat_id, None, 1)

    async def send_message(self, chat_id: int, text: str, **options: Any) -> Delivered:
        if options.get("before") is not None:
            await options["before"]()
        return self._record("sendMessage", chat_id, text, options)

    async def send_photo(self, chat_id: int, photo: str | InputFile, **options: Any) -> Delivered:
        delivered = self._record("sendPhoto", chat_id, options.get("caption") or "", options)
        if delivered.ok:
            self.sent[-1].photo = photo if isinstance(photo, str) else photo.filename
        return delivered

    async def edit_text(self, chat_id: int, message_id: int, text: str, **_: Any) -> Delivered:
        return Delivered(True, message_id, chat_id, None, 1)  # the timeline shows what was sent

    async def pin(self, chat_id: int, message_id: int, *, source: str) -> Delivered:
        self.pinned.append((chat_id, message_id))
        return Delivered(True, message_id, chat_id, None, 1)

    async def delete(self, chat_id: int, message_id: int, *, source: str) -> Delivered:
        self.deleted.append((chat_id, message_id))
        return Delivered(True, message_id, chat_id, None, 1)

    async def unpin(self, chat_id: int, message_id: int | None = None, *, source: str) -> Delivered:
        return Delivered(True, message_id, chat_id, None, 1)

    async def restrict(self, chat_id: int, user_id: int, permissions: Any, **_: Any) -> Delivered:
        self.moderated.append(("restrict", chat_id, user_id))
        return Delivered(True, None, chat_id, None, 1)

    async def ban(self, chat_id: int, user_id: int, **_: Any) -> Delivered:
        self.moderated.append(("ban", chat_id, user_id))
        return Delivered(True, None, chat_id, None, 1)

    async def unban(self, chat_id: int, user_id: int, **_: Any) -> Delivered:
        self.moderated.append(("unban", chat_id, user_id))
        return Delivered(True, None, chat_id, None, 1)

    @property
    def closing(self) -> bool:
        return False

    def texts(self, chat_id: int | None = None) -> list[str]:
        return [sent.text for sent in self.sent if chat_id is None or sent.chat_id == chat_id]


@dataclass(frozen=True)
class Entry:
    """One thing that happened; `order` sorts the things that happened at the same moment."""

    at: datetime
    kind: str
    text: str
    run: int | None = None
    order: tuple[int, ...] = ()


@dataclass
class Timeline:
    """What a simulation did: its setting, the entries in time order, and how each run ended."""

    sop_id: str
    start: datetime
    timezone: ZoneInfo
    notes: list[str] = field(default_factory=list)
    entries: list[Entry] = field(default_factory=list)
    runs: list[str] = field(default_factory=list)

    def offset(self, moment: datetime) -> str:
        delta = moment - self.start
        return ("-" if delta < timedelta(0) else "+") + format_duration(abs(delta))

    def text(self) -> str:
        """The timeline for people: the setting, one line per entry (a text printed whole goes
        on, indented, on the lines after), one line per run."""
        several = len({entry.run for entry in self.entries if entry.run is not None}) > 1
        lines = [*self.notes, ""]
        for entry in self.entries:
            local = entry.at.astimezone(self.timezone).strftime("%H:%M")
            run = f"[run {entry.run}] " if several and entry.kind != "run" and entry.run else ""
            text = entry.text.replace("\n", "\n" + " " * INDENT)
            lines.append(f"{self.offset(entry.at):<9}{local:<7}{entry.kind + ' ':<10}{run}{text}")
        return "\n".join([*lines, "", *self.runs]) + "\n"


INDENT = 26  # the width of an entry's offset, time and kind


def one_line(text: str, limit: int | None = TEXT_LIMIT) -> str:
    """A message as plain text: HTML tags dropped, entities read; on one line cut at `limit`,
    or whole (its line breaks kept) when `limit` is None."""
    plain = html.unescape(re.sub(r"<[^>]+>", "", text))
    if limit is None:
        return "\n".join(" ".join(line.split()) for line in plain.strip().splitlines())
    plain = " ".join(plain.split())
    return plain if len(plain) <= limit else plain[: limit - 1].rstrip() + "…"


def buttons(markup: InlineKeyboardMarkup | None, sop_id: str) -> list[str]:
    """A message's buttons as the timeline shows them: where each leads."""
    shown = []
    for row in markup.inline_keyboard if markup is not None else []:
        for button in row:
            target = parse_button(button.callback_data or "")
            if button.url is not None:
                shown.append(f"[{button.text} ↗ {button.url}]")
            elif target is not None:
                step = target.step if target.sop == sop_id else f"{target.sop}:{target.step}"
                only = " (only its member)" if target.member is not None else ""
                shown.append(f"[{button.text} → {step}{only}]")
            else:
                shown.append(f"[{button.text}: {button.callback_data}]")
    return shown


def carries(sent: Sent, sop_id: str, step: str, member: int) -> tuple[str, str] | None:
    """(label, callback data) of the flow button to `step` of `sop_id` on a sent message, if
    it has one; a button only another member may press counts when `member` is 0 (anyone)."""
    rows = sent.markup.inline_keyboard if sent.markup is not None else []
    for row in rows:
        for button in row:
            target = parse_button(button.callback_data or "")
            if target is None or (target.sop, target.step) != (sop_id, step):
                continue
            if member == 0 or target.member in (None, member):
                return button.text, button.callback_data or ""
    return None


@dataclass
class JournalRow:
    """A journal row of a simulated run, as step types describe it (`bot.sop.steps.Seen`)."""

    row: Any
    variables: dict[str, Any]
    label: str
    member: str
    sop_id: str
    flow: Procedure | None
    outbox: RecordingOutbox
    more: list[tuple[datetime, str, str]] = field(default_factory=list)
    limit: int | None = TEXT_LIMIT  # characters of a text shown; None: whole

    @property
    def status(self) -> str:
        return str(self.row.status)

    @property
    def started_at(self) -> datetime:
        return cast(datetime, self.row.started_at)

    @property
    def finished_at(self) -> datetime | None:
        return cast(datetime | None, self.row.finished_at)

    @property
    def variant(self) -> str | None:
        return cast(str | None, self.row.variant)

    def step_label(self, path: str) -> str:
        return self.flow.label(path) if self.flow is not None else path

    def message(self) -> list[str]:
        """The message the row sent, as sent: photo, text, buttons, pinned."""
        sent = self.outbox.sent
        message = next((m for m in sent if m.message_id == self.row.message_id), None)
        if message is None:
            return []
        parts = [f"[photo {message.photo}]"] if message.photo is not None else []
        parts.append(f'"{one_line(message.text, self.limit)}"')
        parts += buttons(message.markup, self.sop_id)
        if (message.chat_id, message.message_id) in self.outbox.pinned:
            parts.append("pinned")
        return parts

    def later(self, at: datetime, kind: str, text: str) -> None:
        self.more.append((at, kind, text))


def push_entry(push: Any, outbox: RecordingOutbox, limit: int | None = TEXT_LIMIT) -> Entry:
    """A push the queue handled: what was sent (or why not), when."""
    at = push.sent_at or push.claimed_at or push.due_at
    if push.status == "sent" and push.kind == "live_unpin":
        said = "unpins the live's announcement"
    elif push.status == "sent":
        sent = next((s for s in outbox.sent if s.message_id == push.message_id), None)
        said = one_line(sent.text, limit) if sent is not None else push.kind
    else:
        said = f"{push.status}: {push.note or ''}"
    return Entry(at, "push", f"{push.key} {said}", None, (2, push.id))
