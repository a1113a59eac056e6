"""Alembic environment: runs on a connection handed over by the bot, or opens its own."""

from __future__ import annotations

import asyncio
from typing import Any, Literal

from alembic import context
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine
from sqlmodel import SQLModel
from sqlmodel.sql.sqltypes import AutoString

from bot.db._external import include_name
from bot.db.models import UTCDateTime  # importing the models registers the tables

config = context.config
target_metadata = SQLModel.metadata


def render_item(kind: str, obj: Any, _autogen_context: Any) -> str | Literal[False]:
    """Write plain SQLAlchemy types into new migrations, so they never import the models."""
    if kind == "type" and isinstance(obj, AutoString):
        return "sa.String()"
    if kind == "type" and isinstance(obj, UTCDateTime):
        return "sa.DateTime(timezone=True)"
    return False


def run_on(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
        render_item=render_item,
        include_name=include_name,  # tables APScheduler manages itself are not ours to migrate
    )
    with context.begin_transaction():
        context.run_migrations()


async def run_own_engine() -> None:
    engine = create_async_engine(config.get_main_option("sqlalchemy.url") or "")
    async with engine.begin() as conn:
        await conn.run_sync(run_on)
    await engine.dispose()


connection = config.attributes.get("connection")
if context.is_offline_mode():
    context.configure(url=config.get_main_option("sqlalchemy.url"), target_metadata=target_metadata)
    with context.begin_transaction():
        context.run_migrations()
elif connection is not None:
    run_on(connection)
else:
    asyncio.run(run_own_engine())
