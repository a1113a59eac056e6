"""The broadcasts page: compose one from a template or a text, preview it, send it; progress.

A broadcast made here is made as `/broadcast` makes one (`bot.push.broadcasts.create`, then
`confirm_broadcast`) and the push queue's doorbell is rung, so the running bot sends it at once,
within each group's quiet hours and daily cap unless urgent: one outbound path. The targets are
chosen by tags or by hand, among the groups the viewer sees; an admin's tags become the ids of
their own groups with those tags, so nothing reaches a group that is not theirs. A text is
checked as the bot checks its own (Telegram's HTML, at most 4096 characters once parsed).
Which broadcasts a viewer sees: `broadcasts_data`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from aiohttp import web

from bot.console._changes import Change
from bot.console._web import LANGUAGE, Console
from bot.console.pages import broadcasts_data as data
from bot.push import broadcasts
from bot.push.broadcasts import BroadcastError, Progress, Target, TargetGroup
from bot.sop.telegram_html import MESSAGE_LIMIT, html_problems, visible_length

SHOWN_GROUPS = 200  # a broadcast's groups listed on the page (the API gives all)


def routes(console: Console) -> list[web.RouteDef]:
    app = console.app
    texts = app.texts

    def error(request: web.Request, field: str, exc: BroadcastError) -> web.HTTPBadRequest:
        return data.bad(field, data.plain(exc.text(texts, request[LANGUAGE])))

    async def targets(request: web.Request, body: dict[str, Any]) -> tuple[Target, str]:
        """The target the viewer chose, limited to their groups; and the field it came from."""
        viewer = console.viewer(request)
        tags, chosen = data.items(body, "tags"), data.items(body, "groups")
        if tags and chosen:
            raise data.bad("groups", "choose groups by tags or by hand, not both")
        if not tags and not chosen:
            raise data.bad("groups", "choose at least one group or tag")
        if chosen:
            ids = set()
            for raw in chosen:
                if isinstance(raw, bool) or not isinstance(raw, int | str):
                    raise data.bad("groups", f"not a group id: {raw!r}")
                console.group(request, raw)  # 400 not a number, 403 not theirs, 404 unknown
                ids.add(int(raw))
            return Target(ids=tuple(sorted(ids))), "groups"
        for tag in tags:
            if not isinstance(tag, str):
                raise data.bad("tags", f"not a tag: {tag!r}")
            try:
                parsed = Target.parse(f"tag:{tag}")
            except BroadcastError:
                parsed = Target()
            if parsed.tags != (tag,):
                raise data.bad(
                    "tags", f"{tag!r} is not a tag (letters, digits, _ . and -, up to 64)"
                )
        wanted = Target(tags=tuple(dict.fromkeys(tags)))
        if viewer.owner:
            return wanted, "tags"
        found = await broadcasts.target_groups(app.db, wanted)
        mine = tuple(g.id for g in found if viewer.sees(g.id))
        if not mine:
            raise data.bad("tags", f"none of your groups has the tag {', '.join(wanted.tags)}")
        return Target(ids=mine), "tags"

    async def compose(request: web.Request) -> data.Composed:
        body = await console.body(request)
        template, text = data.words(body, "template"), data.words(body, "text")
        if (template is None) == (text is None):
            raise data.bad("template", "give a template or a text, not both and not neither")
        key = None
        if template is not None:
            try:
                key = broadcasts.check_template(texts, template)
            except BroadcastError as exc:
                raise error(request, "template", exc) from None
        if text is not None:
            if not text.strip():
                raise data.bad("text", "is empty")
            problems = html_problems(text)
            if problems:
                raise data.bad("text", problems[0])
        urgent, drop, pin = (
            data.flag(body, "urgent"),
            data.flag(body, "drop"),
            data.flag(body, "pin"),
        )
        target, field = await targets(request, body)
        groups = await broadcasts.target_groups(app.db, target)
        if not groups:
            no_groups = BroadcastError("broadcasting.errors.no_groups", target=str(target))
            raise error(request, field, no_groups)
        for group in groups:  # each as it will get it: a template says the group's title
            try:
                rendered = broadcasts.render(texts, key, text, group)
            except BroadcastError as exc:
                raise error(request, "template", exc) from None
            length = visible_length(rendered)
            if length > MESSAGE_LIMIT:
                raise data.bad(
                    "text" if text is not None else "template",
                    f"{length} characters once parsed (for {group.title or group.id}); "
                    f"Telegram takes at most {MESSAGE_LIMIT}",
                )
            if text is not None:
                break  # the same text for every group
        return data.Composed(key, text, target, groups, urgent, drop, pin)

    def group_list(groups: list[TargetGroup]) -> list[dict[str, Any]]:
        return [{"chat_id": g.id, "title": g.title or str(g.id)} for g in groups]

    async def preview(request: web.Request) -> web.Response:
        made = await compose(request)
        first = made.groups[0]
        text = broadcasts.render(texts, made.template, made.text, first)
        return web.json_response(
            {
                "text": text,
                "length": visible_length(text),
                "group": {"chat_id": first.id, "title": first.title or str(first.id)},
                "groups": group_list(made.groups),
                "count": len(made.groups),
                "target": str(made.target),
                "urgent": made.urgent,
                "drop": made.drop,
                "pin": made.pin,
            }
        )

    async def send(request: web.Request) -> web.Response:
        made = await compose(request)
        viewer = console.viewer(request)
        now = app.clock.now()
        try:
            broadcast_id = await broadcasts.create(
                app.db,
                texts,
                target=made.target,
                template=made.template,
                text=made.text,
                urgent=made.urgent,
                over_cap=made.over_cap,
                pin=made.pin,
                source=f"console:{viewer.user_id}",
                created_by=viewer.user_id,
                now=now,
                confirm=False,
            )
            count = await broadcasts.confirm_broadcast(app.db, texts, broadcast_id, now)
        except BroadcastError as exc:
            raise error(request, "groups", exc) from None
        app.pushes.wake()  # the doorbell: the push queue looks now, not at its next poll
        ids = [g.id for g in made.groups]
        await console.record(request, "broadcast", "sent", None, broadcast=broadcast_id, groups=ids)
        return web.json_response(
            {
                "id": broadcast_id,
                "count": count,
                "target": str(made.target),
                "groups": group_list(made.groups),
            },
            status=201,
        )

    def when(moment: datetime | None) -> str:
        return "" if moment is None else f"{moment.astimezone(app.settings.tz):%Y-%m-%d %H:%M}"

    def why(request: web.Request, note: str | None) -> str:
        key, values = broadcasts.reason(note)
        return data.plain(texts(key, request[LANGUAGE], **values))

    async def described(request: web.Request, found: list[Progress]) -> list[dict[str, Any]]:
        """Broadcasts with who made them, their reasons in words and their status per group."""
        ids = [item.id for item in found]
        pushes, makers = await data.pushes_of(app.db, ids), await data.made(app.db, ids)
        registry = app.registry
        people = {m.created_by for m in makers.values() if m.created_by is not None}
        names = {person: await app.console_access.name_of(person) for person in sorted(people)}
        return [
            {
                **data.as_dict(item, makers.get(item.id)),
                "by": names.get(makers[item.id].created_by or 0) if item.id in makers else None,
                "by_hand": data.by_hand(item.target),
                "reasons": [
                    {"why": why(request, note), "count": count}
                    for note, count in item.reasons.most_common()
                ],
                "summary": broadcasts.summary_lines(item, when),
                "created": when(item.created_at),
                "next": when(item.next_due),
                "per_group": [
                    {
                        "chat_id": push.chat_id,
                        "title": registry.title(push.chat_id),
                        "status": push.status,
                        "why": why(request, push.note) if push.note else None,
                        "due_at": push.due_at.isoformat() if push.due_at else None,
                        "sent_at": push.sent_at.isoformat() if push.sent_at else None,
                        "sent": when(push.sent_at),
                    }
                    for push in pushes.get(item.id, [])
                ],
            }
            for item in found
        ]

    async def recent(request: web.Request, limit: int) -> list[dict[str, Any]]:
        groups = console.viewer(request).groups
        return await described(request, await data.listing(app.db, groups, limit))

    async def changes(request: web.Request) -> list[dict[str, Any]]:
        viewer = console.viewer(request)
        t = console.t(request)
        found: list[Change] = await console.changes.recent(areas=("broadcast",), limit=50)
        shown = []
        for change in found:
            groups = [int(g) for g in change.details.get("groups", [])]
            if viewer.groups is not None and not set(groups) <= viewer.groups:
                continue
            shown.append(
                {
                    "at": change.at.isoformat(),
                    "when": when(change.at),
                    "user_id": change.user_id,
                    "who": str(change.details.get("by", change.user_id)),
                    "broadcast": change.details.get("broadcast"),
                    "groups": groups,
                    "what": t(
                        "broadcasts.change_sent",
                        id=change.details.get("broadcast"),
                        count=len(groups),
                    ),
                }
            )
        return shown[:20]

    def parse_limit(request: web.Request) -> int:
        raw = request.query.get("limit", str(data.LISTED))
        if not raw.isdigit() or not 1 <= int(raw) <= data.MAX_LISTED:
            raise data.bad("limit", f"a number from 1 to {data.MAX_LISTED}")
        return int(raw)

    async def page(request: web.Request) -> web.Response:
        t = console.t(request)
        visible = console.visible_groups(request)
        registry = app.registry
        groups = sorted(
            (
                {
                    "chat_id": chat_id,
                    "title": registry.title(chat_id),
                    "tags": list(registry.groups[chat_id].tags),
                }
                for chat_id in visible
            ),
            key=lambda g: (str(g["title"]).casefold(), g["chat_id"]),
        )
        tags = sorted({tag for chat_id in visible for tag in registry.groups[chat_id].tags})
        listed = await recent(request, data.LISTED)
        sent = request.query.get("sent", "")
        just_sent = next((b for b in listed if sent.isdigit() and b["id"] == int(sent)), None)
        words = {
            key: t(f"broadcasts.js_{key}") for key in ("to", "first", "send_to", "sent", "changed")
        }
        return console.page(
            request,
            "broadcasts.html",
            templates=data.templates(texts),
            groups=groups,
            tags=tags,
            broadcasts=listed,
            just_sent=just_sent,
            changes=await changes(request),
            shown_groups=SHOWN_GROUPS,
            limit=MESSAGE_LIMIT,
            words=words,
        )

    async def api_list(request: web.Request) -> web.Response:
        listed = await recent(request, parse_limit(request))
        return web.json_response(
            {
                "broadcasts": listed,
                "templates": data.templates(texts),
                "changes": await changes(request),
            }
        )

    async def api_one(request: web.Request) -> web.Response:
        broadcast_id = int(request.match_info["broadcast_id"])
        found = await broadcasts.progress(app.db, broadcast_id)
        if not found:
            raise web.HTTPNotFound(text=f"there is no broadcast #{broadcast_id}")
        if not await data.sees(app.db, console.viewer(request).groups, broadcast_id):
            raise web.HTTPForbidden(text="this broadcast went to groups you are not an admin of")
        [item] = await described(request, found)
        return web.json_response(item)

    return [
        web.get("/broadcasts", page),
        web.get("/api/broadcasts", api_list),
        web.get(r"/api/broadcasts/{broadcast_id:\d+}", api_one),
        web.post("/api/broadcasts/preview", preview),
        web.post("/api/broadcasts", send),
    ]
