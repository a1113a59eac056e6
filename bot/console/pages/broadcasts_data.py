"""The broadcasts page's data: which broadcasts a viewer sees, and how far each got per group.

Who sees a broadcast: an owner every one; a group's admin one whose every target group is a
group they see (so an admin never learns of a broadcast to groups that are not theirs, and
always sees the ones they made, which can only go to their groups). A draft (made by /broadcast
and not confirmed yet) has no groups: owners only. Progress is `bot.push.broadcasts.progress`;
the status per group is each of its pushes. Also here: reading a broadcast asked for in a
request's body (`Composed` and the field readers, each refusing with a 400 naming the field).
"""

from __future__ import annotations

import html
import re
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from aiohttp import web
from sqlalchemy import case, func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.db import BROADCASTS, PUSHES
from bot.push.broadcasts import (
    TEMPLATE_PREFIX,
    BroadcastError,
    Progress,
    Target,
    TargetGroup,
    progress,
)
from bot.texts import Texts

LISTED = 10  # broadcasts on the page and in GET /api/broadcasts (unless ?limit=)
MAX_LISTED = 100
_TAGS = re.compile(r"<[^>]+>")


@dataclass(frozen=True)
class GroupPush:
    """A broadcast's push to one group."""

    chat_id: int
    status: str
    note: str | None
    due_at: datetime | None
    sent_at: datetime | None


@dataclass(frozen=True)
class Made:
    """Who made a broadcast, and how it goes."""

    source: str
    created_by: int | None
    template: str | None
    text: str | None
    urgent: bool
    over_cap: str
    pin: bool


def by_hand(target: str) -> bool:
    """Whether a broadcast's target is groups chosen by their ids (not `all` or tags)."""
    try:
        return bool(Target.parse(target).ids)
    except BroadcastError:
        return False


def templates(texts: Texts) -> list[str]:
    """The names of the broadcast templates (the `broadcast.` text keys of the default language,
    as `check_template` lists them)."""
    return sorted(
        key.removeprefix(TEMPLATE_PREFIX)
        for key in texts.catalogues.get(texts.default_language, {})
        if key.startswith(TEMPLATE_PREFIX)
    )


async def visible_ids(db: AsyncEngine, groups: frozenset[int], limit: int) -> list[int]:
    """The newest broadcasts all of whose pushes go to `groups` (an admin's), newest first."""
    if not groups:
        return []
    mine = sorted(groups)
    touching = select(PUSHES.c.broadcast_id).where(
        PUSHES.c.broadcast_id.is_not(None), PUSHES.c.group_id.in_(mine)
    )
    query = (
        select(PUSHES.c.broadcast_id)
        .where(PUSHES.c.broadcast_id.in_(touching))
        .group_by(PUSHES.c.broadcast_id)
        .having(func.sum(case((PUSHES.c.group_id.in_(mine), 0), else_=1)) == 0)
        .order_by(PUSHES.c.broadcast_id.desc())
        .limit(limit)
    )
    async with db.connect() as conn:
        return [int(found) for found in (await conn.scalars(query)).all()]


async def sees(db: AsyncEngine, groups: frozenset[int] | None, broadcast_id: int) -> bool:
    """Whether a viewer who sees `groups` (None: an owner) sees this broadcast."""
    if groups is None:
        return True
    async with db.connect() as conn:
        targets = set(
            (
                await conn.scalars(
                    select(PUSHES.c.group_id).where(PUSHES.c.broadcast_id == broadcast_id)
                )
            ).all()
        )
    return bool(targets) and targets <= groups


async def listing(db: AsyncEngine, groups: frozenset[int] | None, limit: int) -> list[Progress]:
    """The newest confirmed broadcasts the viewer sees (`groups`; None: an owner)."""
    if groups is None:
        return await progress(db, None, limit)
    found: list[Progress] = []
    for broadcast_id in await visible_ids(db, groups, limit):
        found.extend(await progress(db, broadcast_id))
    return found


async def pushes_of(db: AsyncEngine, ids: list[int]) -> dict[int, list[GroupPush]]:
    """Each broadcast's pushes, by group."""
    found: dict[int, list[GroupPush]] = defaultdict(list)
    if not ids:
        return found
    async with db.connect() as conn:
        rows = await conn.execute(
            select(
                PUSHES.c.broadcast_id,
                PUSHES.c.group_id,
                PUSHES.c.status,
                PUSHES.c.note,
                PUSHES.c.due_at,
                PUSHES.c.sent_at,
            )
            .where(PUSHES.c.broadcast_id.in_(ids))
            .order_by(PUSHES.c.broadcast_id, PUSHES.c.group_id)
        )
        for broadcast_id, group_id, status, note, due_at, sent_at in rows:
            found[int(broadcast_id)].append(GroupPush(int(group_id), status, note, due_at, sent_at))
    return found


async def made(db: AsyncEngine, ids: list[int]) -> dict[int, Made]:
    if not ids:
        return {}
    async with db.connect() as conn:
        rows = await conn.execute(select(BROADCASTS).where(BROADCASTS.c.id.in_(ids)))
        return {
            int(row.id): Made(
                row.source,
                row.created_by,
                row.template,
                row.text,
                bool(row.urgent),
                row.over_cap,
                bool(row.pin),
            )
            for row in rows
        }


def as_dict(item: Progress, how: Made | None) -> dict[str, Any]:
    """A broadcast's progress as the API gives it (per group and words added by the page)."""
    counts = item.counts
    return {
        "id": item.id,
        "what": html.unescape(item.what),  # a template's name, or the start of a text as words
        "template": how.template.removeprefix(TEMPLATE_PREFIX) if how and how.template else None,
        "text": how.text if how else None,
        "target": item.target,
        "groups": item.groups,
        "created_at": item.created_at.isoformat(),
        "confirmed_at": item.confirmed_at.isoformat() if item.confirmed_at else None,
        "created_by": how.created_by if how else None,
        "source": how.source if how else None,
        "urgent": how.urgent if how else False,
        "drop": how.over_cap == "drop" if how else False,
        "pin": how.pin if how else False,
        "sent": counts["sent"],
        "pending": item.pending,
        "failed": counts["failed"],
        "dropped": counts["dropped"],
        "cancelled": counts["cancelled"],
        "draft": item.confirmed_at is None,
        "done": item.done,
        "next_due": item.next_due.isoformat() if item.next_due else None,
    }


@dataclass(frozen=True)
class Composed:
    """A broadcast as asked, checked: its text key or text, its groups and how it goes."""

    template: str | None  # the text key
    text: str | None
    target: Target
    groups: list[TargetGroup]
    urgent: bool
    drop: bool
    pin: bool

    @property
    def over_cap(self) -> str:
        return "drop" if self.drop else "postpone"


def bad(field: str, message: str) -> web.HTTPBadRequest:
    return web.HTTPBadRequest(text=f"{field}: {message}")


def plain(text: str) -> str:
    """A text the bot rendered (HTML, names escaped) as plain words."""
    return html.unescape(_TAGS.sub("", text))


def flag(body: dict[str, Any], name: str) -> bool:
    value = body.get(name, False)
    if not isinstance(value, bool):
        raise bad(name, "must be true or false")
    return value


def words(body: dict[str, Any], name: str) -> str | None:
    value = body.get(name)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise bad(name, "must be a string")
    return value


def items(body: dict[str, Any], name: str) -> list[Any]:
    value = body.get(name)
    if value is None:
        return []
    if not isinstance(value, list):
        raise bad(name, "must be a list")
    return value
