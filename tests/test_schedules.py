"""Schedules: SOP calendar jobs fire, survive restarts, run late within grace, report misses."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import UTC, datetime, time, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import apscheduler.executors.base  # type: ignore[import-untyped]
import apscheduler.schedulers.base  # type: ignore[import-untyped]
import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore  # type: ignore[import-untyped]
from apscheduler.schedulers.asyncio import AsyncIOScheduler  # type: ignore[import-untyped]
from loguru import logger
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlmodel import SQLModel

from bot.clock import Clock, ShiftedClock, SystemClock
from bot.db._external import SCHEDULER_TABLE, include_name
from bot.db.engine import alembic_config
from bot.sop.format import ScheduleTrigger
from bot.sop.schedules import (
    PlannedJob,
    Schedules,
    cron_trigger,
    daily_trigger,
    jobstore_url,
    trigger_for,
)

SHANGHAI = ZoneInfo("Asia/Shanghai")
HOUR = timedelta(hours=1)


def schedule(**keys: Any) -> ScheduleTrigger:
    return ScheduleTrigger.model_validate({"type": "schedule", **keys})


def every(seconds: int) -> Any:
    return trigger_for(schedule(every=f"{seconds}s"), SHANGHAI)


def daily_at_a_distant_hour() -> Any:
    """A daily UTC cron whose fire times are 11-13 hours from now, both ways."""
    hour = (datetime.now(UTC).hour + 12) % 24
    return cron_trigger(f"0 {hour} * * *", ZoneInfo("UTC"))


def last_fire_of(trigger: Any) -> datetime:
    """The latest fire time of a daily trigger that is not in the future."""
    upcoming: datetime = trigger.get_next_fire_time(None, datetime.now(UTC))
    return (upcoming - timedelta(days=1)).astimezone(UTC)


class Calls:
    """What the scheduler told the engine: fires and missed fires."""

    def __init__(self, failing: frozenset[str] = frozenset()) -> None:
        self.fired: list[tuple[str, tuple[str | int, ...]]] = []
        self.missed: list[tuple[str, tuple[str | int, ...], datetime]] = []
        self.failing = failing
        self._told = asyncio.Event()  # set at each fire or missed fire

    async def on_fire(self, job_id: str, args: tuple[str | int, ...]) -> None:
        self.fired.append((job_id, args))
        self._told.set()
        if job_id in self.failing:
            raise RuntimeError(f"{job_id} broke")

    async def on_missed(self, job_id: str, args: tuple[str | int, ...], when: datetime) -> None:
        self.missed.append((job_id, args, when))
        self._told.set()

    async def told(self, count: int, within: float = 2.0) -> None:
        """Wait until `count` fires and missed fires in all have been told (at most `within` s)."""
        async with asyncio.timeout(within):
            while len(self.fired) + len(self.missed) < count:
                self._told.clear()
                await self._told.wait()

    def fires_of(self, job_id: str) -> list[tuple[str | int, ...]]:
        return [args for fired_id, args in self.fired if fired_id == job_id]


async def eventually(condition: Callable[[], bool], within: float = 15.0) -> None:
    deadline = asyncio.get_running_loop().time() + within
    while not condition():
        if asyncio.get_running_loop().time() > deadline:
            pytest.fail(f"not true within {within}s")
        await asyncio.sleep(0.05)


@pytest.fixture
def database_url(engine: AsyncEngine) -> str:
    """The migrated app database of this test (SQLite in WAL mode, or PostgreSQL)."""
    return engine.url.render_as_string(hide_password=False)


@pytest.fixture
async def make_schedules(database_url: str) -> AsyncIterator[Callable[[Calls], Schedules]]:
    """Start a Schedules on the test database; every one is shut down at the end."""
    made: list[Schedules] = []

    def make(calls: Calls, clock: Clock | None = None) -> Schedules:
        schedules = Schedules(database_url, clock or SystemClock(), calls.on_fire, calls.on_missed)
        schedules.start()
        made.append(schedules)
        return schedules

    yield make
    for schedules in made:
        await schedules.shutdown()


async def rewind(database_url: str, job_id: str, to: datetime) -> None:
    """Move a stored job's next fire time into the past, as if the bot had been down since."""
    store = SQLAlchemyJobStore(url=jobstore_url(database_url), tablename=SCHEDULER_TABLE)
    # Paused from the start, an AsyncIOScheduler never looks for due jobs. (A paused
    # BackgroundScheduler does, once, as it shuts down: it would advance the time again.)
    scheduler = AsyncIOScheduler(jobstores={"default": store}, timezone=UTC)
    scheduler.start(paused=True)
    try:
        scheduler.modify_job(job_id, next_run_time=to)
    finally:
        scheduler.shutdown(wait=False)
        await asyncio.sleep(0)


@pytest.fixture
def log_records() -> Iterator[list[Any]]:
    records: list[Any] = []
    sink = logger.add(lambda message: records.append(message.record), level="WARNING")
    yield records
    logger.remove(sink)


# --- Firing -------------------------------------------------------------------------------------


async def test_a_job_fires_with_its_id_and_args(make_schedules: Any) -> None:
    calls = Calls()
    schedules = make_schedules(calls)
    schedules.sync(
        [PlannedJob("sop:welcome:group:-100123:0", every(1), ("welcome", -100123), HOUR)]
    )
    await eventually(lambda: len(calls.fired) >= 2)
    assert calls.fired[0] == ("sop:welcome:group:-100123:0", ("welcome", -100123))
    assert calls.missed == []


async def test_a_failing_fire_is_logged_and_other_jobs_keep_firing(
    make_schedules: Any, log_records: list[Any]
) -> None:
    calls = Calls(failing=frozenset({"sop:bad"}))
    schedules = make_schedules(calls)
    schedules.sync(
        [
            PlannedJob("sop:bad", every(1), ("bad",), HOUR),
            PlannedJob("sop:good", every(1), ("good",), HOUR),
        ]
    )
    await eventually(
        lambda: len(calls.fires_of("sop:bad")) >= 2 and len(calls.fires_of("sop:good")) >= 2
    )
    failures = [
        record
        for record in log_records
        if record["extra"].get("job_id") == "sop:bad" and record["level"].name == "ERROR"
    ]
    assert failures, "the failure of on_fire is logged with the job's id"
    assert "sop:bad broke" in str(failures[0]["exception"].value)
    assert schedules.job_ids() == ["sop:bad", "sop:good"]


# --- Persistence and sync -----------------------------------------------------------------------


async def test_jobs_survive_a_restart(make_schedules: Any) -> None:
    first = make_schedules(Calls())
    first.sync(
        [
            PlannedJob("sop:daily:0", cron_trigger("30 9 * * *", SHANGHAI), ("daily",), HOUR),
            PlannedJob("sop:hourly:0", every(3600), ("hourly", 7), HOUR),
        ]
    )
    next_times = {job_id: first.next_fire_time(job_id) for job_id in first.job_ids()}
    await first.shutdown()

    second = make_schedules(Calls())
    assert second.job_ids() == ["sop:daily:0", "sop:hourly:0"]
    assert {job_id: second.next_fire_time(job_id) for job_id in second.job_ids()} == next_times
    assert next_times["sop:daily:0"] is not None
    assert next_times["sop:daily:0"].astimezone(UTC).time() == time(1, 30)


async def test_sync_changes_only_what_changed(make_schedules: Any) -> None:
    calls = Calls()
    schedules = make_schedules(calls)
    schedules.sync([PlannedJob("lottery:draw", every(3600), ("draw",), HOUR)], prefix="lottery:")
    schedules.sync(
        [
            PlannedJob("sop:kept", every(3600), ("kept",), HOUR),
            PlannedJob("sop:retimed", every(3600), ("old",), HOUR),
            PlannedJob("sop:regraced", every(3600), ("regraced",), HOUR),
            PlannedJob("sop:rezoned", cron_trigger("0 9 * * *", SHANGHAI), (), HOUR),
            PlannedJob("sop:stale", every(3600), ("stale",), HOUR),
        ]
    )
    before = {job_id: schedules.next_fire_time(job_id) for job_id in schedules.job_ids()}
    await asyncio.sleep(0.05)  # triggers made from now on start later

    # The engine plans afresh after a reload: new trigger objects, equal where nothing changed.
    schedules.sync(
        [
            PlannedJob("sop:kept", every(3600), ("kept",), HOUR),
            PlannedJob("sop:retimed", every(1), ("new",), HOUR),
            PlannedJob("sop:regraced", every(3600), ("regraced",), 2 * HOUR),
            PlannedJob("sop:rezoned", cron_trigger("0 9 * * *", ZoneInfo("UTC")), (), HOUR),
            PlannedJob("sop:added", every(3600), ("added",), HOUR),
        ]
    )
    after = {job_id: schedules.next_fire_time(job_id) for job_id in schedules.job_ids()}

    assert sorted(after) == [
        "lottery:draw",
        "sop:added",
        "sop:kept",
        "sop:regraced",
        "sop:retimed",
        "sop:rezoned",
    ]
    assert after["sop:kept"] == before["sop:kept"], "an unchanged job keeps its next time"
    assert after["lottery:draw"] == before["lottery:draw"], "other prefixes are not touched"
    assert after["sop:regraced"] != before["sop:regraced"], "a new grace replaces the job"
    rezoned = after["sop:rezoned"]
    assert rezoned is not None and rezoned.time() == time(9, 0)
    await eventually(lambda: ("sop:retimed", ("new",)) in calls.fired)
    assert ("sop:retimed", ("old",)) not in calls.fired


async def test_sync_refuses_ids_outside_its_prefix_and_twice_planned_ids(
    make_schedules: Any,
) -> None:
    schedules = make_schedules(Calls())
    with pytest.raises(ValueError, match="does not start with"):
        schedules.sync([PlannedJob("lottery:draw", every(60), (), HOUR)])
    with pytest.raises(ValueError, match="planned twice"):
        schedules.sync([PlannedJob("sop:a", every(60), (), HOUR)] * 2)
    assert schedules.job_ids() == []


# --- Times that passed while the bot was down ---------------------------------------------------


async def test_missed_times_within_grace_run_once_late(
    make_schedules: Any, database_url: str
) -> None:
    plan = [PlannedJob("sop:daily", daily_at_a_distant_hour(), ("daily", 5), timedelta(days=2))]
    first = make_schedules(Calls())
    first.sync(plan)
    await first.shutdown()
    await rewind(
        database_url, "sop:daily", datetime.now(UTC) - timedelta(days=3)
    )  # 3 or 4 times due

    calls = Calls()
    second = make_schedules(calls)
    second.sync(
        [PlannedJob("sop:daily", daily_at_a_distant_hour(), ("daily", 5), timedelta(days=2))]
    )
    await eventually(lambda: bool(calls.fired))
    next_time = second.next_fire_time("sop:daily")
    assert next_time is not None and next_time > datetime.now(UTC)
    assert calls.fired == [("sop:daily", ("daily", 5))], "missed times coalesce into one run"
    assert calls.missed == []


async def test_a_missed_time_beyond_grace_is_reported_not_run(
    make_schedules: Any, database_url: str, log_records: list[Any]
) -> None:
    first = make_schedules(Calls())
    first.sync([PlannedJob("sop:daily", daily_at_a_distant_hour(), ("daily", 5), HOUR)])
    await first.shutdown()
    await rewind(database_url, "sop:daily", datetime.now(UTC) - timedelta(days=3))

    calls = Calls()
    second = make_schedules(calls)
    trigger = daily_at_a_distant_hour()
    second.sync([PlannedJob("sop:daily", trigger, ("daily", 5), HOUR)])
    await eventually(lambda: bool(calls.missed))
    assert calls.missed == [("sop:daily", ("daily", 5), last_fire_of(trigger))]
    assert calls.fired == []
    assert second.job_ids() == ["sop:daily"], "the job stays for its next time"
    assert any(
        record["extra"].get("job_id") == "sop:daily" and "missed" in record["message"]
        for record in log_records
    )


async def test_a_one_off_time_that_passed_while_down_runs_late_once(make_schedules: Any) -> None:
    at = datetime.now(UTC) + timedelta(seconds=1)
    plan = [PlannedJob("sop:launch", trigger_for(schedule(at=at), SHANGHAI), ("launch",), HOUR)]
    first = make_schedules(Calls())
    first.sync(plan)
    await first.shutdown()
    await asyncio.sleep(1.5)  # down while the time passes

    calls = Calls()
    second = make_schedules(calls)
    second.sync(plan)
    await eventually(lambda: bool(calls.fired))
    assert calls.fired == [("sop:launch", ("launch",))]
    await eventually(lambda: second.job_ids() == [])
    await second.shutdown()

    third = make_schedules(calls)
    third.sync(plan)
    assert third.job_ids() == [], "a one-off that ran is not planned again"
    await asyncio.sleep(0.2)
    assert calls.fired == [("sop:launch", ("launch",))]


async def test_a_one_off_time_missed_beyond_grace_is_reported(make_schedules: Any) -> None:
    at = datetime.now(UTC) + timedelta(seconds=1)
    trigger = trigger_for(schedule(at=at), SHANGHAI)
    plan = [PlannedJob("sop:launch", trigger, ("launch", 3), timedelta(seconds=1))]
    first = make_schedules(Calls())
    first.sync(plan)
    await first.shutdown()
    await asyncio.sleep(3)  # down for longer than the grace

    calls = Calls()
    second = make_schedules(calls)
    second.sync(plan)
    await eventually(lambda: bool(calls.missed))
    assert calls.missed == [("sop:launch", ("launch", 3), at)]
    assert calls.fired == []


async def test_a_one_off_time_already_past_is_not_scheduled(make_schedules: Any) -> None:
    calls = Calls()
    schedules = make_schedules(calls)
    past = trigger_for(schedule(at="2020-01-01T09:00:00"), SHANGHAI)
    schedules.sync([PlannedJob("sop:old", past, ("old",), timedelta(days=10_000))])
    assert schedules.job_ids() == []
    await asyncio.sleep(0.2)
    assert calls.fired == [] and calls.missed == []


# --- A moved clock ------------------------------------------------------------------------------


class MovableClock(ShiftedClock):
    """The shifted clock of a test clock file, moved as an end-to-end test moves it."""

    def move_to(self, moment: datetime) -> None:
        """Shift the clock so that it reads `moment` (plus the little time since)."""
        shift = (moment - datetime.now(UTC)).total_seconds()
        self.path.write_text(f"{shift}\n")


@pytest.fixture
def clock(tmp_path: Path) -> MovableClock:
    return MovableClock(tmp_path / "clock")


def daily_hours_ahead(hours: int) -> tuple[Any, datetime]:
    """A daily UTC cron `hours` from now (to the minute), and its first fire time."""
    at = (datetime.now(UTC) + timedelta(hours=hours)).replace(second=0, microsecond=0)
    return cron_trigger(f"{at.minute} {at.hour} * * *", ZoneInfo("UTC")), at


async def test_a_job_fires_when_the_clock_is_moved_past_its_time(
    make_schedules: Any, clock: MovableClock
) -> None:
    calls = Calls()
    schedules = make_schedules(calls, clock)
    trigger, at = daily_hours_ahead(3)
    schedules.sync([PlannedJob("sop:tip", trigger, ("tip", -100123), HOUR)])
    assert schedules.next_fire_time("sop:tip") == at

    clock.move_to(at + timedelta(minutes=1))
    await calls.told(1)  # the shifted clock is read every 0.2 s: no real wait for 3 hours
    assert calls.fired == [("sop:tip", ("tip", -100123))]
    assert calls.missed == []
    assert schedules.next_fire_time("sop:tip") == at + timedelta(days=1)


async def test_jobs_a_moved_clock_passes_fire_in_the_order_of_their_times(
    make_schedules: Any, clock: MovableClock
) -> None:
    calls = Calls()
    schedules = make_schedules(calls, clock)
    later, later_at = daily_hours_ahead(3)
    sooner, _ = daily_hours_ahead(2)
    schedules.sync(
        [
            PlannedJob("sop:a", later, ("later",), 3 * HOUR),
            PlannedJob("sop:b", sooner, ("sooner",), 3 * HOUR),
        ]
    )
    clock.move_to(later_at + timedelta(minutes=1))
    await calls.told(2)
    assert calls.fired == [("sop:b", ("sooner",)), ("sop:a", ("later",))]


async def test_a_clock_moved_days_on_runs_a_daily_job_once_late(
    make_schedules: Any, clock: MovableClock
) -> None:
    calls = Calls()
    schedules = make_schedules(calls, clock)
    trigger, at = daily_hours_ahead(3)
    schedules.sync([PlannedJob("sop:tip", trigger, ("tip",), timedelta(days=3))])

    clock.move_to(at + timedelta(days=2, hours=1))  # three times passed, all within the grace
    await calls.told(1)
    assert calls.fired == [("sop:tip", ("tip",))], "the times passed coalesce into one run"
    assert calls.missed == []
    assert schedules.next_fire_time("sop:tip") == at + timedelta(days=3)


async def test_a_time_the_clock_jumps_far_past_is_reported_missed(
    make_schedules: Any, clock: MovableClock
) -> None:
    calls = Calls()
    schedules = make_schedules(calls, clock)
    trigger, at = daily_hours_ahead(3)
    schedules.sync([PlannedJob("sop:tip", trigger, ("tip", 5), HOUR)])

    clock.move_to(at + 2 * HOUR)  # an hour beyond the grace
    await calls.told(1)
    assert calls.missed == [("sop:tip", ("tip", 5), at)]
    assert calls.fired == []
    assert schedules.job_ids() == ["sop:tip"], "the job stays for its next time"
    assert schedules.next_fire_time("sop:tip") == at + timedelta(days=1)


async def test_only_a_moved_clock_changes_how_apscheduler_reads_the_time(
    make_schedules: Any, clock: MovableClock
) -> None:
    modules = (apscheduler.schedulers.base, apscheduler.executors.base)
    on_time = make_schedules(Calls())
    assert all(module.datetime is datetime for module in modules), "the system clock: as ever"
    await on_time.shutdown()

    moved = make_schedules(Calls(), clock)
    assert all(module.datetime is not datetime for module in modules)
    with pytest.raises(RuntimeError, match="another Schedules"):
        make_schedules(Calls(), clock)
    await moved.shutdown()
    assert all(module.datetime is datetime for module in modules), "put back at shutdown"


# --- URLs and triggers --------------------------------------------------------------------------


def test_jobstore_url_is_the_app_database_or_a_sqlite_file_beside_it() -> None:
    assert (
        jobstore_url("sqlite+aiosqlite:///data/tidepool.db")
        == "sqlite:///data/tidepool.schedules.db"
    )
    assert jobstore_url("sqlite+aiosqlite:////srv/tp.db") == "sqlite:////srv/tp.schedules.db"
    assert jobstore_url("sqlite+aiosqlite:///tp") == "sqlite:///tp.schedules"
    assert (
        jobstore_url("postgresql+asyncpg://tp:p%40ss@db:5432/tidepool?application_name=tp")
        == "postgresql+psycopg://tp:p%40ss@db:5432/tidepool?application_name=tp"
    )
    with pytest.raises(ValueError, match="in-memory"):
        jobstore_url("sqlite+aiosqlite:///:memory:")
    with pytest.raises(ValueError, match="in-memory"):
        jobstore_url("sqlite+aiosqlite://")
    with pytest.raises(ValueError, match="SQLite and PostgreSQL"):
        jobstore_url("mysql+aiomysql://tp@db/tidepool")


def test_triggers_fire_in_their_timezone() -> None:
    now = datetime(2026, 11, 2, 12, 0, tzinfo=UTC)
    cron = trigger_for(schedule(cron="0 9 * * *"), SHANGHAI)
    assert cron.get_next_fire_time(None, now) == datetime(2026, 11, 3, 1, 0, tzinfo=UTC)
    own_zone = trigger_for(schedule(cron="0 9 * * *", timezone="Europe/Berlin"), SHANGHAI)
    assert own_zone.get_next_fire_time(None, now) == datetime(2026, 11, 3, 8, 0, tzinfo=UTC)

    naive = trigger_for(schedule(at="2026-11-05T20:00:00"), SHANGHAI)
    assert naive.get_next_fire_time(None, now) == datetime(2026, 11, 5, 12, 0, tzinfo=UTC)
    aware = trigger_for(schedule(at="2026-11-05T20:00:00+00:00"), SHANGHAI)
    assert aware.get_next_fire_time(None, now) == datetime(2026, 11, 5, 20, 0, tzinfo=UTC)

    interval = trigger_for(schedule(every="90m"), SHANGHAI)
    assert interval.interval == timedelta(minutes=90)

    daily = daily_trigger(time(21, 30), SHANGHAI)
    assert daily.get_next_fire_time(None, now) == datetime(2026, 11, 2, 13, 30, tzinfo=UTC)


@pytest.mark.parametrize(
    ("weekdays", "fire_days"),
    [
        ("1", ["Mon"]),
        ("0", ["Sun"]),
        ("7", ["Sun"]),
        ("1-5", ["Mon", "Tue", "Wed", "Thu", "Fri"]),
        ("0,6", ["Sat", "Sun"]),
        ("*/2", ["Sun", "Tue", "Thu", "Sat"]),
        ("mon-fri", ["Mon", "Tue", "Wed", "Thu", "Fri"]),
        ("sat,sun", ["Sat", "Sun"]),
    ],
)
def test_cron_weekdays_are_read_as_crontab_reads_them(weekdays: str, fire_days: list[str]) -> None:
    trigger = cron_trigger(f"0 9 * * {weekdays}", ZoneInfo("UTC"))
    when = datetime(2026, 11, 1, 0, 0, tzinfo=UTC)  # a Sunday
    days = set()
    for _ in range(14):
        when = trigger.get_next_fire_time(None, when + timedelta(seconds=1))
        days.add(when.strftime("%a"))
    assert sorted(days) == sorted(fire_days)


def test_a_cron_with_day_and_weekday_fires_on_either_like_crontab() -> None:
    trigger = cron_trigger("0 9 13 * 5", ZoneInfo("UTC"))  # the 13th, and every Friday
    when = datetime(2026, 11, 1, tzinfo=UTC)
    fires = []
    for _ in range(4):
        when = trigger.get_next_fire_time(None, when + timedelta(seconds=1))
        fires.append(when.date().isoformat())
    assert fires == ["2026-11-06", "2026-11-13", "2026-11-20", "2026-11-27"]
    trigger = cron_trigger("0 9 1 * 1", ZoneInfo("UTC"))  # the 1st (a Sunday), and Mondays
    assert trigger.get_next_fire_time(None, datetime(2026, 10, 31, tzinfo=UTC)) == datetime(
        2026, 11, 1, 9, 0, tzinfo=UTC
    )


def test_bad_cron_weekdays_are_refused() -> None:
    for weekdays in ("8", "5-2", "*-3", "someday"):
        with pytest.raises(ValueError, match="weekday"):
            cron_trigger(f"0 9 * * {weekdays}", ZoneInfo("UTC"))
    with pytest.raises(ValueError, match="5 fields"):
        cron_trigger("0 9 * *", ZoneInfo("UTC"))


# --- The scheduler's table and migrations -------------------------------------------------------


async def test_the_scheduler_table_is_no_migration_difference(
    make_schedules: Any, engine: AsyncEngine
) -> None:
    make_schedules(Calls()).sync([PlannedJob("sop:a", every(3600), ("a",), HOUR)])

    def differences(connection: Any, opts: dict[str, Any]) -> list[Any]:
        context = MigrationContext.configure(connection, opts={"compare_type": True, **opts})
        return list(compare_metadata(context, SQLModel.metadata))

    def check_through_env(connection: Any) -> None:
        config = alembic_config()
        config.attributes["connection"] = connection
        command.check(config)  # autogenerate through env.py; raises on any difference

    async with engine.connect() as conn:
        unfiltered = await conn.run_sync(differences, {})
        # SQLite keeps the jobs in a file of its own; PostgreSQL in the app's database.
        in_app_database = engine.dialect.name != "sqlite"
        assert any(SCHEDULER_TABLE in str(d) for d in unfiltered) is in_app_database
        assert await conn.run_sync(differences, {"include_name": include_name}) == []
        await conn.run_sync(check_through_env)
