"""A condition on pairs of columns, such as (group, member), that the database answers from an
index: many groups' rows in one statement instead of a statement per group."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import ColumnElement, and_, tuple_


def pairs_in(
    first: ColumnElement[Any], second: ColumnElement[Any], pairs: Sequence[tuple[Any, Any]]
) -> ColumnElement[bool]:
    """`(first, second) IN pairs`, led by each column's own IN (...): SQLite searches a row
    value IN list by scanning the table, but finds `first IN … AND second IN …` by the index
    on (first, second); the row value then keeps only the pairs asked for."""
    return and_(
        first.in_(sorted({a for a, _b in pairs})),
        second.in_(sorted({b for _a, b in pairs})),
        tuple_(first, second).in_(list(pairs)),
    )
