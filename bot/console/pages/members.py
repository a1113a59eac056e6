"""The members pages: search the members of the viewer's groups, a member's history, tags,
points adjustments and the CSV export.

/members                              the list (?q= name, @username or id; group, tier, tag, page)
/members/{chat_id}/{user_id}          one member in one group: joins, check-ins, the points
                                      ledger, tier changes, tags, and the console's changes
/api/members, /api/members.csv        the list as JSON, and all of it as CSV
/api/members/{chat_id}/{user_id}      the member's history as JSON
  POST   …/tags {"tag": …}            tag the member (as an SOP's `tag` step does)
  DELETE …/tags/{tag}                 take the tag off
  POST   …/points {"delta", "reason"} adjust their points (as /points does, not below zero)
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from urllib.parse import urlencode

from aiohttp import web

from bot import points
from bot.console._changes import Change
from bot.console._web import CSP, Console
from bot.console.pages import member_data as one
from bot.console.pages import members_data as data
from bot.handlers.points import MAX_CHANGE
from bot.stats.tiers import TIERS

REASON_LENGTH = 200
MEMBER = r"/{chat_id:-?\d+}/{user_id:\d+}"


def when(console: Console, at: datetime | None, chat_id: int | None = None) -> str:
    """A moment as the group's clock shows it (the default time zone without a group)."""
    if at is None:
        return ""
    zone = console.app.settings.tz
    if chat_id is not None:
        zone = console.app.registry.zone(chat_id, zone)
    return at.astimezone(zone).strftime("%Y-%m-%d %H:%M")


def change_rows(
    console: Console, request: web.Request, found: list[Change]
) -> list[dict[str, Any]]:
    """Changes as the pages list them: when, who, what (in the viewer's language)."""
    t = console.t(request)
    rows = []
    for change in found:
        details = change.details
        values = {key: value for key, value in details.items() if key != "by"}
        if "delta" in values:
            values["delta"] = f"{int(values['delta']):+d}"
        values["note"] = f"· {values['note']}" if values.get("note") else ""
        values.setdefault("name", str(values.get("user", "")))
        try:
            what = t(f"{change.area}s.change_{change.action}", **values)
        except (KeyError, IndexError, ValueError):
            what = f"{change.area} {change.action}"
        rows.append(
            {
                "at": when(console, change.at, change.chat_id),
                "who": str(details.get("by") or change.user_id),
                "what": what,
                "chat_id": change.chat_id,
                "user": details.get("user"),
                "order": details.get("order"),
                "lottery": details.get("lottery"),
            }
        )
    return rows


def routes(console: Console) -> list[web.RouteDef]:
    app = console.app

    def filters(request: web.Request) -> tuple[data.Filters, list[int]]:
        try:
            wanted = data.Filters.parse(request.query)
        except data.BadFilter as bad:
            raise web.HTTPBadRequest(text=str(bad)) from None
        if wanted.group is not None:
            console.group(request, wanted.group)
        return wanted, console.visible_groups(request)

    def member_json(row: data.MemberRow) -> dict[str, Any]:
        return {**row.as_dict(), "group": app.registry.title(row.chat_id)}

    async def listing(request: web.Request) -> web.Response:
        wanted, visible = filters(request)
        found = await data.search(app.db, visible, wanted)
        viewer = console.viewer(request)
        changes = await console.changes.recent(
            chat_ids=None if viewer.owner else visible, areas=("member",), limit=20
        )
        return console.page(
            request,
            "members.html",
            found=found,
            wanted=wanted,
            groups=sorted(
                ((c, app.registry.title(c)) for c in visible), key=lambda g: g[1].casefold()
            ),
            tiers=TIERS,
            tags=await one.known_tags(app.db, visible),
            title=app.registry.title,
            when=lambda at, chat_id=None: when(console, at, chat_id),
            page_link=lambda page: "?" + urlencode(wanted.query(page=page)),
            export="/api/members.csv?" + urlencode(wanted.query(page=1)),
            changes=change_rows(console, request, changes),
        )

    async def listing_api(request: web.Request) -> web.Response:
        wanted, visible = filters(request)
        found = await data.search(app.db, visible, wanted)
        return web.json_response(
            {
                "members": [member_json(row) for row in found.rows],
                "total": found.total,
                "page": found.page,
                "pages": found.pages,
                "per_page": data.PER_PAGE,
            }
        )

    async def export(request: web.Request) -> web.StreamResponse:
        wanted, visible = filters(request)
        response = web.StreamResponse(
            headers={
                "Content-Type": "text/csv; charset=utf-8",
                "Content-Disposition": 'attachment; filename="members.csv"',
                # Sent before the rows, so before the console's middleware could add them.
                "Content-Security-Policy": CSP,
                "X-Content-Type-Options": "nosniff",
                "Cache-Control": "no-store",
            }
        )
        await response.prepare(request)
        # The byte order mark tells Excel the file is UTF-8 (else Chinese names are garbled).
        await response.write(("\ufeff" + data.csv_header()).encode("utf-8"))
        async for batch in data.every(app.db, visible, wanted):
            titles = {row.chat_id: app.registry.title(row.chat_id) for row in batch}
            await response.write(data.csv_lines(batch, titles).encode("utf-8"))
        await response.write_eof()
        return response

    async def the_member(request: web.Request) -> tuple[int, int, one.History]:
        console.group(request)
        chat_id = int(request.match_info["chat_id"])
        user_id = int(request.match_info["user_id"])
        found = await one.history(app.db, chat_id, user_id)
        if found is None:
            raise web.HTTPNotFound(text=f"no member {user_id} in group {chat_id}")
        return chat_id, user_id, found

    async def member_changes(
        request: web.Request, chat_id: int, user_id: int
    ) -> list[dict[str, Any]]:
        recent = await console.changes.recent(
            chat_ids=[chat_id], areas=("member", "order"), limit=500
        )
        mine = [change for change in recent if change.details.get("user") == user_id]
        return change_rows(console, request, mine[:50])

    async def member_page(request: web.Request) -> web.Response:
        chat_id, user_id, found = await the_member(request)
        return console.page(
            request,
            "member.html",
            m=found.member,
            h=found,
            group=app.registry.title(chat_id),
            when=lambda at: when(console, at, chat_id),
            changes=await member_changes(request, chat_id, user_id),
            max_change=MAX_CHANGE,
            tiers=TIERS,
        )

    async def member_api(request: web.Request) -> web.Response:
        chat_id, user_id, found = await the_member(request)
        answer = found.as_dict()
        answer["member"]["group"] = app.registry.title(chat_id)
        answer["changes"] = await member_changes(request, chat_id, user_id)
        return web.json_response(answer)

    async def add_tag(request: web.Request) -> web.Response:
        chat_id, user_id, found = await the_member(request)
        body = await console.body(request)
        try:
            tag = one.check_tag(body.get("tag"))
        except ValueError as bad:
            raise web.HTTPBadRequest(text=str(bad)) from None
        added = await one.add_tag(app.db, chat_id, user_id, tag, app.clock.now())
        if added:
            await console.record(
                request,
                "member",
                "tag_added",
                chat_id,
                user=user_id,
                name=found.member.name,
                tag=tag,
            )
        return web.json_response(
            {"added": added, "tag": tag, "tags": await tags_of(chat_id, user_id)}
        )

    async def remove_tag(request: web.Request) -> web.Response:
        chat_id, user_id, found = await the_member(request)
        tag = request.match_info["tag"]
        if not await one.remove_tag(app.db, chat_id, user_id, tag):
            raise web.HTTPNotFound(text=f"the member has no tag {tag!r}")
        await console.record(
            request, "member", "tag_removed", chat_id, user=user_id, name=found.member.name, tag=tag
        )
        return web.json_response(
            {"removed": True, "tag": tag, "tags": await tags_of(chat_id, user_id)}
        )

    async def tags_of(chat_id: int, user_id: int) -> list[str]:
        found = await one.member(app.db, chat_id, user_id)
        return found.tags if found is not None else []

    async def adjust(request: web.Request) -> web.Response:
        chat_id, user_id, found = await the_member(request)
        body = await console.body(request)
        delta, reason = body.get("delta"), body.get("reason")
        if isinstance(delta, bool) or not isinstance(delta, int) or delta == 0:
            raise web.HTTPBadRequest(text="delta must be a whole number other than 0")
        if abs(delta) > MAX_CHANGE:
            raise web.HTTPBadRequest(text=f"delta must be at most {MAX_CHANGE} either way")
        if not isinstance(reason, str) or not reason.strip():
            raise web.HTTPBadRequest(text="reason must be a non-empty text")
        reason = reason.strip()
        if len(reason) > REASON_LENGTH:
            raise web.HTTPBadRequest(text=f"reason must be at most {REASON_LENGTH} characters")
        viewer = console.viewer(request)
        change = points.Change(
            chat_id, user_id, delta, reason, f"console:{viewer.user_id}", app.clock.now()
        )
        try:
            balance = await points.Ledger(app.db).adjust(change)
        except points.NotEnoughPoints as short:
            message = (
                f"not enough points: the balance is {short.balance}, "
                f"the change takes {short.wanted}"
            )
            return web.json_response(
                {"error": message, "status": 400, "balance": short.balance}, status=400
            )
        await console.record(
            request,
            "member",
            "points_adjusted",
            chat_id,
            user=user_id,
            name=found.member.name,
            delta=delta,
            reason=reason,
            balance=balance,
        )
        return web.json_response({"balance": balance, "delta": delta, "reason": reason})

    return [
        web.get("/members", listing),
        web.get("/members" + MEMBER, member_page),
        web.get("/api/members", listing_api),
        web.get("/api/members.csv", export),
        web.get("/api/members" + MEMBER, member_api),
        web.post("/api/members" + MEMBER + "/tags", add_tag),
        web.delete("/api/members" + MEMBER + "/tags/{tag:.+}", remove_tag),
        web.post("/api/members" + MEMBER + "/points", adjust),
    ]
