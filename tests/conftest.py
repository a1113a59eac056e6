"""Shared fixtures: a migrated database per test and builders of Telegram objects."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.activity import ActivityLog
from bot.db import create_engine, upgrade
from bot.events import Bus
from bot.registry import Registry

ROOT = Path(__file__).resolve().parent.parent


# Set to a PostgreSQL database (postgresql+asyncpg://...) to run every database test on it too;
# .ci/run does when a PostgreSQL server is on the machine. The database is emptied per test.
POSTGRES_URL = os.environ.get("TIDEPOOL_TEST_POSTGRES_URL")
BACKENDS = ["sqlite", *(["postgresql"] if POSTGRES_URL else [])]


@pytest.fixture(params=BACKENDS)
async def engine(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    if request.param == "postgresql":
        assert POSTGRES_URL is not None
        engine = create_engine(POSTGRES_URL)
        async with engine.begin() as conn:
            await conn.execute(text("DROP SCHEMA public CASCADE"))
            await conn.execute(text("CREATE SCHEMA public"))
    else:
        engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'tidepool.db'}")
    await upgrade(engine)
    yield engine
    await engine.dispose()


@pytest.fixture
async def activity(engine: AsyncEngine) -> AsyncIterator[ActivityLog]:
    log = ActivityLog(engine)
    yield log
    await log.close()


@pytest.fixture
async def registry(engine: AsyncEngine, activity: ActivityLog) -> Registry:
    registry = Registry(engine, activity, Bus())
    await registry.load()
    return registry


def at(minute: int = 0, hour: int = 12, day: int = 2) -> datetime:
    """A fixed moment on 2026-11-<day>, in UTC."""
    return datetime(2026, 11, day, hour, minute, tzinfo=UTC)
