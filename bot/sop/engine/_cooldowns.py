"""Trigger cooldowns: an SOP's last start per member (or group), and the starts they refuse.

A trigger with `cooldown` starts its SOP at most once per period for a key: the member, or the
group when the SOP's `concurrency_key` is `group`, in one group. Whole days count calendar days
in the group's time zone (`1d`: once per local day); other durations run from the last start.
The last start is the newest run of the SOP for the key (`sop_runs.created_at`, never purged, so
it holds across restarts). It is read once per key from the database (one index seek, on
`ix_sop_runs_started`) and kept in memory after that, updated with every run the engine starts:
a keyword trigger checks a cooldown on every matching message without a query.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Collection
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.db import SOP_RUNS
from bot.sop.format import format_duration

DAY = timedelta(days=1)
KEPT = 100_000  # last starts kept in memory; past this, forgotten and read again when needed
REFUSALS_KEPT = 100  # the newest refused starts, for a look at what cooldowns did

Key = tuple[str, int, int | None]  # SOP, group, member (None: the group)


def calendar_days(cooldown: timedelta) -> int | None:
    """The number of calendar days of a cooldown of whole days; None for a rolling one."""
    return cooldown.days if cooldown % DAY == timedelta(0) else None


def next_start(last: datetime, cooldown: timedelta, zone: ZoneInfo) -> datetime:
    """The first moment the SOP may start again after a start at `last`."""
    days = calendar_days(cooldown)
    if days is None:
        return last + cooldown
    local = last.astimezone(zone).date() + timedelta(days=days)
    return datetime(local.year, local.month, local.day, tzinfo=zone).astimezone(UTC)


def _when(moment: datetime, now: datetime, zone: ZoneInfo, at: str = "") -> str:
    """A moment said the way people say it, near `now`: `today at 09:00`, `tomorrow 00:00`,
    `Wed 2026-11-04 00:00` (`at` goes between the day and the time)."""
    local, today = moment.astimezone(zone), now.astimezone(zone).date()
    names = {today: "today", today - DAY: "yesterday", today + DAY: "tomorrow"}
    day = names.get(local.date(), f"{local:%a %Y-%m-%d}")
    return f"{day} {at}{local:%H:%M}"


@dataclass(frozen=True, slots=True)
class Refusal:
    """A start a cooldown refused: of which SOP, where, for whom, when, and why."""

    sop_id: str
    chat_id: int
    user_id: int | None  # who the start was for (None: the group)
    at: datetime
    cooldown: timedelta
    last: datetime
    again: datetime  # the first moment the SOP may start again
    zone: ZoneInfo

    def reason(self) -> str:
        """Why, in one line: `cooldown 1d, started today at 09:00; next from tomorrow 00:00`."""
        started = _when(self.last, self.at, self.zone, "at ")
        again = _when(self.again, self.at, self.zone)
        return f"cooldown {format_duration(self.cooldown)}, started {started}; next from {again}"


class Cooldowns:
    """The last start of each SOP per key, and the starts that a trigger's cooldown refuses."""

    def __init__(self, db: AsyncEngine, zone: Callable[[int], ZoneInfo]) -> None:
        self._db = db
        self._zone = zone  # a group's time zone
        self._last: dict[Key, datetime | None] = {}  # None: never started
        self._stale = False  # forget `_last` before the next batch
        self.refused: deque[Refusal] = deque(maxlen=REFUSALS_KEPT)
        self.refusals = 0  # how many starts were refused since the engine was built

    async def load(
        self, sop_id: str, chat_id: int, users: Collection[int | None], *, by_group: bool
    ) -> None:
        """Read the last starts of these keys that are not in memory yet (one query)."""
        if by_group:
            if (sop_id, chat_id, None) in self._last:
                return
            query = select(func.max(SOP_RUNS.c.created_at)).where(
                SOP_RUNS.c.sop_id == sop_id, SOP_RUNS.c.chat_id == chat_id
            )
            async with self._db.connect() as conn:
                last = (await conn.execute(query)).scalar_one_or_none()
            self._keep({(sop_id, chat_id, None): last})
            return
        missing = {user for user in users if (sop_id, chat_id, user) not in self._last}
        if not missing:
            return
        found: dict[Key, datetime | None] = dict.fromkeys(
            ((sop_id, chat_id, user) for user in missing), None
        )
        members = [user for user in missing if user is not None]
        where = (SOP_RUNS.c.sop_id == sop_id, SOP_RUNS.c.chat_id == chat_id)
        async with self._db.connect() as conn:
            if members:
                rows = await conn.execute(
                    select(SOP_RUNS.c.user_id, func.max(SOP_RUNS.c.created_at))
                    .where(*where, SOP_RUNS.c.user_id.in_(members))
                    .group_by(SOP_RUNS.c.user_id)
                )
                found.update({(sop_id, chat_id, user): last for user, last in rows})
            if None in missing:
                query = select(func.max(SOP_RUNS.c.created_at)).where(
                    *where, SOP_RUNS.c.user_id.is_(None)
                )
                found[sop_id, chat_id, None] = (await conn.execute(query)).scalar_one_or_none()
        self._keep(found)

    def refusal(
        self, key: Key, user_id: int | None, cooldown: timedelta | None, now: datetime
    ) -> Refusal | None:
        """The refusal of a start for `key` (asked for `user_id`) now, if its cooldown holds
        (the key `load`ed before); a refusal is kept in `refused`."""
        last = self._last.get(key)
        if cooldown is None or last is None:
            return None
        zone = self._zone(key[1])
        again = next_start(last, cooldown, zone)
        if now >= again:
            return None
        refused = Refusal(key[0], key[1], user_id, now, cooldown, last, again, zone)
        self.refused.append(refused)
        self.refusals += 1
        return refused

    def started(self, key: Key, at: datetime, *, cools: bool) -> None:
        """A run for `key` is being created at `at`; kept if its SOP `cools` (has a trigger
        with a cooldown) or the key is in memory already (so it never goes stale)."""
        if cools or key in self._last:
            last = self._last.get(key)
            self._keep({key: at if last is None else max(last, at)})

    def forget(self) -> None:
        """Forget what is in memory before the next batch of starts, and read it again from the
        database (a batch failed; the SOP files were read again)."""
        self._stale = True

    def trim(self) -> None:
        """Called before each batch of starts (never while one is checked): forget what is in
        memory if asked to, or past `KEPT` last starts (memory stays bounded)."""
        if self._stale or len(self._last) > KEPT:
            self._last.clear()
            self._stale = False

    def _keep(self, found: dict[Key, datetime | None]) -> None:
        self._last.update(found)
