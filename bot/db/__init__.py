"""Database access: engine, sessions, migrations and the tables."""

from bot.db import models
from bot.db.engine import (
    create_engine,
    current_revision,
    insert_for,
    session_factory,
    upgrade,
    writing,
)
from bot.db.models import *  # noqa: F403 (every table and type, re-exported whole)
from bot.db.people import reachable

__all__ = [
    "create_engine",
    "current_revision",
    "insert_for",
    "reachable",
    "session_factory",
    "upgrade",
    "writing",
]
__all__ += models.__all__
