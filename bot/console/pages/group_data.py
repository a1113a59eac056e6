"""The group page's data: a group's `/stats` figures as JSON, its top members, its settings.

`group_stats` is what the page draws and `GET /api/groups/{id}/stats` answers: the metrics of
`bot.stats.metrics.group_metrics` (as `/stats` and `tidepool stats` compute them), the weekly
health scores, the tiers and the window's top writers. Per request: the rollup catches up (as
`/stats` does; with nothing new that is a flush and two small reads), then four reads run side
by side, each on its own connection: `group_metrics` (about a dozen indexed reads of the
window's daily rollups, none per day), the stored health scores (one read; the missing latest
week is computed and stored once, as `/stats` does), the tier counts (one grouped read) and the
top members (one grouped read of the window's member days with their names, and one of their
points).

Settings are changed as `/group` changes them (`Registry.set_group`), so the running bot uses
the new values at once; `parse_settings` checks every field before anything is written.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import and_, func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.db import HEALTH_SCORES, MEMBER_DAYS, MEMBERS, PRESENT
from bot.factory import Tidepool
from bot.points import balances
from bot.push.broadcasts import BroadcastError, Target
from bot.push.rules import OFF, QuietHours
from bot.stats import health as scoring
from bot.stats.metrics import RETENTION_DAYS, GroupMetrics, group_metrics, window
from bot.stats.tiers import TIERS

PERIODS = (7, 30, 90)  # the page's tabs
DEFAULT_DAYS = 30
MAX_DAYS = 365
TOP = 10  # members in the top list
HEALTH_WEEKS = 4
LANGUAGES = ("zh", "en")
DEFAULT = ("", "default")  # what resets a setting to the server's default
SETTINGS = ("timezone", "language", "tags", "quiet_hours", "daily_cap")
MAX_CAP = 1000


class Invalid(ValueError):
    """A value the console refuses; the message names the field."""


def parse_days(raw: str | None) -> int:
    """The `days` of a request (default 30); Invalid unless a whole number from 1 to 365."""
    if raw is None or raw == "":
        return DEFAULT_DAYS
    if not raw.strip().isdigit() or not 1 <= int(raw) <= MAX_DAYS:
        raise Invalid(f"days: {raw!r} is not a number of days from 1 to {MAX_DAYS}")
    return int(raw)


# ----- statistics ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TopMember:
    user_id: int
    name: str
    username: str | None
    tier: str
    present: bool
    messages: int
    active_days: int
    last_day: date
    points: int

    def as_dict(self) -> dict[str, Any]:
        return {
            "user_id": self.user_id,
            "name": self.name,
            "username": self.username,
            "tier": self.tier,
            "present": self.present,
            "messages": self.messages,
            "active_days": self.active_days,
            "last_day": self.last_day.isoformat(),
            "points": self.points,
        }


async def top_members(
    engine: AsyncEngine, chat_id: int, first: date, last: date, limit: int = TOP
) -> list[TopMember]:
    """The window's top writers by messages (ties by id), with their tier and points."""
    messages = func.sum(MEMBER_DAYS.c.messages)
    totals = (
        select(
            MEMBER_DAYS.c.user_id,
            messages.label("messages"),
            func.count().label("active_days"),
            func.max(MEMBER_DAYS.c.day).label("last_day"),
        )
        .where(
            MEMBER_DAYS.c.chat_id == chat_id,
            MEMBER_DAYS.c.day.between(first, last),
            MEMBER_DAYS.c.messages > 0,
        )
        .group_by(MEMBER_DAYS.c.user_id)
        .order_by(messages.desc(), MEMBER_DAYS.c.user_id)
        .limit(limit)
        .subquery()
    )
    query = (
        select(
            totals,
            MEMBERS.c.first_name,
            MEMBERS.c.last_name,
            MEMBERS.c.username,
            MEMBERS.c.tier,
            MEMBERS.c.status,
        )
        .select_from(
            totals.outerjoin(
                MEMBERS, and_(MEMBERS.c.chat_id == chat_id, MEMBERS.c.user_id == totals.c.user_id)
            )
        )
        .order_by(totals.c.messages.desc(), totals.c.user_id)
    )
    present = {status.value for status in PRESENT}
    async with engine.connect() as conn:
        rows = list(await conn.execute(query))
        points = await balances(conn, chat_id, [int(row.user_id) for row in rows])
    return [
        TopMember(
            user_id=int(row.user_id),
            name=" ".join(part for part in (row.first_name, row.last_name) if part),
            username=row.username,
            tier=row.tier or "new",
            present=row.status in present,
            messages=int(row.messages),
            active_days=int(row.active_days),
            last_day=row.last_day,
            points=points.get(int(row.user_id), 0),
        )
        for row in rows
    ]


async def weekly_health(app: Tidepool, chat_id: int, last: date) -> list[int]:
    """The weekly health scores up to `last` (a finished day), oldest first, as `/stats` shows
    them: read from what the daily job stored; when this week's is not stored yet, computed
    (and stored) by `health.weekly` as `/stats` does. Weeks before the group had anyone are
    left out."""
    days = [last - timedelta(days=7 * back) for back in reversed(range(HEALTH_WEEKS))]
    async with app.db.connect() as conn:
        rows = await conn.execute(
            select(HEALTH_SCORES.c.day, HEALTH_SCORES.c.score).where(
                HEALTH_SCORES.c.chat_id == chat_id, HEALTH_SCORES.c.day.in_(days)
            )
        )
        known = {day: int(score) for day, score in rows}
    if last not in known:
        zone = app.analytics.zone(chat_id)
        return await scoring.weekly(app.db, chat_id, last, zone, weeks=HEALTH_WEEKS)
    return [known[day] for day in days if day in known]


def _retention(metrics: GroupMetrics) -> list[dict[str, Any]]:
    found = []
    for n in RETENTION_DAYS:
        wrote, counted = metrics.retention.get(n, (0, 0))
        rate = metrics.retention_rate(n)
        found.append(
            {
                "days": n,
                "wrote": wrote,
                "counted": counted,
                "rate": None if rate is None else round(rate, 4),
            }
        )
    return found


async def group_stats(app: Tidepool, chat_id: int, days: int) -> dict[str, Any]:
    """Everything the group page shows of the last `days` days (today included), as JSON."""
    await app.rollup.catch_up()
    analytics = app.analytics
    zone = analytics.zone(chat_id)
    first, last = window(analytics.today(chat_id), days)
    metrics, health, tiers, top = await asyncio.gather(
        group_metrics(app.db, chat_id, first, last, zone),
        weekly_health(app, chat_id, last - timedelta(days=1)),
        analytics.tier_counts(chat_id),
        top_members(app.db, chat_id, first, last),
    )
    score = health[-1] if health else None
    trend = health[-1] - health[-2] if len(health) >= 2 else None
    return {
        "chat_id": chat_id,
        "title": app.registry.title(chat_id),
        "days": days,
        "first_day": first.isoformat(),
        "last_day": last.isoformat(),
        "metrics": metrics.as_dict(),
        "series": [
            {
                "day": d.day.isoformat(),
                "messages": d.messages,
                "active": d.active,
                "joins": d.joins,
                "leaves": d.leaves,
            }
            for d in metrics.days
        ],
        "heatmap": metrics.heatmap,  # [weekday, Monday first][hour] of the group's clock
        "retention": _retention(metrics),
        "tiers": [{"tier": tier, "count": tiers.get(tier, 0)} for tier in TIERS],
        "top_members": [member.as_dict() for member in top],
        "health": {"score": score, "weekly": health, "trend": trend},
        "comparisons": [
            {
                "sop": c.sop,
                "step": c.step,
                "better": c.better.variant,
                "better_rate": round(c.better.rate, 4),
                "worse": c.worse.variant,
                "worse_rate": round(c.worse.rate, 4),
                "p_value": None if c.p_value is None else round(c.p_value, 4),
                "significant": c.significant,
            }
            for c in metrics.comparisons
        ],
    }


# ----- settings -----------------------------------------------------------------------------


def group_settings(app: Tidepool, chat_id: int) -> dict[str, Any]:
    """The group's settings as stored (None: the server's default) and as in force now."""
    known = app.registry.groups[chat_id]
    rules = app.pushes.rules(chat_id)
    return {
        "timezone": known.timezone,
        "language": known.language,
        "tags": list(known.tags),
        "quiet_hours": known.quiet_hours,
        "daily_cap": known.daily_cap,
        "in_force": {
            "timezone": str(getattr(rules.zone, "key", rules.zone)),
            "language": app.registry.language(chat_id, app.settings.language),
            "quiet_hours": str(rules.quiet) if rules.quiet else "off",
            "daily_cap": rules.cap,
        },
        "defaults": {
            "timezone": app.settings.timezone,
            "language": app.settings.language,
            "quiet_hours": app.settings.quiet_hours,
            "daily_cap": app.settings.daily_cap,
        },
    }


def _is_default(value: Any) -> bool:
    return value is None or (isinstance(value, str) and value.strip().lower() in DEFAULT)


def _timezone(value: Any) -> str | None:
    if _is_default(value):
        return None
    if not isinstance(value, str):
        raise Invalid("timezone: give a time zone name such as Asia/Shanghai, or default")
    name = value.strip()
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise Invalid(
            f"timezone: {name!r} is not a time zone; use a name such as Asia/Shanghai"
        ) from None
    return name


def _language(value: Any) -> str | None:
    if _is_default(value):
        return None
    if value not in LANGUAGES:
        raise Invalid(f"language: {value!r} is not a language here; use zh, en or default")
    return str(value)


def _tags(value: Any) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(tag, str) for tag in value):
        raise Invalid('tags: give a list of tags, like ["vip", "course"]')
    found: list[str] = []
    for raw in value:
        tag = raw.strip()
        if not tag:
            continue
        parsed: tuple[str, ...] = ()
        with contextlib.suppress(BroadcastError):
            parsed = Target.parse(tag).tags
        if parsed != (tag,):
            raise Invalid(
                f"tags: {tag!r} is not a tag; use letters, digits, _ . and -, up to 64, "
                "not only digits, not 'all'"
            )
        if tag not in found:
            found.append(tag)
    return found


def _quiet_hours(value: Any) -> str | None:
    if _is_default(value):
        return None
    if not isinstance(value, str):
        raise Invalid("quiet_hours: give a window like 22:00-08:00, off or default")
    if value.strip().lower() in OFF:
        return "off"
    try:
        quiet = QuietHours.parse(value)
    except ValueError as exc:
        raise Invalid(f"quiet_hours: {exc}") from None
    return str(quiet) if quiet else "off"


def _daily_cap(value: Any) -> int | None:
    if _is_default(value):
        return None
    if isinstance(value, str):
        text = value.strip().lower()
        if text == "off":
            return 0
        value = int(text) if text.isdigit() else value
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_CAP:
        raise Invalid(
            f"daily_cap: {value!r} is not a daily cap; give a number from 0 (no cap) "
            f"to {MAX_CAP}, or default"
        )
    return value


PARSERS = {
    "timezone": _timezone,
    "language": _language,
    "tags": _tags,
    "quiet_hours": _quiet_hours,
    "daily_cap": _daily_cap,
}


def parse_settings(body: dict[str, Any]) -> dict[str, Any]:
    """The settings `body` asks for, checked (as stored: None is the default); Invalid with
    a message naming the field for the first bad one."""
    unknown = sorted(set(body) - set(SETTINGS))
    if unknown:
        raise Invalid(f"{unknown[0]}: no such setting; the settings are {', '.join(SETTINGS)}")
    if not body:
        raise Invalid(f"nothing to change; give one or more of {', '.join(SETTINGS)}")
    return {name: PARSERS[name](body[name]) for name in SETTINGS if name in body}


async def change_settings(
    app: Tidepool, chat_id: int, wanted: dict[str, Any]
) -> dict[str, dict[str, Any]]:
    """Store the settings that differ from the group's (as `/group` does, through the
    registry, so the bot uses them at once); return {field: {"old": …, "new": …}}."""
    current = group_settings(app, chat_id)
    changed = {
        name: {"old": current[name], "new": value}
        for name, value in wanted.items()
        if current[name] != value
    }
    if changed:
        await app.registry.set_group(
            chat_id, **{name: both["new"] for name, both in changed.items()}
        )
    return changed
