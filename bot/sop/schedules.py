"""Calendar jobs for SOP schedule triggers, kept in the database so they survive restarts.

One APScheduler 3 `AsyncIOScheduler` with one `SQLAlchemyJobStore` (table `apscheduler_jobs`)
in the app's PostgreSQL database, or in a SQLite file beside the app's (see `jobstore_url`).
The SOP engine plans the jobs it wants (`PlannedJob`) and hands them to `Schedules.sync()`,
which changes the store only where the plan differs: a job that did not change keeps its stored
next fire time, so a time that passed while the bot was down is still seen on start.
APScheduler then runs it late (within its grace, several missed times coalesced into one run)
or reports it missed, and the engine hears either through `on_fire` or `on_missed`.

Jobs fall due by the bot's clock: a moved test clock is followed (see `_clocked_scheduler`).

Jobs stored in a database reference a module-level function by its textual reference and carry
only primitive arguments: every job calls `_fire(job_id, *args)`, which hands over to the running
`Schedules`. `start()` then `sync()` in the same synchronous stretch: APScheduler looks at the
store only on the loop's next turn, so it sees the synced jobs.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from pathlib import PurePath
from typing import Any
from zoneinfo import ZoneInfo

from apscheduler.events import (  # type: ignore[import-untyped]
    EVENT_JOB_ERROR,
    EVENT_JOB_EXECUTED,
    EVENT_JOB_MISSED,
    EVENT_SCHEDULER_SHUTDOWN,
    JobExecutionEvent,
)
from apscheduler.executors.asyncio import AsyncIOExecutor  # type: ignore[import-untyped]
from apscheduler.job import Job  # type: ignore[import-untyped]
from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore  # type: ignore[import-untyped]
from apscheduler.triggers.base import BaseTrigger  # type: ignore[import-untyped]
from apscheduler.triggers.combining import OrTrigger  # type: ignore[import-untyped]
from apscheduler.triggers.cron import CronTrigger  # type: ignore[import-untyped]
from apscheduler.triggers.date import DateTrigger  # type: ignore[import-untyped]
from apscheduler.triggers.interval import IntervalTrigger  # type: ignore[import-untyped]
from loguru import logger
from sqlalchemy.engine import make_url

from bot.clock import Clock
from bot.db._external import SCHEDULER_TABLE
from bot.sop._clocked_scheduler import scheduler_on
from bot.sop.format import ScheduleTrigger

Args = tuple[str | int, ...]
OnFire = Callable[[str, Args], Awaitable[None]]
OnMissed = Callable[[str, Args, datetime], Awaitable[None]]

FIRE_REF = "bot.sop.schedules:_fire"
SQLITE_LOCK_TIMEOUT = 10  # seconds a job store write waits for the app's own writes (WAL mode)

# --- URLs and triggers --------------------------------------------------------------------------


def jobstore_url(database_url: str) -> str:
    """The synchronous URL of APScheduler's job store for the app's async DATABASE_URL.

    PostgreSQL: the same database. SQLite: a file of its own beside the database
    (`tidepool.db` → `tidepool.schedules.db`). APScheduler reads and writes its store
    synchronously on the event loop; on the app's own file it would wait for a write lock that
    an async transaction holds, and that transaction cannot finish while the loop waits.
    """
    url = make_url(database_url)
    backend = url.get_backend_name()
    if backend == "sqlite":
        if url.database in (None, "", ":memory:") or url.database.startswith("file:"):
            raise ValueError(
                "scheduled SOPs need a database file, not an in-memory SQLite database: set"
                " DATABASE_URL to sqlite+aiosqlite:///path/to/tidepool.db"
            )
        path = PurePath(url.database)
        url = url.set(
            drivername="sqlite", database=str(path.with_name(f"{path.stem}.schedules{path.suffix}"))
        )
    elif backend == "postgresql":
        url = url.set(drivername="postgresql+psycopg")
    else:
        raise ValueError(f"scheduled SOPs support SQLite and PostgreSQL, not {backend!r}")
    return url.render_as_string(hide_password=False)


def trigger_for(trigger: ScheduleTrigger, default_timezone: ZoneInfo) -> BaseTrigger:
    """The APScheduler trigger of an SOP `schedule` trigger, in its timezone or the default."""
    zone = ZoneInfo(trigger.timezone) if trigger.timezone else default_timezone
    if trigger.cron is not None:
        return cron_trigger(trigger.cron, zone)
    if trigger.at is not None:
        at = trigger.at if trigger.at.tzinfo is not None else trigger.at.replace(tzinfo=zone)
        return DateTrigger(run_date=at, timezone=zone)
    if trigger.every is not None:
        return IntervalTrigger(seconds=int(trigger.every.total_seconds()), timezone=zone)
    raise ValueError("a schedule trigger needs one of 'cron', 'at' or 'every'")


def daily_trigger(at: time, timezone: ZoneInfo) -> CronTrigger:
    """Once a day at `at` (wall-clock time in `timezone`)."""
    return CronTrigger(hour=at.hour, minute=at.minute, second=at.second, timezone=timezone)


_CRON_WEEKDAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")  # crontab: 0 (and 7) is Sunday
_ISO_WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")  # APScheduler 3: 0 is Monday
_WEEKDAY_PART = re.compile(
    r"(?P<first>\*|\d+|[a-z]{3})(?:-(?P<last>\d+|[a-z]{3}))?(?:/(?P<step>\d+))?"
)


def cron_trigger(expression: str, timezone: ZoneInfo) -> BaseTrigger:
    """A 5-field crontab line (`minute hour day month weekday`) read as crontab reads it.

    APScheduler 3 differs from crontab in two ways this corrects: it numbers weekdays from
    Monday = 0 (crontab: Sunday = 0 or 7), and when both the day of the month and the weekday
    are restricted it needs both to match (crontab: either).
    """
    fields = expression.split()
    if len(fields) != 5:
        raise ValueError(f"a cron expression has 5 fields, {expression!r} has {len(fields)}")
    minute, hour, day, month, weekday = fields
    weekday = _apscheduler_weekdays(weekday)
    if not day.startswith("*") and not weekday.startswith("*"):
        return OrTrigger(
            [
                CronTrigger.from_crontab(f"{minute} {hour} {day} {month} *", timezone=timezone),
                CronTrigger.from_crontab(f"{minute} {hour} * {month} {weekday}", timezone=timezone),
            ]
        )
    return CronTrigger.from_crontab(f"{minute} {hour} {day} {month} {weekday}", timezone=timezone)


def _apscheduler_weekdays(field: str) -> str:
    """A crontab weekday field as APScheduler 3 reads it: `1-5` → `mon,tue,wed,thu,fri`."""
    if field == "*":
        return field
    days: set[str] = set()
    for part in field.lower().split(","):
        match = _WEEKDAY_PART.fullmatch(part)
        if match is None:
            raise ValueError(f"{field!r} is not a cron weekday field")
        first, last, step = match["first"], match["last"], int(match["step"] or 1)
        if first.isalpha() or (last or "").isalpha():
            # Names mean the same days everywhere; a range of names runs Monday to Sunday.
            numbers = [_weekday_number(first, _ISO_WEEKDAYS, field)]
            numbers.append(_weekday_number(last, _ISO_WEEKDAYS, field) if last else numbers[0])
            order: tuple[str, ...] = _ISO_WEEKDAYS
        else:
            if first == "*" and last is not None:
                raise ValueError(f"{field!r} is not a cron weekday field")
            numbers = [0, 6] if first == "*" else [int(first), int(last or first)]
            if first != "*" and last is None and match["step"]:
                numbers[1] = 6  # `1/2`: from Monday, every other day up to Saturday
            order = (*_CRON_WEEKDAYS, "sun")
        start, end = numbers
        if end < start or end >= len(order) or step < 1:
            raise ValueError(f"{field!r} is not a cron weekday field")
        days.update(order[number] for number in range(start, end + 1, step))
    return ",".join(day for day in _ISO_WEEKDAYS if day in days)


def _weekday_number(name: str, order: tuple[str, ...], field: str) -> int:
    if name not in order:
        raise ValueError(f"{field!r} is not a cron weekday field")
    return order.index(name)


# --- Jobs ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PlannedJob:
    """A job the SOP engine wants in the store: an explicit id, when, and primitive arguments."""

    id: str
    trigger: BaseTrigger
    args: Args
    misfire_grace: timedelta


def _grace_seconds(grace: timedelta) -> int:
    return max(1, int(grace.total_seconds()))


def _trigger_key(trigger: BaseTrigger) -> tuple[Any, ...]:
    """What makes two triggers fire at the same times (an interval's phase does not count)."""
    if isinstance(trigger, DateTrigger):
        return ("date", trigger.run_date)
    if isinstance(trigger, OrTrigger):
        return ("or", *(_trigger_key(child) for child in trigger.triggers))
    return (type(trigger).__name__, str(trigger), str(getattr(trigger, "timezone", None)))


def _unchanged(job: Job, planned: PlannedJob) -> bool:
    return bool(
        job.func_ref == FIRE_REF
        and tuple(job.args) == (planned.id, *planned.args)
        and job.misfire_grace_time == _grace_seconds(planned.misfire_grace)
        and job.coalesce
        and job.max_instances == 1
        and _trigger_key(job.trigger) == _trigger_key(planned.trigger)
    )


# The Schedules whose scheduler runs now: stored jobs reach it through this, never by reference.
_running: Schedules | None = None


async def _fire(job_id: str, *args: str | int) -> None:
    """What every stored job calls: hand the fire to the running Schedules' `on_fire`."""
    schedules = _running
    log = logger.bind(job_id=job_id)
    if schedules is None:
        log.warning("Schedule {} fired with no scheduler running; ignored", job_id)
        return
    try:
        await schedules._on_fire(job_id, args)
    except Exception:
        log.exception("Schedule {} failed; its next times stay scheduled", job_id)


class _Executor(AsyncIOExecutor):  # type: ignore[misc]
    """APScheduler's asyncio executor, noting each submitted job's arguments.

    A missed-run event carries only the job's id, and a one-off job is already gone from the
    store when it is reported, so its arguments for `on_missed` come from here.
    """

    def __init__(self) -> None:
        super().__init__()
        self.submitted_args: dict[str, Args] = {}

    def _do_submit_job(self, job: Job, run_times: list[datetime]) -> None:
        self.submitted_args[job.id] = tuple(job.args[1:])
        super()._do_submit_job(job, run_times)

    def in_hand(self) -> set[asyncio.Future[Any]]:
        """Submitted jobs not finished yet: fires, and checks that end in a missed-run event."""
        return {future for future in self._pending_futures if not future.done()}


class Schedules:
    """Persistent calendar jobs: `sync()` the planned ones, hear each fire or missed fire.

    Jobs fall due by `clock`: a moved clock (tests, the sandbox) is followed within its
    max_sleep, and the times it jumps over are run late or reported missed as after downtime.
    """

    def __init__(
        self, database_url: str, clock: Clock, on_fire: OnFire, on_missed: OnMissed
    ) -> None:
        url = jobstore_url(database_url)
        options: dict[str, Any] = {}
        if make_url(url).get_backend_name() == "sqlite":
            options["connect_args"] = {"timeout": SQLITE_LOCK_TIMEOUT}
        else:
            options["pool_pre_ping"] = True
        self._store = SQLAlchemyJobStore(url=url, tablename=SCHEDULER_TABLE, engine_options=options)
        self._executor = _Executor()
        self._clock = clock
        self._scheduler = scheduler_on(
            clock,
            jobstores={"default": self._store},
            executors={"default": self._executor},
            job_defaults={"coalesce": True, "max_instances": 1},
            timezone=UTC,
        )
        self._scheduler.add_listener(
            self._on_event, EVENT_JOB_MISSED | EVENT_JOB_EXECUTED | EVENT_JOB_ERROR
        )
        self._on_fire = on_fire
        self._on_missed = on_missed
        self._reporting: set[asyncio.Task[None]] = set()
        self._started = False
        self._loop: asyncio.AbstractEventLoop | None = None

    def start(self) -> None:
        """Open the job store and begin firing; call inside the running event loop."""
        global _running
        loop = asyncio.get_running_loop()  # a clear RuntimeError outside one
        if self._started:
            raise RuntimeError("Schedules already started")
        if _running is not None and _running._loop is not None and not _running._loop.is_closed():
            raise RuntimeError("another Schedules is running; shut it down first")
        self._scheduler.start()
        self._loop = loop
        self._started = True
        _running = self

    def sync(self, planned: list[PlannedJob], prefix: str = "sop:") -> None:
        """Make the jobs whose ids start with `prefix` exactly `planned`, touching only changes.

        New jobs are added, changed ones replaced (their next time computed afresh), unchanged
        ones left as stored, and the others with the prefix removed. A one-off time that has
        already passed is not added: it either ran before, or was never to run.
        """
        self._require_started()
        wanted: dict[str, PlannedJob] = {}
        for job in planned:
            if not job.id.startswith(prefix):
                raise ValueError(f"job id {job.id!r} does not start with {prefix!r}")
            if job.id in wanted:
                raise ValueError(f"job id {job.id!r} is planned twice")
            wanted[job.id] = job
        stored = {job.id: job for job in self._scheduler.get_jobs() if job.id.startswith(prefix)}
        # Paused while the jobs change, the scheduler looks at its store once when they have,
        # not once per job added (hundreds of groups' jobs, each look a query of the store).
        self._scheduler.pause()
        try:
            added, replaced, removed = self._apply(wanted, stored)
        finally:
            self._scheduler.resume()
        if added or replaced or removed:
            logger.info(
                "Schedules {}*: {} added, {} replaced, {} removed, {} kept",
                prefix,
                added,
                replaced,
                removed,
                len(wanted) - added - replaced,
            )

    def _apply(self, wanted: dict[str, PlannedJob], stored: dict[str, Job]) -> tuple[int, int, int]:
        """Add, replace and remove jobs so that the stored ones are `wanted`; how many of each."""
        now = self._clock.now()
        added = replaced = removed = 0
        for job_id in stored.keys() - wanted.keys():
            self._scheduler.remove_job(job_id)
            removed += 1
        for job_id, job in wanted.items():
            existing = stored.get(job_id)
            if existing is not None and _unchanged(existing, job):
                continue
            first = job.trigger.get_next_fire_time(None, now)
            if first is None or first < now:
                logger.bind(job_id=job_id).debug("Schedule {} has no time left to fire", job_id)
                if existing is not None:
                    self._scheduler.remove_job(job_id)
                    removed += 1
                continue
            self._scheduler.add_job(
                FIRE_REF,
                trigger=job.trigger,
                args=(job_id, *job.args),
                id=job_id,
                name=job_id,
                misfire_grace_time=_grace_seconds(job.misfire_grace),
                coalesce=True,
                max_instances=1,
                replace_existing=True,
            )
            if existing is None:
                added += 1
            else:
                replaced += 1
        return added, replaced, removed

    def job_ids(self) -> list[str]:
        """The ids of every stored job, sorted."""
        self._require_started()
        return sorted(job.id for job in self._scheduler.get_jobs())

    def next_fire_time(self, job_id: str) -> datetime | None:
        """When the job fires next (UTC), or None if it is not stored."""
        self._require_started()
        job = self._scheduler.get_job(job_id)
        if job is None or job.next_run_time is None:
            return None
        when: datetime = job.next_run_time
        return when.astimezone(UTC)

    async def shutdown(self, finish_within: float = 10.0) -> None:
        """Stop firing; let fires in hand finish (up to `finish_within` s); keep every job."""
        global _running
        if not self._started:
            return
        self._started = False
        self._scheduler.pause()
        # A wake-up while paused cancels the timer, so no wake-up comes after the stop below:
        # one would look for due jobs even though stopped, and advance them unrun.
        self._scheduler.wakeup()
        deadline = asyncio.get_running_loop().time() + finish_within
        await _settle(self._executor.in_hand(), deadline)
        await asyncio.sleep(0)  # the executor's callbacks turn missed runs into reports
        await _settle(set(self._reporting), deadline)
        leftover = self._executor.in_hand() | self._reporting
        for task in self._reporting:
            task.cancel()
        # The executor cancels what is left; AsyncIOScheduler stops on the loop's next turn.
        stopped = asyncio.Event()
        self._scheduler.add_listener(lambda _event: stopped.set(), EVENT_SCHEDULER_SHUTDOWN)
        self._scheduler.shutdown(wait=False)
        await stopped.wait()
        if leftover:
            await asyncio.wait(leftover, timeout=1)
        if _running is self:
            _running = None

    def _require_started(self) -> None:
        if not self._started:
            raise RuntimeError("Schedules is not running: call start() first")

    def _on_event(self, event: JobExecutionEvent) -> None:
        args = self._executor.submitted_args.pop(event.job_id, ())
        if event.code != EVENT_JOB_MISSED:
            return
        scheduled: datetime = event.scheduled_run_time.astimezone(UTC)
        logger.bind(job_id=event.job_id).warning(
            "Schedule {} missed its time {:%Y-%m-%d %H:%M:%S} UTC (beyond its grace); reporting it",
            event.job_id,
            scheduled,
        )
        task = asyncio.get_running_loop().create_task(
            self._report_missed(event.job_id, args, scheduled)
        )
        self._reporting.add(task)
        task.add_done_callback(self._reporting.discard)

    async def _report_missed(self, job_id: str, args: Args, scheduled: datetime) -> None:
        try:
            await self._on_missed(job_id, args, scheduled)
        except Exception:
            logger.bind(job_id=job_id).exception("Reporting missed schedule {} failed", job_id)


async def _settle(tasks: set[asyncio.Future[Any]], deadline: float) -> None:
    if not tasks:
        return
    timeout = max(0.0, deadline - asyncio.get_running_loop().time())
    _done, late = await asyncio.wait(tasks, timeout=timeout)
    if late:
        logger.warning("Cancelling {} schedule fire(s) that did not finish in time", len(late))
