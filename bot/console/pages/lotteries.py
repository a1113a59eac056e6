"""The lotteries pages: the lotteries of the viewer's groups and one lottery in full.

/lotteries                     the list (?group=, ?status=open|drawn|cancelled, ?page=)
/lotteries/{id}                entrants, the draw's picks and winners, the verification (the
                               checks of `tidepool lottery verify`) and the audit export
/api/lotteries, /api/lotteries/{id}, /api/lotteries/{id}/audit.csv
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from aiohttp import web

from bot.console._web import Console
from bot.console.pages import lotteries_data as data
from bot.console.pages.members import when
from bot.lottery.store import LEFT_GROUP, WON_SINCE, Lottery

OUT_REASONS = {LEFT_GROUP: "lotteries.out_left", WON_SINCE: "lotteries.out_won_since"}


def routes(console: Console) -> list[web.RouteDef]:
    app = console.app
    store = app.lotteries.store

    def filters(request: web.Request) -> tuple[list[int], str | None, int, dict[str, str]]:
        group = request.query.get("group", "").strip()
        status = request.query.get("status", "").strip() or None
        page = request.query.get("page", "1").strip()
        if status is not None and status not in data.STATUSES:
            raise web.HTTPBadRequest(
                text=f"status must be one of {', '.join(data.STATUSES)}, not {status!r}"
            )
        if not page.isdigit() or int(page) < 1:
            raise web.HTTPBadRequest(text=f"page must be a number from 1, not {page!r}")
        chat_ids = [_group(request, group)] if group else console.visible_groups(request)
        query = {"group": group, "status": status or ""}
        return chat_ids, status, int(page), query

    def _group(request: web.Request, group: str) -> int:
        if not group.lstrip("-").isdigit():
            raise web.HTTPBadRequest(text=f"group must be a group id, not {group!r}")
        console.group(request, group)
        return int(group)

    def listed_json(row: dict[str, Any]) -> dict[str, Any]:
        return {**data.plain(row), "group": app.registry.title(row["chat_id"])}

    async def listing(request: web.Request) -> web.Response:
        chat_ids, status, page, query = filters(request)
        found = await data.listing(app.db, chat_ids, status=status, page=page)
        filled = {key: value for key, value in query.items() if value}
        return console.page(
            request,
            "lotteries.html",
            found=found,
            chosen=query,
            statuses=data.STATUSES,
            groups=sorted(
                ((c, app.registry.title(c)) for c in console.visible_groups(request)),
                key=lambda g: g[1].casefold(),
            ),
            title=app.registry.title,
            when=lambda at, chat_id=None: when(console, at, chat_id),
            page_link=lambda number: "?" + urlencode({**filled, "page": number}),
        )

    async def listing_api(request: web.Request) -> web.Response:
        chat_ids, status, page, _ = filters(request)
        found = await data.listing(app.db, chat_ids, status=status, page=page)
        return web.json_response(
            {
                "lotteries": [listed_json(row) for row in found.rows],
                "total": found.total,
                "page": found.page,
                "pages": found.pages,
                "per_page": data.PER_PAGE,
            }
        )

    async def the_lottery(request: web.Request) -> Lottery:
        lottery_id = int(request.match_info["id"])
        lottery = await store.get(lottery_id)
        if lottery is None:
            raise web.HTTPNotFound(text=f"no lottery {lottery_id}")
        console.group(request, lottery.chat_id)
        return lottery

    async def found_detail(request: web.Request) -> data.Detail:
        lottery = await the_lottery(request)
        found = await data.detail(app.db, store, lottery.id)
        if found is None:
            raise web.HTTPNotFound(text=f"no lottery {lottery.id}")
        return found

    async def lottery_page(request: web.Request) -> web.Response:
        found = await found_detail(request)
        lottery = found.lottery
        return console.page(
            request,
            "lottery.html",
            d=found,
            lottery=data.lottery_dict(lottery),
            group=app.registry.title(lottery.chat_id),
            out_reasons=OUT_REASONS,
            when=lambda at: when(console, at, lottery.chat_id),
        )

    async def lottery_api(request: web.Request) -> web.Response:
        found = await found_detail(request)
        answer = found.as_dict()
        answer["lottery"]["group"] = app.registry.title(found.lottery.chat_id)
        return web.json_response(answer)

    async def audit_csv(request: web.Request) -> web.Response:
        lottery = await the_lottery(request)
        text = await data.audit_csv(app.db, lottery)
        return web.Response(
            body=("\ufeff" + text).encode("utf-8"),
            headers={
                "Content-Type": "text/csv; charset=utf-8",
                "Content-Disposition": f'attachment; filename="lottery-{lottery.id}-audit.csv"',
            },
        )

    return [
        web.get("/lotteries", listing),
        web.get(r"/lotteries/{id:\d+}", lottery_page),
        web.get("/api/lotteries", listing_api),
        web.get(r"/api/lotteries/{id:\d+}", lottery_api),
        web.get(r"/api/lotteries/{id:\d+}/audit.csv", audit_csv),
    ]
