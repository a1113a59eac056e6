"""Export of groups, members, events, lottery audits and referrals as CSV or JSON Lines:
operators own their data."""

from __future__ import annotations

import csv
import json
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time
from typing import IO, Any, Literal
from zoneinfo import ZoneInfo

from sqlalchemy import Select, or_, select
from sqlalchemy import Table as DbTable
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.db import EVENTS, GROUPS, MEMBERS
from bot.invites import numbers
from bot.lottery import audit

Table = Literal["events", "members", "groups", "lotteries", "invites"]
Format = Literal["csv", "jsonl"]


def parse_since(text: str, tz: ZoneInfo) -> datetime:
    """A date (midnight) or date-time; without an offset it is read in `tz`."""
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        try:
            moment = datetime.combine(date.fromisoformat(text), time())
        except ValueError:
            raise ValueError(
                f"--since {text!r} is not a date like 2026-11-01 or 2026-11-01T08:00"
            ) from None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=tz)


@dataclass(frozen=True, slots=True)
class _Exported:
    """How a table is exported: its rows' order, the column naming their group, and the
    columns that say when a row last changed."""

    table: DbTable
    order: tuple[str, ...]
    group: str
    changed: tuple[str, ...]


_EXPORTED = {
    "events": _Exported(EVENTS, ("id",), "chat_id", ("at",)),
    "members": _Exported(
        MEMBERS, ("chat_id", "user_id"), "chat_id", ("last_activity_at", "joined_at", "left_at")
    ),
    "groups": _Exported(GROUPS, ("id",), "id", ("updated_at",)),
}


def export_query(table: Table, group: int | None, since: datetime | None) -> Select[Any]:
    """The rows of `table`, optionally of one group and changed since a moment, in stable order."""
    exported = _EXPORTED[table]
    columns = exported.table.c
    query = select(exported.table).order_by(*(columns[name] for name in exported.order))
    if group is not None:
        query = query.where(columns[exported.group] == group)
    if since is not None:
        query = query.where(or_(*(columns[name] >= since for name in exported.changed)))
    return query


def _plain(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    return value


def _cell(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict | list):
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    return value


async def rows(engine: AsyncEngine, query: Select[Any]) -> AsyncIterator[Mapping[str, Any]]:
    """Stream the query's rows without loading them all."""
    async with engine.connect() as conn:
        result = await conn.stream(query.execution_options(yield_per=1000))
        async for row in result.mappings():
            yield row


async def export(
    engine: AsyncEngine,
    table: Table,
    out: IO[str],
    *,
    fmt: Format = "csv",
    group: int | None = None,
    since: datetime | None = None,
) -> int:
    """Write the rows to `out`; return how many. `lotteries` is their audit trail; `invites`
    one row per referral, with the kind and name of the link it came through."""
    if table == "lotteries":
        return await _write(audit.COLUMNS, audit.audit_rows(engine, group, since), out, fmt)
    if table == "invites":
        found = numbers.export_rows(engine, group, since)
        return await _write(numbers.EXPORT_COLUMNS, found, out, fmt)
    query = export_query(table, group, since)
    columns = [column.name for column in query.selected_columns]
    return await _write(columns, rows(engine, query), out, fmt)


async def _write(
    columns: Sequence[str], found: AsyncIterator[Mapping[str, Any]], out: IO[str], fmt: Format
) -> int:
    count = 0
    if fmt == "csv":
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(columns)
        async for row in found:
            writer.writerow([_cell(row[name]) for name in columns])
            count += 1
    else:
        async for row in found:
            out.write(json.dumps({k: _plain(row[k]) for k in columns}, ensure_ascii=False) + "\n")
            count += 1
    out.flush()
    return count
