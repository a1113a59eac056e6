"""Tables that libraries create in our database themselves, left out of migrations."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from alembic.runtime.environment import NameFilterParentNames, NameFilterType

# APScheduler's SQLAlchemyJobStore creates and manages this table (bot.sop.schedules).
SCHEDULER_TABLE = "apscheduler_jobs"
EXTERNAL_TABLES = frozenset({SCHEDULER_TABLE})


def include_name(
    name: str | None, type_: NameFilterType, _parent_names: NameFilterParentNames
) -> bool:
    """Alembic's `include_name` hook: leave the tables of other libraries out of comparisons."""
    return not (type_ == "table" and name in EXTERNAL_TABLES)
