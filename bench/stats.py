"""Analytics benchmark: 1,000,000 events in 1,000 groups, the rollup that counts them, and
`/stats 30d` for the busiest group, against the issue's targets.

    python -m bench.stats [--events 1000000] [--groups 1000] [--repeat 50] [--ingest 50000]

(Run it from the repository root with `-m`: it imports bench/sop.py.) The bot is the whole
application as `tidepool run` assembles it (bot.factory), Telegram played by the emulator.

1. Data: a SQLite file migrated as on start, filled with Core bulk inserts before the bot
   starts on it (with no SOP of its own, so that all it does is count and answer). Groups are
   active, most in Asia/Shanghai; their sizes follow a Zipf law (the busiest has about 5 % of
   the events); members write by a Zipf law too, mostly in the evening of their group's time zone,
   more at weekends and a little more as the 90 days go on. A quarter of the members joined
   within the 90 days (a join event, a welcome SOP message with variant a or b, often answered);
   some left. Besides messages: commands, button presses, lottery entries, live reminders,
   re-engagement SOP messages and their answers, bot messages; check-ins and weekly lotteries
   in their own tables.
2. Rollup: the bot's own `Rollup.catch_up()` over all of it from scratch, in events/s against
   the ingest rate (the bench drives it: the bot's rollup and daily-analytics loops are stopped);
   then 20,000 new events in the last hour and the pass that counts them (the running bot passes
   every 2 s). The rollup's totals are checked against the events table.
3. `/stats 30d` for the busiest group, the handler's work without Telegram: `catch_up()`
   (nothing new), `group_metrics`, `health.weekly(weeks=4)` (the scores the daily job
   stored), `--repeat` times, p50 / p95 / max;
   then `/stats 30d` and `/stats 90d` with the chart rendered in a thread after each, as the
   handler does. Two of the figures counted straight from the events table (one indexed scan
   of the window) are the baseline.
4. Ingest rate, the rollup's baseline, measured last (its prebuilt updates would otherwise set
   the peak RSS): `--ingest` group messages (bench/ingest.py's) through the bot's dispatcher,
   with the shipped SOPs, on a fresh SQLite file; once alone (the bot's rollup loop stopped),
   and once with its rollup running beside it every 2 s as the bot runs it (same event loop,
   same database): how far behind it was when the messages stopped.

Figures are printed with PASS or MISS against the issue's targets; nothing here is a test.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import itertools
import math
import random
import resource
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta, tzinfo
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from aiogram import Bot
from aiogram.types import Update
from sqlalchemy import distinct, func, insert, select
from sqlalchemy.ext.asyncio import AsyncEngine

from bench._app import TOKEN, running, seed_chats, settings_for
from bench._traffic import chats_of, feed, make_updates
from bench.sop import Verdicts
from bot.activity import EVENT_COLUMNS, EventRow
from bot.app import freeze_startup_heap
from bot.clock import SystemClock
from bot.db import (
    CHECKINS,
    EVENTS,
    GROUP_DAYS,
    GROUP_HOURS,
    GROUPS,
    LOTTERIES,
    LOTTERY_ENTRIES,
    MEMBER_DAYS,
    MEMBERS,
    SOP_SENDS,
    EventType,
    GroupStatus,
    LotteryStatus,
    MemberStatus,
    writing,
)
from bot.db.bulk import Bulk
from bot.emulator import EmulatorServer
from bot.factory import Tidepool, create_bot
from bot.stats import health as scoring
from bot.stats.metrics import GroupMetrics, bounds, group_metrics, window
from bot.stats.rollup import Rollup

TARGET_METRICS = 0.050  # s, p95 of /stats 30d without the chart
TARGET_CHART = 1.0  # s, p95 of /stats 30d with the chart
DAYS = 90
WEEKS = math.ceil(DAYS / 7)
RECENT = 20_000  # events appended for the incremental pass
CHUNK = 50_000  # rows per insert transaction
GROUP_SKEW = 0.75  # Zipf exponent of group sizes: the busiest of 1,000 has about 5 %
WRITER_SKEW = 1.0  # Zipf exponent of who writes within a group
EVENTS_PER_MEMBER = 10  # a group has one member per 10 of its events (90 days), at least 30
NEW_MEMBERS = 0.25  # joined within the 90 days
LEAVERS = 0.08
CHECKERS = 0.03  # members who check in, on 70 % of their days
LOTTERY_GROUPS = 100  # the biggest groups hold a lottery every week
DEFAULT_ZONE = ZoneInfo("Asia/Shanghai")
OTHER_ZONES = ("Europe/Berlin", "America/New_York", "Asia/Kolkata", "UTC")
# Messages by hour of the group's day, relative: quiet at night, busiest in the evening.
LOCAL_HOURS = (
    *(10, 6, 4, 3, 3, 4, 8, 15, 22, 26, 28, 30),  # 00:00 to 11:00
    *(33, 30, 28, 28, 30, 32, 36, 42, 48, 46, 36, 20),  # 12:00 to 23:00
)
WELCOME_ANSWERS = {"a": 0.45, "b": 0.55}  # share of welcomes answered within 24 h, by variant
NUDGE_ANSWERS = {"a": 0.25, "b": 0.32}
TITLE = "Tidepool bench group 1 🌊"
BUSIEST = -1002000000000  # the chat id of the biggest group; the others count down from it


def now_utc() -> datetime:
    return datetime.now(UTC)


def percentile(values: Sequence[float], share: float) -> float:
    """The nearest-rank percentile."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(share * len(ordered)) - 1)]


def spread(values: Sequence[float]) -> str:
    """p50 / p95 / max of durations in seconds, in ms."""
    return (
        f"p50 {percentile(values, 0.5) * 1000:7.1f} ms   p95 {percentile(values, 0.95) * 1000:7.1f}"
        f" ms   max {max(values) * 1000:7.1f} ms"
    )


def peak_rss() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# -- 1. the data ----------------------------------------------------------------------------------


@dataclass(slots=True)
class Membership:
    user_id: int
    joined_at: datetime
    left_at: datetime | None = None
    kicked: bool = False
    checks_in: bool = False

    @property
    def status(self) -> MemberStatus:
        if self.left_at is None:
            return MemberStatus.MEMBER
        return MemberStatus.KICKED if self.kicked else MemberStatus.LEFT

    def present(self, at: datetime) -> bool:
        return self.joined_at <= at and (self.left_at is None or at < self.left_at)


@dataclass
class Community:
    chat_id: int
    rank: int
    timezone: str | None
    members: list[Membership] = field(default_factory=list)
    writers: list[float] = field(default_factory=list)  # cumulative weights, by member
    stable: list[Membership] = field(default_factory=list)  # there all 90 days
    checkers: list[Membership] = field(default_factory=list)  # who checks in
    hours: list[float] = field(default_factory=list)  # cumulative weights of UTC hours

    @property
    def zone(self) -> tzinfo:
        return ZoneInfo(self.timezone) if self.timezone else DEFAULT_ZONE


class World:
    """Groups, members and their events over the last 90 days, generated day by day."""

    def __init__(self, events: int, groups: int, now: datetime, seed: int = 7) -> None:
        self.rng = random.Random(seed)
        self.total = events
        self.now = now
        self.cutoff = now - timedelta(hours=1)  # the last hour is left for the incremental pass
        self.start = datetime.combine(
            self.cutoff.date() - timedelta(days=DAYS - 1), datetime.min.time(), UTC
        )
        self.sizes = list(itertools.accumulate((rank + 1) ** -GROUP_SKEW for rank in range(groups)))
        self.groups: list[Community] = []
        self.later: dict[int, list[EventRow]] = defaultdict(list)  # by day: joins, answers
        self.message_ids = itertools.count(1)
        self.runs = itertools.count(1)
        self.entries: dict[tuple[int, int], datetime] = {}  # (lottery, user): entered at
        self.checkins: list[tuple[Any, ...]] = []
        self.streaks: dict[tuple[int, int], tuple[date, int]] = {}
        user_ids = itertools.count(100_000_000)
        for rank in range(groups):
            timezone: str | None = "Asia/Shanghai"
            if rank % 10 == 7:
                timezone = OTHER_ZONES[rank // 10 % len(OTHER_ZONES)]
            elif rank % 50 == 13:
                timezone = None  # the bot's default zone
            group = Community(BUSIEST - rank, rank, timezone)
            expected = events * ((rank + 1) ** -GROUP_SKEW) / self.sizes[-1]
            for _ in range(max(30, round(expected / EVENTS_PER_MEMBER))):
                group.members.append(self._member(next(user_ids)))
            group.writers = list(
                itertools.accumulate((n + 1) ** -WRITER_SKEW for n in range(len(group.members)))
            )
            group.stable = [m for m in group.members if m.joined_at < self.start and not m.left_at]
            group.checkers = [m for m in group.members if m.checks_in]
            offset = round((group.zone.utcoffset(self.start) or timedelta()).total_seconds() / 3600)
            group.hours = list(
                itertools.accumulate(LOCAL_HOURS[(hour + offset) % 24] for hour in range(24))
            )
            self.groups.append(group)
            for member in group.members:
                self._joined_and_left(group, member)

    def _member(self, user_id: int) -> Membership:
        rng = self.rng
        span = (self.cutoff - self.start).total_seconds()
        if rng.random() < NEW_MEMBERS:
            joined = self.start + timedelta(seconds=rng.random() * span)
        else:
            joined = self.start - timedelta(days=1 + rng.random() * 600)
        member = Membership(user_id, joined, checks_in=rng.random() < CHECKERS)
        if rng.random() < LEAVERS:
            since = max(joined, self.start) + timedelta(hours=1)
            if since < self.cutoff:
                member.left_at = since + (self.cutoff - since) * rng.random()
                member.kicked = rng.random() < 0.2
        return member

    def _joined_and_left(self, group: Community, member: Membership) -> None:
        if member.joined_at >= self.start:
            self._later(self.row(group, member, member.joined_at, EventType.MEMBER_JOINED))
            sent = member.joined_at + timedelta(seconds=20)
            self._later(self._send(group, member, sent, "welcome", "greet", WELCOME_ANSWERS, 2.0))
        if member.left_at is not None:
            kind = EventType.MEMBER_KICKED if member.kicked else EventType.MEMBER_LEFT
            self._later(self.row(group, member, member.left_at, kind))

    def _send(
        self,
        group: Community,
        member: Membership,
        at: datetime,
        sop: str,
        step: str,
        answers: dict[str, float],
        hours: float,
    ) -> EventRow:
        """An SOP message to `member`; often their answer within 24 h, scheduled."""
        rng = self.rng
        variant = "a" if rng.random() < 0.5 else "b"
        data = {"sop": sop, "step": step, "variant": variant, "run": next(self.runs)}
        row = self.row(group, None, at, EventType.SOP_SENT, data, user_id=member.user_id)
        if rng.random() < answers[variant]:
            answered = at + timedelta(hours=min(23.9, rng.expovariate(1 / hours)))
            if member.present(answered):
                self._later(self.row(group, member, answered, EventType.MESSAGE))
        return row

    def _later(self, row: EventRow) -> None:
        at = row[2]
        if at < self.cutoff:
            self.later[(at - self.start) // timedelta(days=1)].append(row)

    def row(
        self,
        group: Community,
        member: Membership | None,
        at: datetime,
        kind: EventType,
        data: dict[str, Any] | None = None,
        *,
        user_id: int | None = None,
    ) -> EventRow:
        who = member.user_id if member is not None else user_id
        text = kind in (EventType.MESSAGE, EventType.COMMAND)
        return (
            group.chat_id,
            who,
            at,
            kind.value,
            ("photo" if self.rng.random() < 0.1 else "text") if text else None,
            next(self.message_ids),
            self.rng.randrange(1, 200) if text else None,
            text and self.rng.random() < 0.2,
            False,
            None,
            data,
        )

    def event(self, group: Community, member: Membership, at: datetime, day: int) -> EventRow:
        """One event of the day's mix (answers to nudges are scheduled, not returned)."""
        r = self.rng.random()
        if r < 0.86:
            return self.row(group, member, at, EventType.MESSAGE)
        if r < 0.88:
            return self.row(group, member, at, EventType.COMMAND, {"command": "checkin"})
        if r < 0.95:
            return self.row(group, member, at, EventType.CALLBACK, {"data": "sop:ok"})
        if r < 0.955 and group.rank < LOTTERY_GROUPS:
            lottery = group.rank * WEEKS + min(day // 7, WEEKS - 1) + 1
            self.entries.setdefault((lottery, member.user_id), at)
            return self.row(group, member, at, EventType.LOTTERY_ENTERED, {"lottery": lottery})
        if r < 0.957:
            return self.row(group, member, at, EventType.LIVE_SUBSCRIBED, {"live": 1})
        if r < 0.958:
            return self.row(group, member, at, EventType.LIVE_CLICKED, {"live": 1})
        if r < 0.968:
            return self._send(group, member, at, "reengage", "nudge", NUDGE_ANSWERS, 4.0)
        if r < 0.99:
            return self.row(group, None, at, EventType.BOT_MESSAGE, user_id=1)
        return self.row(group, None, at, EventType.EMITTED, {"event": "checkin.done"})

    def day(self, day: int, count: int) -> list[EventRow]:
        """The `count` events of day `day` (from `start`, UTC), in time order: those scheduled
        for it (joins, leaves, welcomes, answers) and the rest of the mix."""
        rng = self.rng
        began = self.start + timedelta(days=day)
        mix = max(0, count - len(self.later[day]))
        rows: list[EventRow] = []
        chosen = Counter(rng.choices(range(len(self.groups)), cum_weights=self.sizes, k=mix))
        for rank, n in chosen.items():
            group = self.groups[rank]
            writers = rng.choices(group.members, cum_weights=group.writers, k=n)
            hours = rng.choices(range(24), cum_weights=group.hours, k=n)
            for member, hour in zip(writers, hours, strict=True):
                at = began + timedelta(hours=hour + rng.random())
                if at >= self.cutoff:
                    at = began + (self.cutoff - began) * rng.random()
                who = member if member.present(at) else rng.choice(group.stable)
                rows.append(self.event(group, who, at, day))
        for group in self.groups:
            self._check_ins(group, began)
        scheduled = self.later.pop(day)  # with the answers of today's nudges
        del rows[max(0, count - len(scheduled)) :]  # the mix is in no order: keep the count
        rows += scheduled
        rows.sort(key=lambda row: row[2])
        return rows

    def _check_ins(self, group: Community, began: datetime) -> None:
        at = began + timedelta(hours=12)  # the same local day whatever the zone's DST
        local = at.astimezone(group.zone).date()
        for member in group.checkers:
            if not member.present(at) or self.rng.random() >= 0.7:
                continue
            key = (group.chat_id, member.user_id)
            last, streak = self.streaks.get(key, (date.min, 0))
            streak = streak + 1 if last == local - timedelta(days=1) else 1
            self.streaks[key] = (local, streak)
            self.checkins.append((group.chat_id, member.user_id, local, at, streak, 0, 5))

    def days(self) -> list[int]:
        """Events per day, `total` in all: weekends a third busier, a slow rise over the 90
        days, the last day cut at `cutoff`."""
        weights = []
        for day in range(DAYS):
            began = self.start + timedelta(days=day)
            share = min(1.0, (self.cutoff - began) / timedelta(days=1))
            weekend = 1.3 if began.weekday() >= 5 else 1.0
            weights.append(share * weekend * (0.8 + 0.4 * day / DAYS))
        counts = [int(self.total * weight / sum(weights)) for weight in weights]
        counts[-1] += self.total - sum(counts)
        return counts

    def recent(self, count: int) -> list[EventRow]:
        """`count` events of the mix in the last hour, in time order."""
        rng = self.rng
        rows = []
        chosen = Counter(rng.choices(range(len(self.groups)), cum_weights=self.sizes, k=count))
        for rank, n in chosen.items():
            group = self.groups[rank]
            for member in rng.choices(group.members, cum_weights=group.writers, k=n):
                at = self.cutoff + (self.now - self.cutoff) * rng.random()
                who = member if member.present(at) else rng.choice(group.stable)
                rows.append(self.event(group, who, at, DAYS - 1))
        self.later.clear()  # answers after now are not there yet
        rows.sort(key=lambda row: row[2])
        return rows


async def store(
    db: AsyncEngine, table: Any, names: Sequence[str], rows: Sequence[Sequence[Any]]
) -> None:
    """Insert `rows` (values in `names` order) in transactions of CHUNK rows."""
    bulk = Bulk(insert(table).values(dict.fromkeys(names)), db.dialect, names)
    for at in range(0, len(rows), CHUNK):
        async with writing(db) as conn:
            await bulk.execute(conn, rows[at : at + CHUNK])


async def store_dicts(db: AsyncEngine, table: Any, rows: Sequence[dict[str, Any]]) -> None:
    names = tuple(rows[0])
    await store(db, table, names, [tuple(row[name] for name in names) for row in rows])


async def generate(db: AsyncEngine, world: World) -> int:
    """Every table the metrics read, filled for `world`; the events written."""
    await store_dicts(
        db,
        GROUPS,
        [
            {
                "id": group.chat_id,
                "title": f"Bench group {group.rank + 1}",
                "type": "supergroup",
                "status": GroupStatus.ACTIVE.value,
                "timezone": group.timezone,
                "tags": [],
                "missing_rights": [],
                "first_seen_at": world.start - timedelta(days=700),
                "updated_at": world.now,
            }
            for group in world.groups
        ],
    )
    written = 0
    buffer: list[EventRow] = []
    for day, count in enumerate(world.days()):
        buffer += world.day(day, count)
        if len(buffer) >= CHUNK or day == DAYS - 1:
            await store(db, EVENTS, EVENT_COLUMNS, buffer)
            written += len(buffer)
            buffer = []
    await store_dicts(
        db,
        MEMBERS,
        [
            {
                "chat_id": group.chat_id,
                "user_id": member.user_id,
                "first_name": f"Member {member.user_id}",
                "is_bot": False,
                "status": member.status.value,
                "joined_at": member.joined_at,
                "left_at": member.left_at,
                "first_activity_at": member.joined_at,
                "message_count": 0,
            }
            for group in world.groups
            for member in group.members
        ],
    )
    names = ("chat_id", "user_id", "day", "at", "streak", "frozen", "points")
    await store(db, CHECKINS, names, world.checkins)
    entries = Counter(lottery for lottery, _ in world.entries)
    lotteries: list[dict[str, Any]] = []
    for group in world.groups[:LOTTERY_GROUPS]:
        for week in range(WEEKS):
            lottery = group.rank * WEEKS + week + 1
            opened = world.start + timedelta(days=7 * week)
            lotteries.append(
                {
                    "id": lottery,
                    "chat_id": group.chat_id,
                    "prize": "A mug",
                    "winners": 1,
                    "status": LotteryStatus.DRAWN.value,
                    "rules": {},
                    "entry_cost": 0,
                    "entry_count": entries[lottery],
                    "claim": "",
                    "seed": "seed",
                    "commitment": "commitment",
                    "source": "sop:lottery",
                    "created_at": opened,
                    "draws_at": opened + timedelta(days=6),
                    "message_id": 2 * lottery,  # posted and announced, as the bot leaves them
                    "announcement_id": 2 * lottery + 1,
                }
            )
    await store_dicts(db, LOTTERIES, lotteries)
    await store(
        db,
        LOTTERY_ENTRIES,
        ("lottery_id", "user_id", "entered_at", "cost"),
        [(lottery, user, at, 0) for (lottery, user), at in world.entries.items()],
    )
    return written


# -- 3. /stats ------------------------------------------------------------------------------------


@dataclass
class Timings:
    catch_up: list[float] = field(default_factory=list)
    metrics: list[float] = field(default_factory=list)
    trend: list[float] = field(default_factory=list)
    chart: list[float] = field(default_factory=list)

    def sums(self, *parts: str) -> list[float]:
        columns = [getattr(self, part) for part in parts]
        return [sum(values) for values in zip(*columns, strict=True)]


async def stats(
    db: AsyncEngine,
    rollup: Rollup,
    chat_id: int,
    zone: tzinfo,
    days: int,
    repeat: int,
    *,
    chart: bool,
) -> tuple[Timings, GroupMetrics]:
    """`/stats {days}d` as the handler does it, `repeat` times, each stage timed; the chart
    (in a thread, as there) only with `chart`. Its garbage is cyclic: the collections it sets
    off land in whatever runs next, so the metrics are also timed on their own."""
    from bot.stats.chart import render  # imported (and timed) by the caller first

    timings = Timings()
    first, last = window(now_utc().astimezone(zone).date(), days)
    metrics = GroupMetrics(chat_id, first, last)
    # The daily job stores each day's health score; /stats reads the last four weeks' scores.
    # The first call here stands in for the daily job (it computes and stores what is missing).
    await scoring.weekly(db, chat_id, last - timedelta(days=1), zone, weeks=4)
    for _ in range(repeat):
        began = time.perf_counter()
        await rollup.catch_up()
        caught = time.perf_counter()
        metrics = await group_metrics(db, chat_id, first, last, zone)
        measured = time.perf_counter()
        await scoring.weekly(db, chat_id, last - timedelta(days=1), zone, weeks=4)
        trended = time.perf_counter()
        timings.catch_up.append(caught - began)
        timings.metrics.append(measured - caught)
        timings.trend.append(trended - measured)
        if chart:
            await asyncio.to_thread(render, metrics, title=TITLE, language="zh")
            timings.chart.append(time.perf_counter() - trended)
    return timings, metrics


async def from_events(
    db: AsyncEngine, chat_id: int, first: date, last: date, zone: tzinfo
) -> tuple[float, int, int]:
    """The baseline: the window's messages and writers counted from the events table (its
    index on time); the seconds it took (the best of 3)."""
    start, end = bounds(first, last, zone)
    query = select(func.count(), func.count(distinct(EVENTS.c.user_id))).where(
        EVENTS.c.at >= start,
        EVENTS.c.at < end,
        EVENTS.c.chat_id == chat_id,
        EVENTS.c.type.in_([EventType.MESSAGE.value, EventType.COMMAND.value]),
    )
    best = math.inf
    messages = writers = 0
    for _ in range(3):
        began = time.perf_counter()
        async with db.connect() as conn:
            messages, writers = (await conn.execute(query)).one()
        best = min(best, time.perf_counter() - began)
    return best, messages, writers


async def count(db: AsyncEngine, query: Any) -> int:
    async with db.connect() as conn:
        return int((await conn.execute(query)).scalar_one())


# -- 4. the ingest rate ---------------------------------------------------------------------------


@dataclass
class Ingest:
    rate: float  # updates (each one event) a second through the real dispatcher
    behind: int = 0  # events the rollup beside it had not counted when the messages stopped
    caught_up: float = 0.0  # seconds the rollup then took to count them


async def ingest(
    server: EmulatorServer, updates: list[Update], bot: Bot, folder: Path, *, beside: bool
) -> Ingest:
    """The updates through the whole bot as `tidepool run` assembles it (the shipped SOPs, its
    replies going to the emulator), on a fresh database where it knows the messages' groups;
    with `beside`, the bot's own rollup runs meanwhile every 2 s as it always does, else it is
    stopped first. Only messages and commands are counted at the end: the shipped check-in SOP
    emits events of its own."""
    async with running(server, folder, SystemClock(), groups=chats_of(updates), bot=bot) as app:
        if not beside:
            await app.rollup.close()
        began = time.perf_counter()
        await feed(app.dispatcher, app.bot, updates)
        await app.activity.flush()
        elapsed = time.perf_counter() - began
        found = Ingest(len(updates) / elapsed)
        if beside:
            await app.rollup.close()
            stored = await count(app.db, select(func.count()).select_from(EVENTS))
            found.behind = stored - app.rollup.counted
            began = time.perf_counter()
            await app.rollup.catch_up()
            found.caught_up = time.perf_counter() - began
        spoke = [EventType.MESSAGE.value, EventType.COMMAND.value]
        written = await count(app.db, select(func.count()).where(EVENTS.c.type.in_(spoke)))
    gc.unfreeze()
    if written != len(updates):
        raise SystemExit(f"lost events: stored {written} of {len(updates)} messages")
    return found


async def measure_ingest(count: int, folder: Path) -> tuple[Ingest, Ingest]:
    async with EmulatorServer(token=TOKEN) as server:
        # One Bot for both rounds: the prebuilt updates are bound to it, as polled ones are.
        bot = create_bot(settings_for(server, folder / "unused.db"))
        try:
            updates = make_updates(count, 50, bot)
            seed_chats(server, chats_of(updates))  # the groups the messages come from
            gc.collect()
            alone = await ingest(server, updates, bot, folder / "ingest-alone", beside=False)
            gc.collect()
            beside = await ingest(server, updates, bot, folder / "ingest-beside", beside=True)
        finally:
            await bot.session.close()
    print(f"-- 4. ingest: {count:,} group messages through the bot's dispatcher (tidepool run's)")
    print(f"   alone:                 {alone.rate:9,.0f} events/s")
    print(
        f"   rollup beside it:      {beside.rate:9,.0f} events/s ({beside.rate / alone.rate:.0%} "
        f"of alone)"
    )
    print(
        f"   when the messages stopped the rollup had {beside.behind:,} events to count "
        f"({beside.behind / beside.rate:.1f} s of ingest); it counted them in "
        f"{beside.caught_up * 1000:.0f} ms"
    )
    return alone, beside


# -- the run --------------------------------------------------------------------------------------


@dataclass
class Counting:
    """What part 2 found."""

    scratch: float  # events/s from scratch
    step: float  # events/s of the incremental pass
    counted: int  # messages in group_days
    stored: int  # messages in the events table


async def data_and_rollup(
    app: Tidepool, world: World, written: int, generated: float, groups: int
) -> Counting:
    """Parts 1 (the data the bot found at its start) and 2, with the bot's own rollup."""
    db, rollup = app.db, app.rollup
    busiest = world.groups[0]
    mine = await count(db, select(func.count()).where(EVENTS.c.chat_id == busiest.chat_id))
    print(f"-- 1. data: {written:,} events in {groups:,} groups over {DAYS} days")
    print(
        f"   generated and stored in {generated:.1f} s; "
        f"{sum(len(group.members) for group in world.groups):,} members, "
        f"{len(world.checkins):,} check-ins, {len(world.entries):,} lottery entries"
    )
    print(
        f"   busiest group: {mine:,} events ({mine / written:.1%}), "
        f"{len(busiest.members):,} members, zone {busiest.timezone}"
    )

    gc.collect()
    began = time.perf_counter()
    counted = await rollup.catch_up()
    scratch = time.perf_counter() - began
    await store(db, EVENTS, EVENT_COLUMNS, world.recent(RECENT))
    began = time.perf_counter()
    fresh = await rollup.catch_up()
    step = time.perf_counter() - began
    spoke = [EventType.MESSAGE.value, EventType.COMMAND.value]
    found = Counting(
        counted / scratch,
        fresh / step,
        await count(db, select(func.coalesce(func.sum(GROUP_DAYS.c.messages), 0))),
        await count(db, select(func.count()).where(EVENTS.c.type.in_(spoke))),
    )
    rows = [
        f"{table.name} {await count(db, select(func.count()).select_from(table)):,}"
        for table in (GROUP_DAYS, MEMBER_DAYS, GROUP_HOURS, SOP_SENDS)
    ]
    print("-- 2. rollup")
    print(
        f"   from scratch:          {counted:,} events in {scratch:.1f} s = "
        f"{found.scratch:,.0f} events/s"
    )
    print(
        f"   incremental:           {fresh:,} new events in {step * 1000:.0f} ms = "
        f"{found.step:,.0f} events/s (the bot passes every 2 s)"
    )
    print(f"   rows:                  {', '.join(rows)}")
    print(f"   messages:              {found.counted:,} counted, {found.stored:,} in the events")
    print(f"   peak RSS so far:       {peak_rss():,.0f} MiB")
    return found


async def analytics(folder: Path, args: argparse.Namespace) -> tuple[Counting, Requests]:
    """Parts 1 to 3: the data written before the bot starts (with no SOP of its own, so that
    it only counts and answers), then its own rollup and /stats work, driven by the bench:
    its rollup and daily-analytics loops are stopped so that they do not race the timings."""
    world = World(args.events, args.groups, now_utc())
    generated: list[tuple[int, float]] = []  # events written, seconds: by `fill`

    async def fill(db: AsyncEngine) -> None:
        began = time.perf_counter()
        written = await generate(db, world)
        generated.append((written, time.perf_counter() - began))

    async with (
        EmulatorServer(token=TOKEN) as server,
        running(server, folder / "analytics", SystemClock(), sops={}, prefill=fill) as app,
    ):
        await app.rollup.close()
        await app.analytics.close()
        [(written, seconds)] = generated
        counting = await data_and_rollup(app, world, written, seconds, args.groups)
        asked = await requests(app.db, app.rollup, BUSIEST, args.repeat)
    return counting, asked


@dataclass
class Requests:
    """What part 3 found."""

    month: Timings  # /stats 30d without the chart
    month_charted: Timings  # the whole handler
    quarter_charted: Timings
    metrics: GroupMetrics  # of the last 30 days
    baseline: float  # seconds, from the events table
    messages: int  # from the events table
    writers: int


def table(label: str, timings: Timings) -> None:
    print(f"     {label}")
    for name, parts in (
        ("catch_up (nothing new)", ("catch_up",)),
        ("group_metrics", ("metrics",)),
        ("health.weekly(weeks=4)", ("trend",)),
        ("chart", ("chart",)),
        ("metrics without trend", ("catch_up", "metrics")),
        ("metrics with trend", ("catch_up", "metrics", "trend")),
        ("the whole handler", ("catch_up", "metrics", "trend", "chart")),
    ):
        if all(getattr(timings, part) for part in parts):
            print(f"       {name:26}{spread(timings.sums(*parts))}")


async def requests(db: AsyncEngine, rollup: Rollup, chat_id: int, repeat: int) -> Requests:
    """Part 3."""
    zone = rollup.zone_of(chat_id)
    first, last = window(now_utc().astimezone(zone).date(), 30)
    freeze_startup_heap()  # as the bot does once started; matplotlib comes later, as there
    began = time.perf_counter()
    from bot.stats import chart

    imported = time.perf_counter() - began
    began = time.perf_counter()
    metrics = await group_metrics(db, chat_id, first, last, zone)
    await asyncio.to_thread(chart.render, metrics, title=TITLE, language="zh")
    cold = time.perf_counter() - began
    month, metrics = await stats(db, rollup, chat_id, zone, 30, repeat, chart=False)
    month_charted, _ = await stats(db, rollup, chat_id, zone, 30, repeat, chart=True)
    quarter_charted, _ = await stats(db, rollup, chat_id, zone, 90, repeat, chart=True)
    baseline, messages, writers = await from_events(db, chat_id, first, last, zone)
    language = "Chinese" if chart.CJK_FONT else "English: no CJK font installed"
    print(f"-- 3. /stats for the busiest group, {repeat} times each (the chart in {language})")
    print(
        f"   30d window:            {metrics.messages:,} messages, {metrics.active:,} writers, "
        f"{metrics.members_end:,} members at the end, {len(metrics.steps)} SOP steps"
    )
    print(
        f"   baseline from events:  {baseline * 1000:.1f} ms for two of the figures, the "
        f"window's messages and writers ({messages:,} and {writers:,})"
    )
    print("   metrics alone (no chart in the loop)")
    table("/stats 30d", month)
    print("   the whole handler: metrics, then the chart in a thread")
    table("/stats 30d", month_charted)
    table("/stats 90d", quarter_charted)
    print(
        f"   the process's first chart: matplotlib imported in {imported * 1000:.0f} ms, then "
        f"metrics and chart in {cold * 1000:.0f} ms"
    )
    return Requests(month, month_charted, quarter_charted, metrics, baseline, messages, writers)


async def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--groups", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=50)
    parser.add_argument(
        "--ingest", type=int, default=50_000, help="updates for the ingest rate; 0: skip it"
    )
    args = parser.parse_args()

    from bot.logs import setup_logging

    setup_logging("ERROR")
    began = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        counting, asked = await analytics(folder, args)
        analytics_peak = peak_rss()
        alone = beside = None
        if args.ingest:
            alone, beside = await measure_ingest(args.ingest, folder)
    took = time.perf_counter() - began

    verdicts = Verdicts()
    if alone is not None and beside is not None:
        verdicts.add(
            "the rollup keeps up with the ingest rate",
            counting.scratch >= alone.rate,
            f"{counting.scratch:,.0f} events/s from scratch, {counting.step:,.0f} incremental; "
            f"ingest {alone.rate:,.0f} events/s ({counting.scratch / alone.rate:.2f}x); beside "
            f"the ingest {beside.behind / beside.rate:.1f} s behind when it stopped",
        )
    else:
        verdicts.add(
            "the rollup keeps up with the ingest rate",
            False,
            f"{counting.scratch:,.0f} events/s from scratch; the ingest rate was not measured",
        )
    with_trend = asked.month.sums("catch_up", "metrics", "trend")
    without = asked.month.sums("catch_up", "metrics")
    verdicts.add(
        f"/stats 30d metrics, health trend included, p95 <= {TARGET_METRICS * 1000:.0f} ms",
        percentile(with_trend, 0.95) <= TARGET_METRICS,
        f"p95 {percentile(with_trend, 0.95) * 1000:.1f} ms; without the trend "
        f"{percentile(without, 0.95) * 1000:.1f} ms (baseline from the events "
        f"{asked.baseline * 1000:.1f} ms for two of the figures)",
    )
    whole = asked.month_charted.sums("catch_up", "metrics", "trend", "chart")
    longer = asked.quarter_charted.sums("catch_up", "metrics", "trend", "chart")
    verdicts.add(
        f"/stats 30d with the chart p95 <= {TARGET_CHART:.0f} s",
        percentile(whole, 0.95) <= TARGET_CHART,
        f"p50 {percentile(whole, 0.5) * 1000:.0f} ms, p95 {percentile(whole, 0.95) * 1000:.0f} ms"
        f" (90d: p95 {percentile(longer, 0.95) * 1000:.0f} ms)",
    )
    metrics = asked.metrics
    verdicts.add(
        "the rollup counted every message",
        counting.counted == counting.stored
        and (metrics.messages, metrics.active) == (asked.messages, asked.writers),
        f"{counting.counted:,} of {counting.stored:,}; the busiest group's last 30 days "
        f"{metrics.messages:,} messages, {metrics.active:,} writers (the events: "
        f"{asked.messages:,}, {asked.writers:,})",
    )
    print(
        f"summary ({took:.0f} s; peak RSS {analytics_peak:,.0f} MiB before the ingest part, "
        f"{peak_rss():,.0f} MiB with it):"
    )
    print("\n".join(verdicts.lines))


if __name__ == "__main__":
    asyncio.run(main())
