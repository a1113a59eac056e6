"""The orders page: reward orders of the viewer's groups, fulfilled or cancelled from the page.

/orders                         the orders (?group=, ?status=open|fulfilled|cancelled|closed|all)
/api/orders                     the same as JSON
POST /api/orders/{id}/fulfil    {"note": …} optional: the reward was handed over
POST /api/orders/{id}/cancel    {"note": …} optional: cancelled, the points back to the member

Orders are read and closed through `bot.rewards.Rewards` (`orders`, `order`, `fulfil`,
`cancel`), as /orders in a group does; a cancel refunds the points through the ledger, returns
the reward to the stock and tells the member in the group, as the chat command does.
"""

from __future__ import annotations

from dataclasses import asdict
from datetime import datetime
from typing import Any, Literal

from aiohttp import web
from loguru import logger
from sqlalchemy import select

from bot.console._web import Console
from bot.console.pages.members import change_rows, when
from bot.db import ORDERS, OrderStatus
from bot.handlers.rewards import RewardsChat, announce_cancel
from bot.handlers.sops import Say
from bot.rewards import Order, Refusal, Refused

PER_GROUP = 200  # orders of one group and status shown at most
NOTE_LENGTH = 500
Wanted = OrderStatus | Literal["closed"]
OPEN, FULFILLED, CANCELLED = (
    OrderStatus.OPEN.value,
    OrderStatus.FULFILLED.value,
    OrderStatus.CANCELLED.value,
)
# A status filter: what to ask `Rewards.orders` for, and the stored statuses it covers.
ASKED: dict[str, tuple[list[Wanted], list[str]]] = {
    "open": ([OrderStatus.OPEN], [OPEN]),
    "fulfilled": ([OrderStatus.FULFILLED], [FULFILLED]),
    "cancelled": ([OrderStatus.CANCELLED], [CANCELLED]),
    "closed": (["closed"], [FULFILLED, CANCELLED]),
    "all": ([OrderStatus.OPEN, "closed"], [OPEN, FULFILLED, CANCELLED]),
}
STATUSES = tuple(ASKED)


def order_dict(order: Order) -> dict[str, Any]:
    found = asdict(order)
    found["status"] = order.status.value
    for key in ("created_at", "closed_at"):
        value = found[key]
        found[key] = value.isoformat() if isinstance(value, datetime) else None
    return found


async def orders_of(console: Console, chat_ids: list[int], status: str) -> list[Order]:
    """The orders of `chat_ids` in `status`: open ones oldest first (the queue), then closed
    ones most recently closed first; at most PER_GROUP of each status per group."""
    app = console.app
    if not chat_ids:
        return []
    asked, stored = ASKED[status]
    async with app.db.connect() as conn:
        having = sorted(
            int(chat_id)
            for chat_id in await conn.scalars(
                select(ORDERS.c.chat_id)
                .where(
                    ORDERS.c.chat_id.in_(chat_ids),
                    ORDERS.c.status.in_(stored),
                )
                .distinct()
            )
        )
    found: list[Order] = []
    for wanted in asked:
        batch: list[Order] = []
        for chat_id in having:
            batch += await app.rewards.orders(chat_id, wanted, limit=PER_GROUP)
        if wanted == OrderStatus.OPEN:
            batch.sort(key=lambda order: order.id)
        else:
            batch.sort(key=lambda order: (order.closed_at or order.created_at, order.id))
            batch.reverse()
        found += batch
    return found


def routes(console: Console) -> list[web.RouteDef]:
    app = console.app
    say = Say(app.outbox, app.texts, app.registry)

    def filters(request: web.Request) -> tuple[list[int], str, dict[str, str]]:
        group = request.query.get("group", "").strip()
        status = request.query.get("status", "").strip() or "open"
        if status not in STATUSES:
            raise web.HTTPBadRequest(
                text=f"status must be one of {', '.join(STATUSES)}, not {status!r}"
            )
        if group:
            if not group.lstrip("-").isdigit():
                raise web.HTTPBadRequest(text=f"group must be a group id, not {group!r}")
            console.group(request, group)
            chat_ids = [int(group)]
        else:
            chat_ids = console.visible_groups(request)
        return chat_ids, status, {"group": group, "status": status}

    async def recent(request: web.Request, chat_ids: list[int]) -> list[dict[str, Any]]:
        viewer = console.viewer(request)
        found = await console.changes.recent(
            chat_ids=None if viewer.owner and len(chat_ids) != 1 else chat_ids,
            areas=("order",),
            limit=30,
        )
        return change_rows(console, request, found)

    async def listing(request: web.Request) -> web.Response:
        chat_ids, status, chosen = filters(request)
        found = await orders_of(console, chat_ids, status)
        return console.page(
            request,
            "orders.html",
            orders=found,
            chosen=chosen,
            statuses=STATUSES,
            groups=sorted(
                ((c, app.registry.title(c)) for c in console.visible_groups(request)),
                key=lambda g: g[1].casefold(),
            ),
            title=app.registry.title,
            when=lambda at, chat_id=None: when(console, at, chat_id),
            changes=await recent(request, chat_ids),
            note_length=NOTE_LENGTH,
        )

    async def listing_api(request: web.Request) -> web.Response:
        chat_ids, status, _ = filters(request)
        found = await orders_of(console, chat_ids, status)
        return web.json_response(
            {
                "orders": [
                    {**order_dict(order), "group": app.registry.title(order.chat_id)}
                    for order in found
                ]
            }
        )

    async def note_of(request: web.Request) -> str:
        if not request.body_exists:
            return ""
        note = (await console.body(request)).get("note")
        if note is None:
            return ""
        if not isinstance(note, str):
            raise web.HTTPBadRequest(text="note must be a text")
        note = note.strip()
        if len(note) > NOTE_LENGTH:
            raise web.HTTPBadRequest(text=f"note must be at most {NOTE_LENGTH} characters")
        return note

    async def close(request: web.Request, cancel: bool) -> web.Response:
        order_id = int(request.match_info["id"])
        order = await app.rewards.order(order_id)
        if order is None:
            raise web.HTTPNotFound(text=f"no order {order_id}")
        console.group(request, order.chat_id)
        note = await note_of(request)
        viewer = console.viewer(request)
        closing = app.rewards.cancel if cancel else app.rewards.fulfil
        result = await closing(order_id, order.chat_id, viewer.user_id, app.clock.now())
        if isinstance(result, Refusal):
            if result.reason is Refused.CLOSED and result.order is not None:
                now = result.order
                return web.json_response(
                    {
                        "error": f"order {order_id} is {now.status.value} already",
                        "status": 409,
                        "order": order_dict(now),
                    },
                    status=409,
                )
            raise web.HTTPNotFound(text=f"no order {order_id}")
        action = "cancelled" if cancel else "fulfilled"
        await console.record(
            request,
            "order",
            action,
            order.chat_id,
            order=order_id,
            reward=order.reward_name,
            cost=order.cost,
            member=order.member_name or str(order.user_id),
            user=order.user_id,
            note=note,
        )
        if cancel:
            try:
                await announce_cancel(
                    RewardsChat(say, app.rewards, order.chat_id), app.rewards, result, None
                )
            except Exception:  # the order is cancelled and refunded whatever the chat says
                logger.bind(chat_id=order.chat_id).exception(
                    "console: cannot tell the group order #{} was cancelled", order_id
                )
        return web.json_response({"order": order_dict(result)})

    async def fulfil(request: web.Request) -> web.Response:
        return await close(request, cancel=False)

    async def cancel(request: web.Request) -> web.Response:
        return await close(request, cancel=True)

    return [
        web.get("/orders", listing),
        web.get("/api/orders", listing_api),
        web.post(r"/api/orders/{id:\d+}/fulfil", fulfil),
        web.post(r"/api/orders/{id:\d+}/cancel", cancel),
    ]
