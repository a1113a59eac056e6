"""Statements compiled once and executed for thousands of rows, below SQLAlchemy's executemany.

SQLAlchemy's executemany prepares every row's parameters through the compiled statement, which
costs more than the database write itself at thousands of rows a second. `Bulk` looks up the
bind processors of the few parameters that need one (datetimes, JSON) once, converts a column
at a time (each distinct time once per batch; booleans as they are), and hands the rows to the
driver as tuples, on the same connection and in the same transaction.

On SQLite the rows go to the driver's own `executemany`. Its thread wants Python's lock for each
call it makes (SQLAlchemy's cursor takes three per statement: open, execute, close), and while
the event loop is busy each wait for that lock can last the switch interval (5 ms): the fewer
calls, the more rows a write gets through under load.
"""

from __future__ import annotations

import asyncio
import itertools
import operator
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from sqlalchemy.engine import Dialect
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql import ClauseElement
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.dml import Insert
from sqlalchemy.types import Boolean

ROWS_PER_INSERT = 500
SLICE = 1000  # rows prepared between turns of the event loop
SQLITE_VARIABLES = 32766  # parameters per statement (SQLite 3.32 and later)


class Bulk:
    """One INSERT, UPDATE or DELETE with bound parameters, for one database dialect."""

    def __init__(
        self, statement: ClauseElement, dialect: Dialect, names: Sequence[str] | None = None
    ) -> None:
        compiled = cast(SQLCompiler, statement.compile(dialect=dialect))
        order = tuple(compiled.positiontup or ())
        if not compiled.positional or not order or (names is not None and order != tuple(names)):
            raise RuntimeError(f"cannot run in bulk with paramstyle {dialect.paramstyle}")
        self.sql = compiled.string
        self.names = order  # the order of the values in each row given to `execute`
        self._pick: Callable[[Mapping[str, Any]], Any] = operator.itemgetter(*order)
        # SQLite: an INSERT takes many rows per statement. Its driver runs in a thread of its
        # own that wants Python's lock after each statement; while the event loop is busy it
        # waits up to the switch interval (5 ms) for it, row after row with executemany.
        group = "(" + ", ".join("?" * len(order)) + ")"
        self._values: tuple[str, str, str] | None = None
        if dialect.name == "sqlite" and isinstance(statement, Insert) and group in self.sql:
            head, tail = self.sql.split(group, 1)
            self._values = (head, group, tail)
            self._per_statement = max(1, min(ROWS_PER_INSERT, SQLITE_VARIABLES // len(order)))
        types = [compiled.binds[name].type.dialect_impl(dialect) for name in order]
        # (column, processor, the values it may leave as they are: bool, which every driver
        # takes as it is, for a boolean column)
        self._convert = [
            (index, processor, frozenset({bool, type(None)}) if isinstance(kind, Boolean) else None)
            for index, kind in enumerate(types)
            if (processor := kind.bind_processor(dialect)) is not None
        ]

    def rows(self, mappings: Sequence[Mapping[str, Any]]) -> list[tuple[Any, ...]]:
        """Rows for `execute` from mappings of parameter names to values."""
        if len(self.names) == 1:
            return [(self._pick(mapping),) for mapping in mappings]
        return [self._pick(mapping) for mapping in mappings]

    async def execute(self, conn: AsyncConnection, rows: Sequence[Sequence[Any]]) -> int:
        """Execute for each row (its values in the order of `names`); the rows it matched."""
        return await self.run(conn, await self.prepare(rows))

    async def prepare(self, rows: Sequence[Sequence[Any]]) -> Prepared:
        """The rows as the driver takes them: values converted (datetimes, JSON) and, for a
        multi-row INSERT on SQLite, grouped into statements. Thousands of rows take a few ms,
        so this lets the event loop run every SLICE rows; it needs no connection, so a writer
        can prepare before its turn to write."""
        params: list[tuple[Any, ...]] = []
        for start in range(0, len(rows), SLICE):
            if start:
                await asyncio.sleep(0)
            params += self._converted(rows[start : start + SLICE])
        if self._values is None:
            return Prepared(((self.sql, params),))
        # Whole statements of `size` rows go in one call, the rows left over in another.
        head, group, tail = self._values
        size = self._per_statement
        whole = len(params) - len(params) % size
        calls = []
        if whole:
            statements = []
            every = max(1, SLICE // size)
            for n, at in enumerate(range(0, whole, size)):
                if n and n % every == 0:
                    await asyncio.sleep(0)
                statements.append(_flat(params[at : at + size]))
            calls.append((head + ", ".join([group] * size) + tail, statements))
        if whole < len(params):
            rest = params[whole:]
            calls.append((head + ", ".join([group] * len(rest)) + tail, [_flat(rest)]))
        return Prepared(tuple(calls))

    def _converted(self, rows: Sequence[Sequence[Any]]) -> list[tuple[Any, ...]]:
        """The rows with their values converted, a column at a time."""
        if not self._convert or not rows:
            return [tuple(row) for row in rows]
        columns: list[Sequence[Any]] = list(zip(*rows, strict=True))
        for index, processor, as_is in self._convert:
            column = columns[index]
            kinds = set(map(type, column))
            if as_is is not None and kinds <= as_is:
                continue
            if kinds <= _TIMES:  # a batch's rows mostly share their times: each converted once
                done = {value: processor(value) for value in set(column) if value is not None}
                columns[index] = list(map(done.get, column))
            else:
                columns[index] = [None if value is None else processor(value) for value in column]
        return list(zip(*columns, strict=True))

    @staticmethod
    async def run(conn: AsyncConnection, prepared: Prepared) -> int:
        """Execute prepared rows on `conn`, in its transaction; the rows they matched."""
        count = 0
        for sql, params in prepared.calls:
            if not params:
                continue
            if conn.dialect.name == "sqlite":
                count += await _sqlite_many(conn, sql, params)
            else:
                count += int((await conn.exec_driver_sql(sql, params)).rowcount)
        return count


@dataclass(frozen=True, slots=True)
class Prepared:
    """Statements and their rows of parameters, ready for the driver."""

    calls: tuple[tuple[str, list[tuple[Any, ...]]], ...]


_TIMES = frozenset({datetime, type(None)})


def _flat(rows: Sequence[tuple[Any, ...]]) -> tuple[Any, ...]:
    return tuple(itertools.chain.from_iterable(rows))


async def _sqlite_many(conn: AsyncConnection, sql: str, params: Sequence[tuple[Any, ...]]) -> int:
    """`executemany` on the aiosqlite connection under `conn` (same transaction); rows changed."""
    driver = (await conn.get_raw_connection()).driver_connection
    assert driver is not None
    cursor = await driver.executemany(sql, params)
    try:
        return int(cursor.rowcount)
    finally:
        await cursor.close()


class BulkStatements:
    """`Bulk` statements built on first use for the dialect of the connection at hand."""

    def __init__(self) -> None:
        self._made: dict[tuple[str, str], Bulk] = {}

    def get(
        self,
        key: str,
        conn: AsyncConnection,
        build: Callable[[], ClauseElement],
        names: Sequence[str] | None = None,
    ) -> Bulk:
        """The statement `build` makes, compiled once per dialect (its values in `names` order)."""
        dialect = conn.dialect
        made = self._made.get((dialect.name, key))
        if made is None:
            made = self._made[dialect.name, key] = Bulk(build(), dialect, names)
        return made
