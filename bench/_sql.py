"""The SQL a stretch of the bot's work runs, statement by statement: for a bench to show where
its time goes (a table by kind of statement) and how SQLite reads (EXPLAIN QUERY PLAN).

Statements are timed from SQLAlchemy's cursor events, so a statement's time includes the
driver's trip to its thread and back, and any wait of that trip for a busy event loop.
"""

from __future__ import annotations

import contextlib
import re
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import event as sa_event
from sqlalchemy.ext.asyncio import AsyncEngine


@dataclass
class Statement:
    """One statement run: its SQL and parameters as the driver got them, when and how long."""

    sql: str
    parameters: Any
    began: float  # perf_counter
    seconds: float


@contextlib.contextmanager
def statements(db: AsyncEngine) -> Iterator[list[Statement]]:
    """Every SQL statement run on `db` in the block, with its parameters and duration."""
    seen: list[Statement] = []
    engine = db.sync_engine

    def before(conn: Any, _cursor: Any, _sql: str, _params: Any, _ctx: Any, _many: bool) -> None:
        conn.info.setdefault("bench_began", []).append(time.perf_counter())

    def after(conn: Any, _cursor: Any, sql: str, params: Any, _ctx: Any, _many: bool) -> None:
        began = conn.info["bench_began"].pop()
        seen.append(Statement(sql, params, began, time.perf_counter() - began))

    sa_event.listen(engine, "before_cursor_execute", before)
    sa_event.listen(engine, "after_cursor_execute", after)
    try:
        yield seen
    finally:
        sa_event.remove(engine, "before_cursor_execute", before)
        sa_event.remove(engine, "after_cursor_execute", after)


def statement_kind(sql: str) -> str:
    """A statement's first words, its IN lists folded: what it is, for a table of costs."""
    words = " ".join(sql.split())
    words = re.sub(r"\(\?(, \?)*\)", "(…)", words)
    return words[:70]


async def plan(db: AsyncEngine, statement: Statement) -> list[str]:
    """SQLite's EXPLAIN QUERY PLAN of a statement seen, with its parameters, indented."""
    async with db.connect() as conn:
        result = await conn.exec_driver_sql(
            "EXPLAIN QUERY PLAN " + statement.sql, tuple(statement.parameters)
        )
        rows: list[tuple[int, int, int, str]] = [tuple(row) for row in result]
    depth: dict[int, int] = {0: -1}
    lines = []
    for node, parent, _unused, detail in rows:
        depth[node] = depth.get(parent, -1) + 1
        lines.append("  " * depth[node] + str(detail))
    return lines


def sql_table(
    seen: Sequence[Statement], per: int = 1, top: int = 8, origin: float | None = None
) -> list[str]:
    """Statements by kind, the costliest first; counts and times divided by `per`; with an
    `origin`, when the first of each kind began after it."""
    kinds: dict[str, list[Statement]] = {}
    for statement in seen:
        kinds.setdefault(statement_kind(statement.sql), []).append(statement)
    lines = []
    for kind, each in sorted(kinds.items(), key=lambda item: -sum(s.seconds for s in item[1])):
        took = sum(s.seconds for s in each) / per
        first = f"  from +{(each[0].began - origin) * 1000:4.0f} ms" if origin is not None else ""
        lines.append(f"     {took * 1000:8.2f} ms  {len(each) / per:5.1f} x{first}  {kind}")
    return lines[:top]
