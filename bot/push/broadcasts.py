"""Broadcasts: one message to many groups, chosen by tag or id, each reached at most once.

A broadcast is a row in `broadcasts` and, once confirmed, one push per target group (key
`broadcast:<id>:<chat>`), rendered in the group's language when it is confirmed. The push queue
sends them within each group's quiet hours and daily cap. `tidepool broadcast` confirms at once;
`/broadcast` in a private chat shows a preview first and confirms with a button.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from jinja2 import TemplateError
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.db import BROADCASTS, GROUPS, PUSHES, GroupStatus, PushKind, PushStatus, writing
from bot.push.rows import INTERRUPTED, add_pushes, push_row
from bot.texts import Texts

TEMPLATE_PREFIX = "broadcast."
_IDS = re.compile(r"^-?\d+(,-?\d+)*$")
_TAG = re.compile(r"^[\w.-]{1,64}$")


class BroadcastError(Exception):
    """A broadcast that cannot be made as asked: the key of a text saying why, for the operator
    (under `broadcasting.errors`), and the values it shows."""

    def __init__(self, key: str, **values: Any) -> None:
        super().__init__(key)
        self.key = key
        self.values = values

    def __str__(self) -> str:
        shown = ", ".join(f"{name}={value}" for name, value in self.values.items())
        return f"{self.key} ({shown})" if shown else self.key

    def text(self, texts: Texts, language: str | None = None) -> str:
        """Why, in words, in `language` (None: the default)."""
        return texts(self.key, language, **self.values)


@dataclass(frozen=True, slots=True)
class Target:
    """Which groups: every active group, those with any of `tags`, or those with these `ids`."""

    tags: tuple[str, ...] = ()
    ids: tuple[int, ...] = ()

    @classmethod
    def parse(cls, text: str) -> Target:
        """`all`, `vip` or `tag:vip,course` (any of the tags), or `-100123,-100456` (ids)."""
        text = text.strip()
        if text.lower() == "all":
            return cls()
        if _IDS.match(text):
            return cls(ids=tuple(int(part) for part in text.split(",")))
        tags = tuple(part for part in text.removeprefix("tag:").split(",") if part)
        if not tags or not all(_TAG.match(tag) for tag in tags):
            raise BroadcastError("broadcasting.errors.no_target", text=text)
        return cls(tags=tags)

    def __str__(self) -> str:
        if self.ids:
            return ",".join(str(chat_id) for chat_id in self.ids)
        return f"tag:{','.join(self.tags)}" if self.tags else "all"

    def selects(self, chat_id: int, tags: list[str]) -> bool:
        if self.ids:
            return chat_id in self.ids
        return not self.tags or bool(set(self.tags) & set(tags))


@dataclass(frozen=True, slots=True)
class TargetGroup:
    id: int
    title: str
    language: str | None


async def target_groups(engine: AsyncEngine, target: Target) -> list[TargetGroup]:
    """The active groups `target` selects, by id."""
    async with engine.connect() as conn:
        rows = await conn.execute(
            select(GROUPS.c.id, GROUPS.c.title, GROUPS.c.language, GROUPS.c.tags)
            .where(GROUPS.c.status == GroupStatus.ACTIVE.value, GROUPS.c.id < 0)
            .order_by(GROUPS.c.id)
        )
        return [
            TargetGroup(row.id, row.title, row.language)
            for row in rows
            if target.selects(row.id, list(row.tags or []))
        ]


def template_key(name: str) -> str:
    """`spring_sale` or `broadcast.spring_sale` → `broadcast.spring_sale`."""
    return name if name.startswith(TEMPLATE_PREFIX) else f"{TEMPLATE_PREFIX}{name}"


def render(texts: Texts, template: str | None, text: str | None, group: TargetGroup) -> str:
    """The broadcast's text for one group, in its language."""
    if template is None:
        return text or ""
    try:
        return texts(template, group.language, group={"id": group.id, "title": group.title})
    except TemplateError as exc:
        raise BroadcastError(
            "broadcasting.errors.template_broken", template=template, problem=str(exc)
        ) from None


class Sending(Protocol):
    """How a broadcast's text goes: pinned or not, urgent (past quiet hours and the daily cap),
    and what becomes of it over the cap (`postpone` or `drop`)."""

    @property
    def pin(self) -> bool: ...
    @property
    def urgent(self) -> bool: ...
    @property
    def over_cap(self) -> str: ...


def text_push(
    key: str,
    chat_id: int,
    text: str,
    now: datetime,
    how: Sending,
    *,
    source: str,
    broadcast_id: int | None = None,
) -> dict[str, Any]:
    """The push of a broadcast's text to one group, due now (a confirmed broadcast's, or a
    `broadcast` step's)."""
    return push_row(
        key=key,
        kind=PushKind.TEXT,
        chat_id=chat_id,
        source=source,
        due_at=now,
        now=now,
        broadcast_id=broadcast_id,
        text=text,
        pin=how.pin,
        urgent=how.urgent,
        over_cap=how.over_cap,
    )


def check_template(texts: Texts, name: str) -> str:
    """The text key of template `name`, or a BroadcastError listing the templates there are."""
    key = template_key(name)
    if key not in texts.catalogues.get(texts.default_language, {}):
        known = sorted(
            k.removeprefix(TEMPLATE_PREFIX)
            for k in texts.catalogues.get(texts.default_language, {})
            if k.startswith(TEMPLATE_PREFIX)
        )
        raise BroadcastError("broadcasting.errors.no_template", name=name, known=known)
    return key


async def create(
    engine: AsyncEngine,
    texts: Texts,
    *,
    target: Target,
    template: str | None = None,
    text: str | None = None,
    urgent: bool = False,
    over_cap: str = "postpone",
    pin: bool = False,
    source: str,
    created_by: int | None = None,
    now: datetime,
    confirm: bool = True,
) -> int:
    """Make a broadcast (a draft when not `confirm`); return its id."""
    if (template is None) == (text is None):
        raise BroadcastError("broadcasting.errors.template_or_text")
    if over_cap not in ("postpone", "drop"):
        raise BroadcastError("broadcasting.errors.over_cap", value=over_cap)
    key = check_template(texts, template) if template is not None else None
    if not await target_groups(engine, target):
        raise BroadcastError("broadcasting.errors.no_groups", target=str(target))
    async with writing(engine) as conn:
        result = await conn.execute(
            BROADCASTS.insert().values(
                template=key,
                text=text,
                target=str(target),
                urgent=urgent,
                over_cap=over_cap,
                pin=pin,
                source=source,
                created_by=created_by,
                created_at=now,
                groups=0,
            )
        )
        broadcast_id = int(result.inserted_primary_key[0])  # type: ignore[index]
    if confirm:
        await confirm_broadcast(engine, texts, broadcast_id, now)
    return broadcast_id


async def confirm_broadcast(
    engine: AsyncEngine, texts: Texts, broadcast_id: int, now: datetime
) -> int:
    """Queue a broadcast to its groups (once: confirming again adds nothing); return how many."""
    async with engine.connect() as conn:
        row = (
            await conn.execute(select(BROADCASTS).where(BROADCASTS.c.id == broadcast_id))
        ).first()
    if row is None:
        raise BroadcastError("broadcasting.errors.unknown", id=broadcast_id)
    if row.confirmed_at is not None:
        return 0
    groups = await target_groups(engine, Target.parse(row.target))
    source = f"broadcast:{broadcast_id}"
    pushes = [
        text_push(
            f"{source}:{group.id}",
            group.id,
            render(texts, row.template, row.text, group),
            now,
            row,
            source=source,
            broadcast_id=broadcast_id,
        )
        for group in groups
    ]
    async with writing(engine) as conn:
        claimed = await conn.execute(
            update(BROADCASTS)
            .where(BROADCASTS.c.id == broadcast_id, BROADCASTS.c.confirmed_at.is_(None))
            .values(confirmed_at=now, groups=len(pushes))
        )
        if not claimed.rowcount:
            return 0  # confirmed meanwhile (a double tap)
        await add_pushes(conn, pushes)
    return len(pushes)


async def discard(engine: AsyncEngine, broadcast_id: int) -> bool:
    """Drop a draft that was never confirmed; whether there was one."""
    async with writing(engine) as conn:
        result = await conn.execute(
            BROADCASTS.delete().where(
                BROADCASTS.c.id == broadcast_id, BROADCASTS.c.confirmed_at.is_(None)
            )
        )
    return bool(result.rowcount)


@dataclass
class Progress:
    """How far a broadcast got: pushes by status, why some failed, when postponed ones go."""

    id: int
    target: str
    what: str  # the template, or the start of the text
    created_at: datetime
    confirmed_at: datetime | None
    groups: int
    counts: Counter[str] = field(default_factory=Counter)
    # Failed and dropped: why, as the push queue noted it (None: it did not say); see `reason`.
    reasons: Counter[str | None] = field(default_factory=Counter)
    failed_groups: list[tuple[int, str, str | None]] = field(default_factory=list)  # id, title
    next_due: datetime | None = None  # the earliest pending push

    @property
    def pending(self) -> int:
        waiting = (PushStatus.PENDING, PushStatus.QUEUED, PushStatus.SENDING)
        return sum(self.counts[status] for status in waiting)

    @property
    def done(self) -> bool:
        return self.confirmed_at is not None and self.pending == 0


async def progress(
    engine: AsyncEngine, broadcast_id: int | None = None, limit: int = 5
) -> list[Progress]:
    """The progress of one broadcast, or of the `limit` latest confirmed ones (newest first)."""
    query = select(BROADCASTS)
    if broadcast_id is not None:
        query = query.where(BROADCASTS.c.id == broadcast_id)
    else:
        query = query.where(BROADCASTS.c.confirmed_at.is_not(None))
    query = query.order_by(BROADCASTS.c.id.desc()).limit(limit)
    async with engine.connect() as conn:
        broadcasts = list(await conn.execute(query))
        found: list[Progress] = []
        for row in broadcasts:
            what = row.template.removeprefix(TEMPLATE_PREFIX) if row.template else _start(row.text)
            item = Progress(row.id, row.target, what, row.created_at, row.confirmed_at, row.groups)
            counts = await conn.execute(
                select(PUSHES.c.status, func.count(), func.min(PUSHES.c.due_at))
                .where(PUSHES.c.broadcast_id == row.id)
                .group_by(PUSHES.c.status)
            )
            for status, count, earliest in counts:
                item.counts[status] = count
                if status == PushStatus.PENDING:
                    item.next_due = earliest
            unsent = await conn.execute(
                select(PUSHES.c.group_id, PUSHES.c.note, GROUPS.c.title)
                .select_from(PUSHES.outerjoin(GROUPS, GROUPS.c.id == PUSHES.c.group_id))
                .where(
                    PUSHES.c.broadcast_id == row.id,
                    PUSHES.c.status.in_((PushStatus.FAILED.value, PushStatus.DROPPED.value)),
                )
                .order_by(PUSHES.c.group_id)
            )
            for group_id, note, title in unsent:
                item.reasons[note] += 1
                item.failed_groups.append((group_id, title or "", note))
            found.append(item)
    return found


# The notes the push queue and the delivery service leave on a push that did not go, and the
# text (under `broadcasting.notes`) that says each in the operator's language. A note not here
# (Telegram's own words, mostly) is shown as it is, with `broadcasting.notes.other`.
_NOTES: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"not sent: the bot is no longer in this group \((?P<status>\w+)\)"), "gone"),
    (re.compile(r"the bot was removed from this group: (?P<detail>.*)"), "removed"),
    (re.compile(r"the group's daily cap of (?P<cap>\d+) was reached"), "capped"),
    (re.compile(r"too late: its moment has passed"), "late"),
    (re.compile(r"cancelled before it went"), "cancelled"),
    (re.compile(re.escape(INTERRUPTED)), "interrupted"),
    (re.compile(r"the bot stopped while sending it; it may have arrived"), "interrupted"),
    (re.compile(r"not sent: the bot (is stopping|stopped first)"), "stopped"),
)


def reason(note: str | None) -> tuple[str, dict[str, Any]]:
    """The text key and values saying why a push did not go, from the note it was left with."""
    if note is None:
        return "broadcasting.notes.unknown", {}
    for pattern, name in _NOTES:
        found = pattern.fullmatch(note)
        if found is not None:
            return f"broadcasting.notes.{name}", found.groupdict()
    return "broadcasting.notes.other", {"note": note}


def _start(text: str | None, length: int = 30) -> str:
    text = re.sub(r"<[^>]+>", "", text or "").replace("\n", " ").strip()
    return text if len(text) <= length else f"{text[: length - 1]}…"


def summary_lines(item: Progress, when: Any = str) -> list[str]:
    """Plain lines for the command line: counts, reasons of failures, the next postponed time."""
    counts = item.counts
    lines = [
        f"#{item.id} {item.what} → {item.target}: {item.groups} groups; "
        f"sent {counts[PushStatus.SENT]}, pending {item.pending}, "
        f"failed {counts[PushStatus.FAILED]}, dropped {counts[PushStatus.DROPPED]}"
        + (", done" if item.done else "")
    ]
    if item.confirmed_at is None:
        lines.append("  a draft: not confirmed, nothing queued")
    if item.next_due is not None:
        lines.append(f"  next pending push at {when(item.next_due)}")
    for group_id, title, why in item.failed_groups[:20]:
        lines.append(f"  {group_id} {title}: {why or 'unknown'}")
    if len(item.failed_groups) > 20:
        lines.append(f"  … and {len(item.failed_groups) - 20} more")
    return lines
