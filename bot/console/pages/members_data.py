"""The members page's data: searching members across the viewer's groups, a member's history,
tagging a member and the CSV export.

A search is one statement for the page's rows and one for their count, over `members` with the
filters as conditions (a name or @username, the group, the tier, a tag through EXISTS), then
the page's tags and balances in one statement each. A member's history reads their rows of
`members`, the join and leave events, `checkins`, the points ledger, `tier_changes` and
`member_tags`. Tags are added and removed with the statements the SOPs' `tag` step uses.
"""

from __future__ import annotations

import csv
import io
from collections import defaultdict
from collections.abc import AsyncIterator, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, and_, exists, func, or_, select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from bot import points
from bot.db import (
    MEMBER_TAGS,
    MEMBERS,
    EventType,
)
from bot.db.pairs import pairs_in
from bot.db.people import name_of
from bot.stats.tiers import TIERS

PER_PAGE = 50
EXPORT_BATCH = 1000
LEDGER_SHOWN = 200  # newest ledger rows on a member's page
CHECKINS_SHOWN = 100
TAG_LENGTH = 64
CONSOLE_SOURCE = "console"  # member_tags.source of a tag added from the console
MEMBERSHIP = (EventType.MEMBER_JOINED, EventType.MEMBER_LEFT, EventType.MEMBER_KICKED)
# What a join or leave event says (bot.registry): how, by which link, added or removed by whom.
MEMBERSHIP_DETAILS = ("source", "invite_link", "invite_name", "added_by", "by")
# A spreadsheet runs a cell starting with one of these as a formula.
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
CSV_COLUMNS = (
    "chat_id",
    "group",
    "user_id",
    "name",
    "username",
    "status",
    "tier",
    "tags",
    "points",
    "messages",
    "joined_at",
    "left_at",
    "invite_link",
    "last_activity_at",
)


class BadFilter(ValueError):
    """A filter the search cannot use; the message names the parameter."""


@dataclass(frozen=True, slots=True)
class Filters:
    """What the list shows: `q` a name, @username or user id; the rest exact."""

    q: str = ""
    group: int | None = None
    tier: str | None = None
    tag: str | None = None
    page: int = 1

    @classmethod
    def parse(cls, query: dict[str, str] | Any) -> Filters:
        """From a request's query string; BadFilter names the wrong parameter."""
        group = (query.get("group") or "").strip()
        tier = (query.get("tier") or "").strip() or None
        page = (query.get("page") or "1").strip()
        if group and not group.lstrip("-").isdigit():
            raise BadFilter(f"group must be a group id, not {group!r}")
        if tier is not None and tier not in TIERS:
            raise BadFilter(f"tier must be one of {', '.join(TIERS)}, not {tier!r}")
        if not page.isdigit() or int(page) < 1:
            raise BadFilter(f"page must be a number from 1, not {page!r}")
        return cls(
            q=(query.get("q") or "").strip()[:100],
            group=int(group) if group else None,
            tier=tier,
            tag=(query.get("tag") or "").strip() or None,
            page=int(page),
        )

    def query(self, **changed: Any) -> dict[str, str]:
        """These filters (with `changed`) as query parameters, the empty ones left out."""
        values = {
            "q": self.q,
            "group": self.group,
            "tier": self.tier,
            "tag": self.tag,
            "page": self.page,
        }
        values.update(changed)
        return {
            key: str(value)
            for key, value in values.items()
            if value not in (None, "") and not (key == "page" and value == 1)
        }


@dataclass(slots=True)
class MemberRow:
    chat_id: int
    user_id: int
    name: str
    username: str | None
    status: str
    tier: str
    joined_at: datetime | None
    left_at: datetime | None
    invite_link: str | None
    last_activity_at: datetime | None
    messages: int
    tags: list[str] = field(default_factory=list)
    points: int = 0

    def as_dict(self) -> dict[str, Any]:
        found = asdict(self)
        for key in ("joined_at", "left_at", "last_activity_at"):
            found[key] = found[key].isoformat() if found[key] is not None else None
        return found


@dataclass(slots=True)
class Found:
    rows: list[MemberRow]
    total: int
    page: int
    pages: int


def row_of(row: Any) -> MemberRow:
    return MemberRow(
        chat_id=int(row.chat_id),
        user_id=int(row.user_id),
        name=name_of(row.first_name, row.last_name, row.username, int(row.user_id)),
        username=row.username,
        status=row.status,
        tier=row.tier,
        joined_at=row.joined_at,
        left_at=row.left_at,
        invite_link=row.invite_link,
        last_activity_at=row.last_activity_at,
        messages=int(row.message_count or 0),
    )


def _like(text: str) -> str:
    escaped = text.replace("!", "!!").replace("%", "!%").replace("_", "!_")
    return f"%{escaped}%"


def _matches(text: str) -> list[ColumnElement[bool]]:
    """A name or username containing `text`: in any case (SQL's lower() knows the case of
    every letter on PostgreSQL, of A-Z on SQLite), or as written."""
    lowered, written = _like(text.lower()), _like(text)
    found: list[ColumnElement[bool]] = []
    for column in (MEMBERS.c.first_name, MEMBERS.c.last_name, MEMBERS.c.username):
        found.append(func.lower(column).like(lowered, escape="!"))
        if written != lowered:
            found.append(column.like(written, escape="!"))
    return found


def _conditions(chat_ids: Sequence[int], wanted: Filters) -> list[ColumnElement[bool]]:
    ids = [wanted.group] if wanted.group is not None else list(chat_ids)
    conditions: list[ColumnElement[bool]] = [
        MEMBERS.c.chat_id.in_(ids),
        MEMBERS.c.is_bot.is_(False),
    ]
    if wanted.q:
        text = wanted.q.removeprefix("@")
        matches = _matches(text)
        if text.isdigit() and len(text) < 19:
            matches.append(MEMBERS.c.user_id == int(text))
        conditions.append(or_(*matches))
    if wanted.tier is not None:
        conditions.append(MEMBERS.c.tier == wanted.tier)
    if wanted.tag is not None:
        conditions.append(
            exists().where(
                MEMBER_TAGS.c.chat_id == MEMBERS.c.chat_id,
                MEMBER_TAGS.c.user_id == MEMBERS.c.user_id,
                MEMBER_TAGS.c.tag == wanted.tag,
            )
        )
    return conditions


async def fill_in(conn: AsyncConnection, rows: list[MemberRow]) -> None:
    """The rows' tags and points balances."""
    pairs = [(row.chat_id, row.user_id) for row in rows]
    if not pairs:
        return
    tags: dict[tuple[int, int], list[str]] = defaultdict(list)
    for chat_id, user_id, tag in await conn.execute(
        select(MEMBER_TAGS.c.chat_id, MEMBER_TAGS.c.user_id, MEMBER_TAGS.c.tag)
        .where(pairs_in(MEMBER_TAGS.c.chat_id, MEMBER_TAGS.c.user_id, pairs))
        .order_by(MEMBER_TAGS.c.tag)
    ):
        tags[int(chat_id), int(user_id)].append(tag)
    balances = await points.balances_of(conn, pairs)
    for row in rows:
        row.tags = tags.get((row.chat_id, row.user_id), [])
        row.points = balances.get((row.chat_id, row.user_id), 0)


async def search(
    db: AsyncEngine, chat_ids: Sequence[int], wanted: Filters, per_page: int = PER_PAGE
) -> Found:
    """One page of the members of `chat_ids` (or of `wanted.group`, which the caller checked)
    that match `wanted`, the most recently active first."""
    if wanted.group is None and not chat_ids:
        return Found([], 0, 1, 1)
    conditions = _conditions(chat_ids, wanted)
    async with db.connect() as conn:
        total = int((await conn.execute(select(func.count()).where(*conditions))).scalar_one())
        pages = max(1, -(-total // per_page))
        page = min(wanted.page, pages)
        query = (
            select(MEMBERS)
            .where(*conditions)
            .order_by(
                MEMBERS.c.last_activity_at.desc().nulls_last(),
                MEMBERS.c.chat_id,
                MEMBERS.c.user_id,
            )
            .limit(per_page)
            .offset((page - 1) * per_page)
        )
        rows = [row_of(row) for row in await conn.execute(query)]
        await fill_in(conn, rows)
    return Found(rows, total, page, pages)


async def every(
    db: AsyncEngine, chat_ids: Sequence[int], wanted: Filters
) -> AsyncIterator[list[MemberRow]]:
    """All members that match `wanted` (its page aside), by group and id, a batch at a time."""
    if wanted.group is None and not chat_ids:
        return
    conditions = _conditions(chat_ids, wanted)
    after: tuple[int, int] | None = None
    while True:
        query = select(MEMBERS).where(*conditions)
        if after is not None:
            chat_id, user_id = after
            query = query.where(
                or_(
                    MEMBERS.c.chat_id > chat_id,
                    and_(MEMBERS.c.chat_id == chat_id, MEMBERS.c.user_id > user_id),
                )
            )
        query = query.order_by(MEMBERS.c.chat_id, MEMBERS.c.user_id).limit(EXPORT_BATCH)
        async with db.connect() as conn:
            rows = [row_of(row) for row in await conn.execute(query)]
            await fill_in(conn, rows)
        if not rows:
            return
        yield rows
        if len(rows) < EXPORT_BATCH:
            return
        after = (rows[-1].chat_id, rows[-1].user_id)


def safe_cell(value: Any) -> Any:
    """A CSV cell a spreadsheet shows as text: one starting like a formula gets a ' first."""
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, str) and value.startswith(FORMULA_START):
        return "'" + value
    return "" if value is None else value


def csv_lines(rows: Sequence[MemberRow], titles: dict[int, str]) -> str:
    """The CSV lines of `rows` (no header)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    for row in rows:
        values = {
            **asdict(row),
            "group": titles.get(row.chat_id, str(row.chat_id)),
            "tags": " ".join(row.tags),
        }
        writer.writerow([safe_cell(values[column]) for column in CSV_COLUMNS])
    return out.getvalue()


def csv_header() -> str:
    out = io.StringIO()
    csv.writer(out, lineterminator="\r\n").writerow(CSV_COLUMNS)
    return out.getvalue()


# --- One member -------------------------------------------------------------------------------
