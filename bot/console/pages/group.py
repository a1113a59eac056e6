"""The group page: one group's `/stats` figures for 7, 30 or 90 days with charts, its top
members, its settings (editable) and the changes made to it from the console.

    GET   /groups/{chat_id}?days=N             the page (tabs 7, 30, 90; default 30)
    GET   /api/groups/{chat_id}/stats?days=N   the figures, series, heatmap, tiers, top members
    GET   /api/groups/{chat_id}                the group, its settings and recent changes
    PATCH /api/groups/{chat_id}                change settings: {"timezone": …, "tags": […], …}

The page and the API read the same functions (`group_data`), so they never disagree.
"""

from __future__ import annotations

import json
from functools import cache
from typing import Any
from zoneinfo import available_timezones

from aiohttp import web

from bot.console._changes import Change
from bot.console._web import Console
from bot.console.pages.group_data import (
    PERIODS,
    SETTINGS,
    Invalid,
    change_settings,
    group_settings,
    group_stats,
    parse_days,
    parse_settings,
)
from bot.stats.tiers import TIERS

CHANGES_SHOWN = 20
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
CHART_WORDS = (
    "messages",
    "active",
    "joins",
    "leaves",
    "retention_rate",
    "retention_after",
    "joiners_counted",
    "no_joiners",
    "hour",
    "members",
    "count",
)


@cache
def zone_names() -> list[str]:
    """The IANA time zones the server knows, for the settings form's suggestions."""
    return sorted(name for name in available_timezones() if "/" in name)


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{value:.0%}"


def routes(console: Console) -> list[web.RouteDef]:
    app = console.app

    def days_of(request: web.Request) -> int:
        try:
            return parse_days(request.query.get("days"))
        except Invalid as exc:
            raise web.HTTPBadRequest(text=str(exc)) from None

    def shown(value: Any, t: Any) -> str:
        if value is None:
            return str(t("group.default"))
        if isinstance(value, list):
            return ", ".join(str(item) for item in value) or str(t("group.no_tags"))
        return str(value)

    def describe(change: Change, t: Any) -> str:
        """A change's details in words: `field: old → new` for settings, else key: value."""
        details = {key: value for key, value in change.details.items() if key != "by"}
        parts = []
        changed = details.pop("changed", None)
        if isinstance(changed, dict):
            for name, both in changed.items():
                label = f"group.setting_{name}"
                field = t(label) if label in console.labels.words else name
                if isinstance(both, dict) and {"old", "new"} <= set(both):
                    parts.append(f"{field}: {shown(both['old'], t)} → {shown(both['new'], t)}")
                else:
                    parts.append(f"{field}: {json.dumps(both, ensure_ascii=False)}")
        parts += [
            f"{key}: {json.dumps(value, ensure_ascii=False)}" for key, value in details.items()
        ]
        return "; ".join(parts)

    async def changes(chat_id: int) -> list[Change]:
        return await console.changes.recent(chat_ids=[chat_id], limit=CHANGES_SHOWN)

    def change_dict(change: Change) -> dict[str, Any]:
        return {
            "at": change.at.isoformat(),
            "user_id": change.user_id,
            "by": change.details.get("by"),
            "area": change.area,
            "action": change.action,
            "details": {key: value for key, value in change.details.items() if key != "by"},
        }

    async def page(request: web.Request) -> web.Response:
        known = console.group(request)
        chat_id = int(request.match_info["chat_id"])
        days = days_of(request)
        stats = await group_stats(app, chat_id, days)
        t = console.t(request)
        zone = app.analytics.zone(chat_id)
        shown_changes = [
            {
                "at": f"{change.at.astimezone(zone):%Y-%m-%d %H:%M}",
                "who": str(change.details.get("by") or change.user_id),
                "area": change.area,
                "action": change.action,
                "what": describe(change, t),
            }
            for change in await changes(chat_id)
        ]
        labels = {
            "words": {word: t(f"group.chart_{word}") for word in CHART_WORDS},
            "weekdays": [t(f"group.weekday_{day}") for day in WEEKDAYS],
            "tiers": {tier: t(f"group.tier_{tier}") for tier in TIERS},
        }
        return console.page(
            request,
            "group.html",
            group=known,
            chat_id=chat_id,
            days=days,
            periods=PERIODS,
            stats=stats,
            m=stats["metrics"],
            pct=_pct,
            settings=group_settings(app, chat_id),
            changes=shown_changes,
            chart_labels=labels,
            zones=zone_names(),
            tiers=TIERS,
        )

    async def stats_api(request: web.Request) -> web.Response:
        console.group(request)
        chat_id = int(request.match_info["chat_id"])
        return web.json_response(await group_stats(app, chat_id, days_of(request)))

    async def group_api(request: web.Request) -> web.Response:
        known = console.group(request)
        chat_id = int(request.match_info["chat_id"])
        return web.json_response(
            {
                "chat_id": chat_id,
                "title": app.registry.title(chat_id),
                "status": known.status.value,
                "settings": group_settings(app, chat_id),
                "changes": [change_dict(change) for change in await changes(chat_id)],
            }
        )

    async def change_api(request: web.Request) -> web.Response:
        console.group(request)
        chat_id = int(request.match_info["chat_id"])
        body = await console.body(request)
        try:
            wanted = parse_settings(body)
        except Invalid as exc:
            raise web.HTTPBadRequest(text=str(exc)) from None
        changed = await change_settings(app, chat_id, wanted)
        if changed:
            await console.record(request, "group", "settings", chat_id, changed=changed)
        return web.json_response({"settings": group_settings(app, chat_id), "changed": changed})

    return [
        web.get("/groups/{chat_id}", page),
        web.get("/api/groups/{chat_id}/stats", stats_api),
        web.get("/api/groups/{chat_id}", group_api),
        web.patch("/api/groups/{chat_id}", change_api),
    ]


__all__ = ["SETTINGS", "routes"]
