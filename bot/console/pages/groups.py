"""The groups page: every group the viewer may see, with its size, activity and health.

One row per group: present members (people), members who wrote in the last 7 days, messages
in the last 7 days (of the group's own calendar), the health score the daily job stored last
and its change from the week before, and the health alerts of the last 7 days. A group with an
alert, or whose score fell by HEALTH_DROP or more, is dying and stands out. Read in a few set
queries (not one per group), so a thousand groups take one page load.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import asdict, dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

from aiohttp import web
from sqlalchemy import distinct, func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.console._web import Console
from bot.db import GROUP_DAYS, HEALTH_ALERTS, HEALTH_SCORES, MEMBER_DAYS, MEMBERS, PRESENT
from bot.stats.health import fell

WEEK = 7


@dataclass
class GroupRow:
    chat_id: int
    title: str
    tags: list[str]
    members: int = 0
    active_7d: int = 0
    messages_7d: int = 0
    health: int | None = None
    health_before: int | None = None
    alerts: list[dict[str, Any]] = field(default_factory=list)
    dying: bool = False

    @property
    def trend(self) -> int | None:
        if self.health is None or self.health_before is None:
            return None
        return self.health - self.health_before

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "trend": self.trend}


async def overview(
    db: AsyncEngine,
    groups: dict[int, tuple[str, list[str], date]],
    *,
    now: datetime,
    health_drop: float,
) -> list[GroupRow]:
    """The rows of `groups` ({chat id: (title, tags, today in its time zone)}), by title."""
    rows = {c: GroupRow(c, title, tags) for c, (title, tags, _) in groups.items()}
    if not rows:
        return []
    ids = list(rows)
    # Groups whose 7 days start on the same day (most share a time zone) are counted together.
    windows: dict[date, list[int]] = defaultdict(list)
    for chat_id, (_, _, today) in groups.items():
        windows[today - timedelta(days=WEEK - 1)].append(chat_id)
    first = min(windows)
    async with db.connect() as conn:
        for chat_id, count in await conn.execute(
            select(MEMBERS.c.chat_id, func.count())
            .where(
                MEMBERS.c.chat_id.in_(ids),
                MEMBERS.c.status.in_(sorted(PRESENT)),
                MEMBERS.c.is_bot.is_(False),
            )
            .group_by(MEMBERS.c.chat_id)
        ):
            rows[chat_id].members = count
        for since, chats in windows.items():
            for chat_id, messages in await conn.execute(
                select(GROUP_DAYS.c.chat_id, func.sum(GROUP_DAYS.c.messages))
                .where(GROUP_DAYS.c.chat_id.in_(chats), GROUP_DAYS.c.day >= since)
                .group_by(GROUP_DAYS.c.chat_id)
            ):
                rows[chat_id].messages_7d = int(messages or 0)
            for chat_id, active in await conn.execute(
                select(MEMBER_DAYS.c.chat_id, func.count(distinct(MEMBER_DAYS.c.user_id)))
                .where(
                    MEMBER_DAYS.c.chat_id.in_(chats),
                    MEMBER_DAYS.c.day >= since,
                    MEMBER_DAYS.c.messages > 0,
                )
                .group_by(MEMBER_DAYS.c.chat_id)
            ):
                rows[chat_id].active_7d = active
        scores: dict[int, list[tuple[date, int]]] = defaultdict(list)
        for chat_id, day, score in await conn.execute(
            select(HEALTH_SCORES.c.chat_id, HEALTH_SCORES.c.day, HEALTH_SCORES.c.score).where(
                HEALTH_SCORES.c.chat_id.in_(ids),
                HEALTH_SCORES.c.day >= first - timedelta(days=2 * WEEK),
            )
        ):
            scores[chat_id].append((day, score))
        for chat_id, kind, period, at, detail in await conn.execute(
            select(
                HEALTH_ALERTS.c.chat_id,
                HEALTH_ALERTS.c.kind,
                HEALTH_ALERTS.c.period,
                HEALTH_ALERTS.c.at,
                HEALTH_ALERTS.c.detail,
            ).where(
                HEALTH_ALERTS.c.chat_id.in_(ids), HEALTH_ALERTS.c.at >= now - timedelta(days=WEEK)
            )
        ):
            rows[chat_id].alerts.append(
                {"kind": kind, "period": period, "at": at.isoformat(), "detail": detail}
            )
    for chat_id, found in scores.items():
        row = rows[chat_id]
        found.sort()
        last_day, row.health = found[-1]
        before = dict(found).get(last_day - timedelta(days=WEEK))
        row.health_before = before
    for row in rows.values():
        fallen = row.health is not None and row.health_before is not None
        row.dying = bool(row.alerts) or (
            fallen and fell(row.health or 0, row.health_before or 0, health_drop)
        )
    return sorted(rows.values(), key=lambda r: (r.title.casefold(), r.chat_id))


def routes(console: Console) -> list[web.RouteDef]:
    async def rows(request: web.Request) -> list[GroupRow]:
        app = console.app
        registry = app.registry
        wanted = {
            chat_id: (
                registry.title(chat_id),
                list(registry.groups[chat_id].tags),
                app.analytics.today(chat_id),
            )
            for chat_id in console.visible_groups(request)
        }
        return await overview(
            app.db, wanted, now=app.clock.now(), health_drop=app.settings.health_drop
        )

    async def page(request: web.Request) -> web.Response:
        found = await rows(request)
        return console.page(request, "groups.html", groups=found, dying=sum(r.dying for r in found))

    async def api(request: web.Request) -> web.Response:
        return web.json_response({"groups": [row.as_dict() for row in await rows(request)]})

    return [web.get("/", page), web.get("/api/groups", api)]
