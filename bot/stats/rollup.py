"""Daily rollups of the activity log, kept up to date as events arrive.

The events table is read forward by id from where the last pass stopped (`rollup_state`); each
pass folds a batch into per-day counts on each group's own calendar and moves the position, in
one transaction, so every event is counted exactly once whatever stops the bot:

- `group_days`: messages (commands included), joins and leaves of people (not bots), button
  presses, lottery entries,
  live reminder subscriptions and link clicks;
- `member_days`: each member's messages and presses per day (active members, tiers);
- `group_hours`: messages per hour of the day (the hour-of-week heatmap);
- `sop_sends`: each SOP message sent to a member, and when the member first answered it (wrote
  in the group or pressed a button there) within `RESPONSE_WINDOW`.

The activity log writes its batches one at a time, so event ids become visible in order and
reading "after the last id" misses none. A pass moves the position only if no other process
moved it meanwhile (`tidepool stats` may catch up beside the running bot), else it counts
nothing. Days follow the group's time zone at the time of the
pass; a group that changes its zone keeps its earlier days as they were counted.
"""

from __future__ import annotations

import functools
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable
from datetime import date, datetime, timedelta, tzinfo
from typing import Any

from sqlalchemy import and_, bindparam, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from bot.db import (
    EVENTS,
    GROUP_DAYS,
    GROUP_HOURS,
    MEMBER_DAYS,
    MEMBERS,
    ROLLUP_STATE,
    SOP_SENDS,
    EventType,
    insert_for,
)
from bot.db import writing as write_turn
from bot.periodic import Periodic

NAME = "days"
BATCH = 20_000  # events per pass
RESPONSE_WINDOW = timedelta(hours=24)
EVERY = 2.0  # seconds between passes of the running bot
SPOKE = frozenset({EventType.MESSAGE.value, EventType.COMMAND.value})
GROUP_COUNTS = {
    EventType.MEMBER_JOINED.value: "joins",
    EventType.MEMBER_LEFT.value: "leaves",
    EventType.MEMBER_KICKED.value: "leaves",
    EventType.CALLBACK.value: "presses",
    EventType.LOTTERY_ENTERED.value: "lottery_entries",
    EventType.LIVE_SUBSCRIBED.value: "live_subscriptions",
    EventType.LIVE_CLICKED.value: "live_clicks",
}
GROUP_COLUMNS = ("messages", *sorted(set(GROUP_COUNTS.values())))
MEMBERSHIP = frozenset(
    {EventType.MEMBER_JOINED.value, EventType.MEMBER_LEFT.value, EventType.MEMBER_KICKED.value}
)

Zones = Callable[[int], tzinfo]


class Rollup(Periodic):
    """Folds new events into the daily tables; `catch_up()` until none are left."""

    name = "the activity rollup"

    def __init__(
        self,
        engine: AsyncEngine,
        zone_of: Zones,
        *,
        batch: int = BATCH,
        flush: Callable[[], Awaitable[Any]] | None = None,
    ) -> None:
        super().__init__()
        self.engine = engine
        self.zone_of = zone_of
        self.batch = batch
        self.flush = flush  # writes the activity log's buffer first, so counts are current
        self.counted = 0
        self._open: dict[tuple[int, int], datetime] | None = None  # unanswered sends: latest

    # -- running ------------------------------------------------------------------------------

    async def tick(self) -> int:
        return await self.catch_up()

    def interval(self) -> float:
        return EVERY

    async def catch_up(self) -> int:
        """Count every event not counted yet (written ones, after a flush); return how many."""
        if self.flush is not None:
            await self.flush()
        total = 0
        while True:
            counted = await self.run_once()
            total += counted
            if counted < self.batch:
                return total

    # -- one pass -----------------------------------------------------------------------------

    async def run_once(self) -> int:
        async with self.engine.connect() as conn:
            if self._open is None:
                self._open = await _unanswered(conn)
            position = await _position(conn)
            events = list(
                await conn.execute(
                    select(
                        EVENTS.c.id,
                        EVENTS.c.chat_id,
                        EVENTS.c.user_id,
                        EVENTS.c.at,
                        EVENTS.c.type,
                        EVENTS.c.data,
                    )
                    .where(EVENTS.c.id > position)
                    .order_by(EVENTS.c.id)
                    .limit(self.batch)
                )
            )
        if not events:
            return 0
        bots = await self._bots(events)
        groups: dict[tuple[int, date], Counter[str]] = defaultdict(Counter)
        members: dict[tuple[int, int, date], Counter[str]] = defaultdict(Counter)
        hours: Counter[tuple[int, date, int]] = Counter()
        sends: list[dict[str, Any]] = []
        answers: dict[tuple[int, int], list[datetime]] = defaultdict(list)
        zones: dict[int, tzinfo] = {}
        open_sends = self._open
        for _, chat_id, user_id, at, kind, data in events:
            zone = zones.get(chat_id)
            if zone is None:
                zone = zones[chat_id] = self.zone_of(chat_id)
            local = at.astimezone(zone)
            day = local.date()
            if kind in SPOKE:
                groups[chat_id, day]["messages"] += 1
                hours[chat_id, day, local.hour] += 1
                if user_id is not None:
                    members[chat_id, user_id, day]["messages"] += 1
            elif kind in GROUP_COUNTS:
                if kind in MEMBERSHIP and (chat_id, user_id) in bots:
                    continue  # other bots joining or leaving are not members coming and going
                groups[chat_id, day][GROUP_COUNTS[kind]] += 1
                if kind == EventType.CALLBACK and user_id is not None:
                    members[chat_id, user_id, day]["presses"] += 1
            elif kind == EventType.SOP_SENT and user_id is not None and data:
                sends.append(
                    {
                        "chat_id": chat_id,
                        "user_id": user_id,
                        "sop": str(data.get("sop", "")),
                        "step": str(data.get("step", "")),
                        "variant": data.get("variant"),
                        "sent_at": at,
                        "responded_at": None,
                    }
                )
                open_sends[chat_id, user_id] = max(at, open_sends.get((chat_id, user_id), at))
                continue
            if (kind in SPOKE or kind == EventType.CALLBACK) and user_id is not None:
                latest = open_sends.get((chat_id, user_id))
                if latest is not None and latest <= at:
                    answers[chat_id, user_id].append(at)
        try:
            async with write_turn(self.engine) as conn:
                await _move(conn, position, events[-1].id)
                await self._write(conn, groups, members, hours, sends, answers)
        except _Raced:
            self._open = None  # another process counted them: read its sends again
            return 0
        self._forget_old(events[-1].at)
        self.counted += len(events)
        return len(events)

    async def _write(
        self,
        conn: AsyncConnection,
        groups: dict[tuple[int, date], Counter[str]],
        members: dict[tuple[int, int, date], Counter[str]],
        hours: Counter[tuple[int, date, int]],
        sends: list[dict[str, Any]],
        answers: dict[tuple[int, int], list[datetime]],
    ) -> None:
        if groups:
            rows = [
                {"chat_id": chat_id, "day": day, **{name: counts[name] for name in GROUP_COLUMNS}}
                for (chat_id, day), counts in groups.items()
            ]
            await _add(conn, GROUP_DAYS, ("chat_id", "day"), GROUP_COLUMNS, rows)
        if members:
            rows = [
                {
                    "chat_id": chat_id,
                    "user_id": user_id,
                    "day": day,
                    "messages": counts["messages"],
                    "presses": counts["presses"],
                }
                for (chat_id, user_id, day), counts in members.items()
            ]
            keys = ("chat_id", "user_id", "day")
            await _add(conn, MEMBER_DAYS, keys, ("messages", "presses"), rows)
        if hours:
            rows = [
                {"chat_id": chat_id, "day": day, "hour": hour, "messages": count}
                for (chat_id, day, hour), count in hours.items()
            ]
            await _add(conn, GROUP_HOURS, ("chat_id", "day", "hour"), ("messages",), rows)
        if sends:
            await conn.execute(SOP_SENDS.insert(), sends)
        if answers:
            # The earliest answer after each send, within the window: one update per answer, in
            # order, each only touching sends still unanswered that came before it.
            answered = [
                {"c": chat_id, "u": user_id, "at": at, "since": at - RESPONSE_WINDOW}
                for (chat_id, user_id), times in answers.items()
                for at in sorted(set(times))
            ]
            await conn.execute(
                update(SOP_SENDS)
                .where(
                    and_(
                        SOP_SENDS.c.chat_id == bindparam("c"),
                        SOP_SENDS.c.user_id == bindparam("u"),
                        SOP_SENDS.c.responded_at.is_(None),
                        SOP_SENDS.c.sent_at <= bindparam("at"),
                        SOP_SENDS.c.sent_at >= bindparam("since"),
                    )
                )
                .values(responded_at=bindparam("at")),
                answered,
            )

    async def _bots(self, events: list[Any]) -> set[tuple[int, int]]:
        """(group, user) of the batch's joins and leaves that are bots."""
        users = {event.user_id for event in events if event.type in MEMBERSHIP and event.user_id}
        if not users:
            return set()
        async with self.engine.connect() as conn:
            rows = await conn.execute(
                select(MEMBERS.c.chat_id, MEMBERS.c.user_id).where(
                    MEMBERS.c.user_id.in_(sorted(users)), MEMBERS.c.is_bot.is_(True)
                )
            )
            return {(chat_id, user_id) for chat_id, user_id in rows}

    def _forget_old(self, now: datetime) -> None:
        """Members whose last send is older than the window cannot answer it any more."""
        if self._open is None:
            return
        cutoff = now - RESPONSE_WINDOW
        for key in [key for key, at in self._open.items() if at < cutoff]:
            del self._open[key]


async def _position(conn: AsyncConnection) -> int:
    found = await conn.execute(select(ROLLUP_STATE.c.position).where(ROLLUP_STATE.c.name == NAME))
    return int(found.scalar() or 0)


async def move_group(conn: AsyncConnection, old: int, new: int) -> None:
    """A group became a supergroup: its daily counts join the new id's (added together where
    both have the same day), and its SOP answers go along."""
    tables = (
        (GROUP_DAYS, ("chat_id", "day"), GROUP_COLUMNS),
        (MEMBER_DAYS, ("chat_id", "user_id", "day"), ("messages", "presses")),
        (GROUP_HOURS, ("chat_id", "day", "hour"), ("messages",)),
    )
    for table, keys, counts in tables:
        rows = [
            {**row._asdict(), "chat_id": new}
            for row in await conn.execute(select(table).where(table.c.chat_id == old))
        ]
        if rows:
            await _add(conn, table, keys, counts, rows)
            await conn.execute(table.delete().where(table.c.chat_id == old))
    await conn.execute(update(SOP_SENDS).where(SOP_SENDS.c.chat_id == old).values(chat_id=new))


class _Raced(Exception):
    """Another process (`tidepool stats` beside the bot) counted the same events first."""


async def _move(conn: AsyncConnection, old: int, new: int) -> None:
    """Move the position from `old` to `new`, or raise _Raced if it is no longer `old`: the
    transaction then rolls back, so no event is counted twice."""
    await conn.execute(
        insert_for(conn, ROLLUP_STATE)
        .values(name=NAME, position=0)
        .on_conflict_do_nothing(index_elements=["name"])
    )
    moved = await conn.execute(
        update(ROLLUP_STATE)
        .where(ROLLUP_STATE.c.name == NAME, ROLLUP_STATE.c.position == old)
        .values(position=new)
    )
    if moved.rowcount != 1:
        raise _Raced


async def _unanswered(conn: AsyncConnection) -> dict[tuple[int, int], datetime]:
    """Members with a send still unanswered, by the time of their latest send."""
    found: dict[tuple[int, int], datetime] = {}
    rows = await conn.execute(
        select(SOP_SENDS.c.chat_id, SOP_SENDS.c.user_id, SOP_SENDS.c.sent_at).where(
            SOP_SENDS.c.responded_at.is_(None)
        )
    )
    for chat_id, user_id, sent_at in rows:
        key = (chat_id, user_id)
        found[key] = max(sent_at, found.get(key, sent_at))
    return found


async def _add(
    conn: AsyncConnection,
    table: Any,
    keys: tuple[str, ...],
    counts: tuple[str, ...],
    rows: list[dict[str, Any]],
) -> None:
    """Insert rows, or add their counts to the rows already there: one statement, executed
    for all rows (compiled once and cached, not once per batch of values)."""
    await conn.execute(_upsert(conn.dialect.name, table, keys, counts), rows)


@functools.cache
def _upsert(dialect: str, table: Any, keys: tuple[str, ...], counts: tuple[str, ...]) -> Any:
    insert = postgresql.insert(table) if dialect == "postgresql" else sqlite.insert(table)
    return insert.on_conflict_do_update(
        index_elements=list(keys),
        set_={name: table.c[name] + insert.excluded[name] for name in counts},
    )
