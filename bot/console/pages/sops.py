"""The SOPs page: each SOP's state per group, its runs, its step funnel; switching it per group.

`/sops` shows every group the viewer sees (`?group=ID`: one group, with each SOP's last
failure there), over a window of 7, 30 or 90 days (`?days=`, 30 by default). Switching goes
through `SopAdmin.switch`, the path `/sop_on` and `/sop_off` take in the chat, so the running
engine obeys at once (runs in progress stop when switched off). The data is in `sops_data`.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, tzinfo
from typing import Any
from urllib.parse import urlencode

from aiohttp import web

from bot.console._changes import Change
from bot.console._web import Console
from bot.console.pages import sops_data
from bot.console.pages.sops_data import FunnelStep, Overview, SopView
from bot.db import RunStatus
from bot.sop.admin import SopAdmin
from bot.stats.metrics import Comparison, bounds, window

DEFAULT_DAYS = 30
OPEN_UP_TO = 20  # groups: each SOP's table of groups starts open up to this many
# With more groups, each SOP's table lists only the groups where it does not run (up to this
# many); choosing one group shows its every switch. The API always gives every group.
TABLE_UP_TO = 50
T = Callable[..., str]


def parse_days(request: web.Request) -> int:
    raw = request.query.get("days", str(DEFAULT_DAYS))
    if not raw.isdigit() or int(raw) not in sops_data.WINDOWS:
        raise web.HTTPBadRequest(text=f"days: 7, 30 or 90, not {raw!r}")
    return int(raw)


def percent(rate: float | None) -> str:
    return "–" if rate is None else f"{rate * 100:.1f}%"


def verdict(comparison: Comparison, t: T) -> tuple[str, str]:
    """The two-proportion test's verdict: its name and the sentence saying it."""
    values = {
        "better": comparison.better.variant,
        "worse": comparison.worse.variant,
        "better_rate": percent(comparison.better.rate),
        "worse_rate": percent(comparison.worse.rate),
    }
    if comparison.p_value is None:
        return "too_few", t("sops.verdict_too_few", **values)
    name = "real" if comparison.significant else "chance"
    p = f"{comparison.p_value:.3f}" if comparison.significant else f"{comparison.p_value:.2f}"
    return name, t(f"sops.verdict_{name}", p=p, **values)


def step_dict(step: FunnelStep, t: T) -> dict[str, Any]:
    found: dict[str, Any] = {
        "step": step.step,
        "sent": step.sent,
        "answered": step.answered,
        "rate": round(step.rate, 4),
        "drop_off": None if step.drop_off is None else round(step.drop_off, 4),
        "variants": [
            {"variant": v.variant, "sent": v.sent, "answered": v.answered, "rate": round(v.rate, 4)}
            for v in step.variants
        ],
        "comparison": None,
    }
    c = step.comparison
    if c is not None:
        name, says = verdict(c, t)
        found["comparison"] = {
            "better": c.better.variant,
            "worse": c.worse.variant,
            "p_value": None if c.p_value is None else round(c.p_value, 6),
            "significant": c.significant,
            "verdict": name,
            "says": says,
        }
    return found


def sop_dict(view: SopView, titles: dict[int, str], zones: Callable[[int], tzinfo], t: T) -> Any:
    sop = view.procedure.sop
    groups = sop.groups
    return {
        "id": view.id,
        "name": sop.name,
        "description": sop.description,
        "enabled": sop.enabled,  # as its file says
        "groups": "all" if groups == "all" else {"ids": groups.ids, "tags": groups.tags},
        "broken": None if view.broken is None else sops_data.broken_dict(view.broken),
        "runs": {status.value: view.runs[status.value] for status in RunStatus},
        "in_progress": sum(view.runs[s.value] for s in sops_data.IN_PROGRESS),
        "states": [
            {
                **cell.as_dict(),
                "title": titles.get(cell.chat_id, str(cell.chat_id)),
                "in_progress": sum(cell.runs[s.value] for s in sops_data.IN_PROGRESS),
                "last_failure": cell.last_failure
                and {
                    "at": _iso(cell.last_failure["at"]),
                    "local": _local(cell.last_failure["at"], zones(cell.chat_id)),
                    "reason": cell.last_failure["reason"],
                },
            }
            for cell in view.cells
        ],
        "sent": sum(step.sent for step in view.funnel),
        "answered": sum(step.answered for step in view.funnel),
        "funnel": [step_dict(step, t) for step in view.funnel],
    }


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat()


def _local(moment: datetime | None, zone: tzinfo) -> str:
    return "" if moment is None else f"{moment.astimezone(zone):%Y-%m-%d %H:%M}"


def change_dict(change: Change, title: str, zone: tzinfo, t: T) -> dict[str, Any]:
    sop = str(change.details.get("sop", ""))
    return {
        "at": change.at.isoformat(),
        "when": _local(change.at, zone),
        "user_id": change.user_id,
        "who": str(change.details.get("by", change.user_id)),
        "chat_id": change.chat_id,
        "action": change.action,
        "sop": sop,
        "what": t(f"sops.change_{change.action}", sop=sop, group=title),
    }


def routes(console: Console) -> list[web.RouteDef]:
    app = console.app
    admin = SopAdmin(app.engine)

    def titles_of(chat_ids: list[int]) -> dict[int, str]:
        return {chat_id: app.registry.title(chat_id) for chat_id in chat_ids}

    async def gather(request: web.Request) -> dict[str, Any]:
        """What the page shows and the API answers."""
        days = parse_days(request)
        raw = request.query.get("group", "")
        focus: int | None = None
        if raw:
            console.group(request, raw)  # 400 not a number, 403 not theirs, 404 unknown
            focus = int(raw)
        visible = console.visible_groups(request)
        chat_ids = [focus] if focus is not None else visible
        await app.rollup.catch_up()  # the latest sends and answers, as /stats reads them
        windows = {
            chat_id: bounds(
                *window(app.analytics.today(chat_id), days), app.analytics.zone(chat_id)
            )
            for chat_id in chat_ids
        }
        found: Overview = await sops_data.overview(
            admin, chat_ids, windows, days, detail=focus is not None
        )
        t = console.t(request)
        shown = sorted({*visible, *chat_ids})
        titles = titles_of(shown)
        viewer = console.viewer(request)
        changes = await console.changes.recent(
            chat_ids=None if viewer.owner and focus is None else chat_ids,
            areas=("sop",),
            limit=20,
        )
        zone = app.settings.tz
        groups = app.registry.groups
        return {
            "days": days,
            "group": focus,
            "groups": [
                {
                    "chat_id": chat_id,
                    "title": titles[chat_id],
                    "tags": list(groups[chat_id].tags) if chat_id in groups else [],
                }
                for chat_id in sorted(shown, key=lambda c: (titles[c].casefold(), c))
            ],
            "sops": [sop_dict(view, titles, app.analytics.zone, t) for view in found.sops],
            "broken_files": [sops_data.broken_dict(b) for b in found.broken_files],
            "changes": [
                change_dict(change, app.registry.title(change.chat_id or 0), zone, t)
                for change in changes
            ],
        }

    async def page(request: web.Request) -> web.Response:
        data = await gather(request)
        query = {"group": str(data["group"])} if data["group"] is not None else {}
        links = [(d, "/sops?" + urlencode({**query, "days": d})) for d in sops_data.WINDOWS]
        return console.page(
            request,
            "sops.html",
            data=data,
            windows=links,
            statuses=[status.value for status in RunStatus],
            open_groups=len(data["groups"]) <= OPEN_UP_TO or data["group"] is not None,
            many=data["group"] is None and len(data["groups"]) > TABLE_UP_TO,
            table_limit=TABLE_UP_TO,
            percent=percent,
        )

    async def api(request: web.Request) -> web.Response:
        return web.json_response(await gather(request))

    async def switch(request: web.Request) -> web.Response:
        known = console.group(request)
        chat_id = int(request.match_info["chat_id"])
        sop_id = request.match_info["sop_id"]
        if app.engine.library.get(sop_id) is None:
            raise web.HTTPNotFound(text=f"there is no SOP {sop_id}")
        body = await console.body(request)
        on = body.get("on")
        if not isinstance(on, bool):
            raise web.HTTPBadRequest(text="on: must be true or false")
        key, _ = await admin.switch(chat_id, sop_id, on, console.viewer(request).user_id)
        if key == "sop.unknown":  # reloaded away meanwhile
            raise web.HTTPNotFound(text=f"there is no SOP {sop_id}")
        if key == "sop.not_for_group":
            raise web.HTTPConflict(
                text=f"SOP {sop_id} is not meant for {known.title or chat_id} (see its groups)"
            )
        await console.record(request, "sop", "on" if on else "off", chat_id, sop=sop_id)
        procedure = app.engine.library.get(sop_id)
        running = procedure is not None and app.engine.runs_in(procedure, chat_id)
        return web.json_response({"sop": sop_id, "chat_id": chat_id, "on": running})

    return [
        web.get("/sops", page),
        web.get("/api/sops", api),
        web.post("/api/groups/{chat_id}/sops/{sop_id}", switch),
    ]
