"""Migrations: they build exactly the tables the models describe, and upgrades keep data."""

from __future__ import annotations

from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlmodel import SQLModel

from bot.db import current_revision, upgrade
from bot.db._external import include_name


async def test_models_match_migrations(engine: AsyncEngine) -> None:
    def diff(connection: Any) -> list[Any]:
        context = MigrationContext.configure(
            connection, opts={"compare_type": True, "include_name": include_name}
        )
        return list(compare_metadata(context, SQLModel.metadata))

    async with engine.connect() as conn:
        differences = await conn.run_sync(diff)
    assert differences == [], "a model changed without a migration: tidepool db revision '...'"


async def test_upgrade_is_idempotent_and_keeps_rows(engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        await conn.execute(
            text(
                "INSERT INTO groups (id, title, type, status, tags, missing_rights, first_seen_at,"
                " updated_at) VALUES (-1, 't', 'group', 'active', '[]', '[]', '2026-01-01',"
                " '2026-01-01')"
            )
        )
    await upgrade(engine)
    assert await current_revision(engine) == "0013"
    async with engine.connect() as conn:
        assert (await conn.execute(text("SELECT count(*) FROM groups"))).scalar_one() == 1


async def test_sqlite_runs_in_wal_mode(engine: AsyncEngine) -> None:
    if engine.dialect.name != "sqlite":
        pytest.skip("SQLite only")
    async with engine.connect() as conn:
        assert (await conn.execute(text("PRAGMA journal_mode"))).scalar_one() == "wal"
        assert (await conn.execute(text("PRAGMA busy_timeout"))).scalar_one() == 10000
