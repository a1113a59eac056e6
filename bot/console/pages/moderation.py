"""The moderation page: one group's mode, its measured honesty and its moderation log.

    GET  /groups/{chat_id}/moderation?page=N          the page: the mode with its switch, the
                                                      last 30 days' actions, undone and
                                                      false-positive rate, the log (50 a page)
    GET  /api/groups/{chat_id}/moderation?page=N      the same as JSON
    POST /api/groups/{chat_id}/moderation/mode        {"mode": "on" | "off" | "dry"}, as
                                                      `/moderation` in the group
    POST /api/groups/{chat_id}/moderation/{action_id}/decision
                                                      {"decision": "not_spam" | "ban"} on a
                                                      message the checks deleted, as the
                                                      buttons of the admins' report

The figures are `Analytics.moderation`'s, the ones /stats and /moderation show, so the page
and the chat never disagree. A decision goes through `Review.decide` as the viewer, which asks
Telegram whether they are an admin of the group (owners are admins everywhere, as in the
chat); a mode goes through `Moderation.set_mode` as the viewer. Both are recorded as console
changes, and the moderation log records what was done.
"""

from __future__ import annotations

from typing import Any, cast
from urllib.parse import urlencode

from aiogram.types import User
from aiohttp import web

from bot.console._web import Console
from bot.console.pages import moderation_data as data
from bot.console.pages.members import change_rows, when
from bot.moderation.protocol import MODES, Mode

CHANGES_SHOWN = 20
# The console's words for a decision, and Review's: "ok" is "Not spam".
DECISIONS = {"not_spam": "ok", "ban": "ban"}
REFUSALS = {
    "moderation.decide_not_admin": web.HTTPForbidden,
    "moderation.decided_already": web.HTTPConflict,
    "moderation.decide_gone": web.HTTPNotFound,
    "moderation.decide_failed": web.HTTPBadGateway,  # Telegram refused (the bot's rights)
}


def share(value: float | None) -> str:
    """The false-positive rate as the page shows it; "–" when nothing was done."""
    return "–" if value is None else f"{value:.0%}"


def routes(console: Console) -> list[web.RouteDef]:
    app = console.app
    moderation = app.moderation
    review = app.screening.review

    def chat_of(request: web.Request) -> int:
        """The path's group, once the viewer may see it (else 400, 403 or 404)."""
        console.group(request)
        return int(request.match_info["chat_id"])

    def page_of(request: web.Request) -> int:
        page = request.query.get("page", "1").strip()
        if not page.isdigit() or int(page) < 1:
            raise web.HTTPBadRequest(text=f"page must be a number from 1, not {page!r}")
        return int(page)

    def word(request: web.Request, kind: str, value: str | None) -> str:
        """A label for an action, a check or a state; the value itself when there is none
        (a check or trigger the console has no words for)."""
        if value is None:
            return ""
        key = f"moderation.{kind}_{value}"
        return console.t(request)(key) if key in console.labels.words else value

    async def page(request: web.Request) -> web.Response:
        chat_id = chat_of(request)
        found = await data.overview(moderation, app.analytics, chat_id, page_of(request))
        changes = await console.changes.recent(
            chat_ids=[chat_id], areas=("moderation",), limit=CHANGES_SHOWN
        )
        return console.page(
            request,
            "moderation.html",
            chat_id=chat_id,
            group_title=app.registry.title(chat_id),
            o=found,
            f=found.figures.honesty,
            modes=MODES,
            rate=share(found.figures.honesty.false_positive_rate),
            word=lambda kind, value: word(request, kind, value),
            when=lambda at: when(console, at, chat_id),
            page_link=lambda number: "?" + urlencode({"page": number}),
            changes=change_rows(console, request, changes),
        )

    async def api(request: web.Request) -> web.Response:
        chat_id = chat_of(request)
        found = await data.overview(moderation, app.analytics, chat_id, page_of(request))
        return web.json_response({**found.as_dict(), "title": app.registry.title(chat_id)})

    async def switch_mode(request: web.Request) -> web.Response:
        chat_id = chat_of(request)
        wanted = (await console.body(request)).get("mode")
        if wanted not in MODES:
            raise web.HTTPBadRequest(text=f"mode: must be one of {', '.join(MODES)}")
        mode = cast(Mode, wanted)
        before = moderation.mode(chat_id)
        if mode != before:
            await moderation.set_mode(chat_id, mode, console.viewer(request).user_id)
            await console.record(request, "moderation", "mode", chat_id, mode=mode, before=before)
        return web.json_response(
            {"chat_id": chat_id, "mode": mode, "before": before, "changed": mode != before}
        )

    async def decide(request: web.Request) -> web.Response:
        chat_id = chat_of(request)
        action_id = int(request.match_info["action_id"])
        decision = (await console.body(request)).get("decision")
        if decision not in DECISIONS:
            raise web.HTTPBadRequest(text="decision: must be not_spam or ban")
        t = console.t(request)
        action = await moderation.store.action(action_id)
        if action is None or action.chat_id != chat_id:
            raise web.HTTPNotFound(text=t("moderation.no_action", id=action_id))
        if not data.reviewable(action) or action.user_id is None:
            raise web.HTTPConflict(text=t("moderation.not_reviewable"))
        viewer = console.viewer(request)
        admin = User(id=viewer.user_id, is_bot=False, first_name=viewer.name or str(viewer.user_id))
        key, _ = await review.decide(DECISIONS[decision], action_id, admin)
        refused = REFUSALS.get(key)
        if refused is not None:
            raise refused(text=t(key))
        names = await data.member_names(moderation.store.engine, chat_id, [action.user_id])
        name = names.get(action.user_id, str(action.user_id))
        await console.record(
            request,
            "moderation",
            decision,
            chat_id,
            user=action.user_id,
            name=name,
            action_id=action_id,
        )
        answer: dict[str, Any] = {
            "decision": decision,
            "action_id": action_id,
            "user_id": action.user_id,
            "said": t(f"moderation.decided_{decision}", name=name),
        }
        return web.json_response(answer)

    group = r"/groups/{chat_id:-?\d+}/moderation"
    return [
        web.get(group, page),
        web.get("/api" + group, api),
        web.post("/api" + group + "/mode", switch_mode),
        web.post("/api" + group + r"/{action_id:\d+}/decision", decide),
    ]
