"""Statements compiled once and executed for thousands of rows, below SQLAlchemy's executemany.

SQLAlchemy's executemany prepares every row's parameters through the compiled statement, which
costs more than the database write itself at thousands of rows a second. `Bulk` looks up the
bind processors of the few parameters that need one (datetimes, JSON) once, converts each
distinct time once per batch, and hands the rows to the driver as tuples, on the same connection
and in the same transaction.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any, cast

from sqlalchemy.engine import Dialect
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql import ClauseElement
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.dml import Insert

ROWS_PER_INSERT = 500
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
        self._convert = [
            (index, processor)
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
        if self._convert:
            convert = self._convert
            params = []
            # The rows of a batch mostly share their times: convert each time once.
            times: dict[tuple[int, datetime], Any] = {}
            for row in rows:
                values = list(row)
                for index, processor in convert:
                    value = values[index]
                    if value is None:
                        continue
                    if type(value) is datetime:
                        key = (index, value)
                        if (done := times.get(key)) is None:
                            done = times[key] = processor(value)
                        values[index] = done
                    else:
                        values[index] = processor(value)
                params.append(tuple(values))
        else:
            params = [tuple(row) for row in rows]
        if self._values is None:
            result = await conn.exec_driver_sql(self.sql, params)
            return int(result.rowcount)
        head, group, tail = self._values
        count = 0
        for start in range(0, len(params), self._per_statement):
            chunk = params[start : start + self._per_statement]
            sql = head + ", ".join([group] * len(chunk)) + tail
            flat = tuple(value for row in chunk for value in row)
            count += int((await conn.exec_driver_sql(sql, flat)).rowcount)
        return count


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
