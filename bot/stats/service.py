"""The daily analytics of each group: tiers, the health score, and alerts, on its own calendar;
and the month's figures /stats shows beside the metrics (fission, moderation's honesty).

Once a day per group, after `DAILY_HOUR` in the group's time zone, for the day before (the last
full day): bring the rollups up to date, compute the members' tiers (each change emits
`tier.changed`), score the group's health and raise an alert when it fell by the configured
share or the group went silent. `group_checks` remembers the last day done, so a restart neither
repeats nor skips a day's work; an alert is stored under its period (the week, or the silent
spell) and raised once; a fall is reported at most once a week.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import date, datetime, timedelta, tzinfo
from pathlib import Path
from typing import Any

from loguru import logger
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.clock import Clock
from bot.db import (
    BALANCES,
    CHECKINS,
    GROUP_CHECKS,
    HEALTH_ALERTS,
    MEMBERS,
    GroupStatus,
    insert_for,
    writing,
)
from bot.events import Bus, Happened
from bot.invites import numbers
from bot.moderation.service import DEFAULT_MODE
from bot.moderation.store import Honesty, ModerationStore
from bot.periodic import Periodic
from bot.registry import Registry
from bot.stats import health as scoring
from bot.stats import tiers
from bot.stats.forget import forget
from bot.stats.metrics import GroupMetrics, MemberActivity, group_metrics, member_activity, window
from bot.stats.rollup import Rollup

FISSION_DAYS = 30  # K and the cycle time are a month's, whatever window /stats shows
MODERATION_DAYS = 30  # so is moderation's honesty (as /moderation shows it)
DAILY_HOUR = 5  # the daily work starts at 05:00 in each group's time
LOOK_EVERY = 60.0  # seconds between looks for groups whose day has come

Alert = Callable[[int, str, dict[str, Any]], Awaitable[None]]  # (group, kind, details)


@dataclass(frozen=True, slots=True)
class ModerationFigures:
    """Measured honesty: a group's moderation over the last `days` days. `honesty.actions`
    counts what SOPs and the first-message checks did (not admins, not dry runs),
    `honesty.undone` those of them an admin undid ("Not spam", unban); their share is the
    false-positive rate. `honesty.dry` counts what dry mode recorded without doing it. `mode`
    is the group's mode now."""

    days: int
    mode: str
    honesty: Honesty

    @property
    def dry_mode(self) -> bool:
        return self.mode == "dry"

    def shown(self) -> dict[str, Any]:
        """The figures as texts show them (the rate as a percentage, "–" for no actions)."""
        rate = self.honesty.false_positive_rate
        return {
            "days": self.days,
            "actions": self.honesty.actions,
            "undone": self.honesty.undone,
            "rate": "–" if rate is None else f"{rate:.0%}",
            "dry": self.honesty.dry,
            "dry_mode": self.dry_mode,
        }

    def as_json(self) -> dict[str, Any]:
        rate = self.honesty.false_positive_rate
        return {
            "days": self.days,
            "mode": self.mode,
            "actions": self.honesty.actions,
            "undone": self.honesty.undone,
            "false_positive_rate": None if rate is None else round(rate, 4),
            "dry": self.honesty.dry,
        }


@dataclass(frozen=True, slots=True)
class GroupReport:
    """What /stats shows of a group: its metrics over a window, its weekly health, and, always
    over the last 30 days whatever the window, its fission coefficient and cycle time (K is
    defined over 30 days, and /invites shows the same figures) and its moderation figures
    (as /moderation and the console show them)."""

    title: str
    first: date
    last: date
    metrics: GroupMetrics
    health: list[int]  # the weekly scores up to yesterday, oldest first; the last is this week's
    fission: numbers.Fission
    moderation: ModerationFigures


@dataclass(frozen=True, slots=True)
class MemberReport:
    """What /stats @member shows: their activity over a window, and who they are in the group."""

    user_id: int
    name: str  # "" when the bot does not know their name
    first: date
    last: date
    activity: MemberActivity
    since: date | None  # the day they joined, in the group's time
    checkins: int  # in the window
    points: int
    tier: str  # "new" for a member not placed yet


async def month_fission(
    engine: AsyncEngine, chat_id: int, now: datetime, today: date
) -> numbers.Fission:
    """K and the cycle time over the last FISSION_DAYS days, `today` (the group's date)
    included, counted as /invites counts them: what /stats and `tidepool stats` show."""
    first_day = window(today, FISSION_DAYS)[0]
    return await numbers.fission(engine, chat_id, now, first_day, days=FISSION_DAYS)


async def month_moderation(
    store: ModerationStore, chat_id: int, now: datetime
) -> ModerationFigures:
    """The group's moderation over the MODERATION_DAYS days up to `now`, and its mode: what
    /stats, `tidepool stats` and the console's moderation page show."""
    since = now - timedelta(days=MODERATION_DAYS)
    honesty = (await store.honesty([chat_id], since))[chat_id]
    mode = (await store.modes()).get(chat_id, DEFAULT_MODE)
    return ModerationFigures(MODERATION_DAYS, mode, honesty)


class Analytics(Periodic):
    name = "the daily analytics"

    def __init__(
        self,
        engine: AsyncEngine,
        registry: Registry,
        rollup: Rollup,
        clock: Clock,
        *,
        bus: Bus,
        alert: Alert,
        moderation_log: ModerationStore,
        default_zone: tzinfo,
        tiers_path: Path,
        health_drop: float = 0.3,
        silent_days: int = 3,
    ) -> None:
        super().__init__()
        self.engine = engine
        self.moderation_log = moderation_log  # the actions and modes /stats sums up
        self.registry = registry
        self.rollup = rollup
        self.clock = clock
        self.default_zone = default_zone
        self.tiers_path = tiers_path
        self.health_drop = health_drop
        self.silent_days = silent_days
        self.bus = bus  # told of each tier change (the SOP engine's `tier.changed` event)
        self.alert = alert

    def zone(self, chat_id: int) -> tzinfo:
        return self.registry.zone(chat_id, self.default_zone)

    def today(self, chat_id: int) -> date:
        return self.clock.now().astimezone(self.zone(chat_id)).date()

    # -- reports in the chat ------------------------------------------------------------------

    async def group_report(self, chat_id: int, days: int) -> GroupReport:
        """The group's metrics over its last `days` days (today included), and its health."""
        await self.rollup.catch_up()
        zone = self.zone(chat_id)
        first, last = window(self.today(chat_id), days)
        metrics, fission, moderation = await asyncio.gather(
            group_metrics(self.engine, chat_id, first, last, zone),
            self.fission(chat_id),
            self.moderation(chat_id),
        )
        # Health scores whole weeks, up to yesterday: read from what the daily job stored.
        health = await scoring.weekly(self.engine, chat_id, last - timedelta(days=1), zone, weeks=4)
        title = self.registry.title(chat_id)
        return GroupReport(title, first, last, metrics, health, fission, moderation)

    async def fission(self, chat_id: int) -> numbers.Fission:
        """K and the cycle time of the group now (the rollups, which count the active
        members, brought up to date first by the caller)."""
        return await month_fission(self.engine, chat_id, self.clock.now(), self.today(chat_id))

    async def moderation(self, chat_id: int) -> ModerationFigures:
        """The group's moderation over the last 30 days: actions, undone, false positives."""
        return await month_moderation(self.moderation_log, chat_id, self.clock.now())

    async def member_report(self, chat_id: int, user_id: int, days: int) -> MemberReport:
        """One member's last `days` days in the group."""
        await self.rollup.catch_up()
        first, last = window(self.today(chat_id), days)
        activity = await member_activity(self.engine, chat_id, user_id, first, last)
        async with self.engine.connect() as conn:
            member = (
                await conn.execute(
                    select(
                        MEMBERS.c.first_name,
                        MEMBERS.c.last_name,
                        MEMBERS.c.tier,
                        MEMBERS.c.joined_at,
                    ).where(MEMBERS.c.chat_id == chat_id, MEMBERS.c.user_id == user_id)
                )
            ).first()
            checkins = (
                await conn.execute(
                    select(func.count()).where(
                        CHECKINS.c.chat_id == chat_id,
                        CHECKINS.c.user_id == user_id,
                        CHECKINS.c.day.between(first, last),
                    )
                )
            ).scalar()
            points = (
                await conn.execute(
                    select(BALANCES.c.balance).where(
                        BALANCES.c.chat_id == chat_id, BALANCES.c.user_id == user_id
                    )
                )
            ).scalar()
        if member is None:
            return MemberReport(user_id, "", first, last, activity, None, checkins or 0, 0, "new")
        name = " ".join(filter(None, (member.first_name, member.last_name)))
        joined = member.joined_at
        since = joined.astimezone(self.zone(chat_id)).date() if joined is not None else None
        return MemberReport(
            user_id,
            name,
            first,
            last,
            activity,
            since,
            checkins or 0,
            points or 0,
            member.tier or "new",
        )

    async def tier_counts(self, chat_id: int) -> dict[str, int]:
        """How many of the group's present members are in each tier."""
        return await tiers.tier_counts(self.engine, chat_id)

    async def recompute_tiers(self, chat_id: int) -> list[tiers.Change]:
        """The group's tiers computed now, from the events so far (/tiers refresh); a broken
        tiers file raises TierFileError and changes nothing."""
        tiers.load_rules(self.tiers_path)
        await self.rollup.catch_up()
        return await self.refresh_tiers(chat_id)

    async def forget(self, user_id: int) -> None:
        """Erase a member's personal data everywhere (/forgetme), their last events counted."""
        await self.rollup.catch_up()  # count their last events before they are anonymised
        await forget(self.engine, user_id)

    # -- running ------------------------------------------------------------------------------

    async def tick(self) -> int:
        return await self.run_due()

    def interval(self) -> float:
        return min(LOOK_EVERY, self.clock.max_sleep * 25)  # a test clock moves fast

    async def run_due(self) -> int:
        """Do the daily work of every active group whose day has come; return how many."""
        done = await self._done()
        due = []
        for chat_id, known in self.registry.groups.items():
            if known.status is not GroupStatus.ACTIVE or chat_id >= 0:
                continue
            local = self.clock.now().astimezone(self.zone(chat_id))
            yesterday = local.date() - timedelta(days=1)
            if local.hour >= DAILY_HOUR and done.get(chat_id, date.min) < yesterday:
                due.append((chat_id, yesterday))
        if due:
            await self.rollup.catch_up()
        for chat_id, day in due:
            try:
                await self.daily(chat_id, day)
            except Exception:
                logger.bind(chat_id=chat_id).exception("the daily analytics of the group failed")
        return len(due)

    async def _done(self) -> dict[int, date]:
        async with self.engine.connect() as conn:
            rows = await conn.execute(select(GROUP_CHECKS.c.chat_id, GROUP_CHECKS.c.day))
            return {chat_id: day for chat_id, day in rows}

    # -- one group's day ----------------------------------------------------------------------

    async def daily(self, chat_id: int, day: date) -> None:
        """Tiers, health and alerts of the group as of the end of `day`."""
        changes = await self.refresh_tiers(chat_id, day)
        zone = self.zone(chat_id)
        now = await scoring.health(self.engine, chat_id, day, zone)
        await scoring.store(self.engine, chat_id, now)
        scores = await scoring.weekly(self.engine, chat_id, day, zone, weeks=2)
        before = scores[-2] if len(scores) == 2 else 0
        if scoring.fell(now.score, before, self.health_drop) and not await self._recent_drop(
            chat_id
        ):
            details = {"score": now.score, "before": before, "parts": now.parts}
            await self._raise(chat_id, "drop", day.isoformat(), details)
        silent = await scoring.silent_since(self.engine, chat_id, day, self.silent_days)
        if silent is not None:
            details = {"since": silent.isoformat(), "days": (day - silent).days + 1}
            await self._raise(chat_id, "silent", silent.isoformat(), details)
        stmt = insert_for(self.engine, GROUP_CHECKS).values(chat_id=chat_id, day=day)
        async with writing(self.engine) as conn:
            await conn.execute(
                stmt.on_conflict_do_update(index_elements=["chat_id"], set_={"day": day})
            )
        logger.bind(chat_id=chat_id).info(
            "daily analytics for {}: health {}, {} tier changes", day, now.score, len(changes)
        )

    async def refresh_tiers(self, chat_id: int, day: date | None = None) -> list[tiers.Change]:
        """Compute the group's tiers (as of the end of `day`, default today) and emit each
        change as `tier.changed`; a broken tiers file changes nothing and is logged."""
        try:
            rules = tiers.load_rules(self.tiers_path)
        except tiers.TierFileError as exc:
            logger.error("tiers not computed: {}", exc)
            return []
        when = day or self.today(chat_id)
        now = self.clock.now()
        changes = await tiers.compute(self.engine, chat_id, when, self.zone(chat_id), rules, now)
        for change in changes:
            data = {"from": change.old, "to": change.new}
            await self.bus.publish(Happened("tier.changed", chat_id, change.user_id, data))
        return changes

    async def _recent_drop(self, chat_id: int) -> bool:
        """A fall was reported in the last week: a fall that goes on is not reported daily."""
        since = self.clock.now() - timedelta(days=7)
        async with self.engine.connect() as conn:
            found = await conn.execute(
                select(HEALTH_ALERTS.c.period).where(
                    HEALTH_ALERTS.c.chat_id == chat_id,
                    HEALTH_ALERTS.c.kind == "drop",
                    HEALTH_ALERTS.c.at > since,
                )
            )
            return found.first() is not None

    async def _raise(self, chat_id: int, kind: str, period: str, details: dict[str, Any]) -> None:
        """Store the alert; tell the admins and owners if it is new for its period."""
        stmt = insert_for(self.engine, HEALTH_ALERTS).values(
            chat_id=chat_id, kind=kind, period=period, at=self.clock.now(), detail=details
        )
        async with writing(self.engine) as conn:
            result = await conn.execute(stmt.on_conflict_do_nothing())
        if result.rowcount:
            await self.alert(chat_id, kind, details)
