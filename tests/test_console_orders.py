"""The console's orders page: listing reward orders, fulfilling and cancelling them."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from bot import points
from bot.db import writing
from bot.rewards import Order
from tests.console_harness import OWNER, ConsoleHarness, console_harness

HOSTILE = "<img src=x onerror=alert(1)>"
ESCAPED = "&lt;img src=x onerror=alert(1)&gt;"


@pytest.fixture
async def h(engine: AsyncEngine, tmp_path: Path):
    async with console_harness(engine, tmp_path) as harness:
        yield harness


async def ordered(
    h: ConsoleHarness, chat_id: int, user_id: int, reward: str = "sticker-pack"
) -> Order:
    async with writing(h.app.db) as conn:
        await points.apply(
            conn, [points.Change(chat_id, user_id, 500, "gift", "checkin", h.clock.now())]
        )
    order = await h.app.rewards.redeem(chat_id, user_id, reward, h.clock.now())
    assert isinstance(order, Order), order
    h.later(seconds=10)
    return order


async def test_orders_are_listed_by_group_and_status(h: ConsoleHarness) -> None:
    ann, bob = await h.person("Ann"), await h.person("Bob")
    a = await h.group("Group A", admins=[ann], members=[bob])
    b = await h.group("Group B", members=[bob])
    empty = await (await (await h.signed_in()).get("/orders", params={"lang": "zh"})).text()
    assert 'id="orders"' in empty and "没有符合条件的订单" in empty
    first = await ordered(h, a, bob.id)
    second = await ordered(h, a, bob.id, "coupon-20")
    other = await ordered(h, b, bob.id)
    owner = await h.signed_in()
    listed = (await (await owner.get("/api/orders")).json())["orders"]
    assert [o["id"] for o in listed] == [first.id, second.id, other.id]  # the queue, oldest first
    assert listed[0]["member_name"] == "Bob" and listed[0]["group"] == "Group A"
    only_b = (await (await owner.get("/api/orders", params={"group": str(b)})).json())["orders"]
    assert [o["id"] for o in only_b] == [other.id]
    assert (await owner.get("/api/orders", params={"status": "lost"})).status == 400
    assert (await owner.get("/api/orders", params={"group": "x"})).status == 400

    page = await owner.get("/orders")
    assert page.status == 200
    html = await page.text()
    assert 'id="orders"' in html
    assert html.count('data-testid="fulfil-order"') == 3
    assert html.count('data-testid="cancel-order"') == 3
    assert '<script src="/static/orders.js" defer></script>' in html
    assert (await owner.get("/static/orders.js")).status == 200

    admin = await h.signed_in(ann.id)
    mine = (await (await admin.get("/api/orders")).json())["orders"]
    assert {o["chat_id"] for o in mine} == {a}
    assert (await admin.get("/api/orders", params={"group": str(b)})).status == 403
    assert (await h.send(admin, "POST", f"/api/orders/{other.id}/fulfil", {})).status == 403
    assert (await h.send(admin, "POST", f"/api/orders/{other.id}/cancel", {})).status == 403
    assert (await h.send(owner, "POST", "/api/orders/999999/fulfil", {})).status == 404


async def test_fulfil_and_cancel_as_the_chat_command_does(h: ConsoleHarness) -> None:
    bob = await h.person("Bob")
    a = await h.group("Group A", members=[bob])
    handed = await ordered(h, a, bob.id)
    refunded = await ordered(h, a, bob.id, "coupon-20")
    balance = await h.app.rewards.balance(a, bob.id)
    owner = await h.signed_in()

    done = await h.send(owner, "POST", f"/api/orders/{handed.id}/fulfil", {"note": "sent by DM"})
    assert done.status == 200
    answer = (await done.json())["order"]
    assert (answer["status"], answer["closed_by"]) == ("fulfilled", OWNER)
    again = await h.send(owner, "POST", f"/api/orders/{handed.id}/cancel")
    assert again.status == 409
    assert (await again.json())["order"]["status"] == "fulfilled"

    sent_before = len(h.outbox.sent)
    gone = await h.send(owner, "POST", f"/api/orders/{refunded.id}/cancel")
    assert gone.status == 200
    assert (await gone.json())["order"]["status"] == "cancelled"
    assert await h.app.rewards.balance(a, bob.id) == balance + refunded.cost
    told = h.outbox.sent[sent_before:]
    assert [s.chat_id for s in told] == [a] and "cancelled" in told[0].text
    for body in ({"note": 5}, {"note": "n" * 501}):
        bad = await h.send(owner, "POST", f"/api/orders/{refunded.id}/fulfil", body)
        assert bad.status == 400
        assert "note" in (await bad.json())["error"]
    forged = await owner.post(f"/api/orders/{refunded.id}/fulfil", json={})
    assert forged.status == 403

    closed = (await (await owner.get("/api/orders", params={"status": "closed"})).json())["orders"]
    assert [o["id"] for o in closed] == [refunded.id, handed.id]  # the latest closed first
    assert (await (await owner.get("/api/orders")).json())["orders"] == []
    assert (
        len((await (await owner.get("/api/orders", params={"status": "all"})).json())["orders"])
        == 2
    )

    recorded = await h.console.changes.recent(areas=("order",))
    assert [(c.action, c.details["order"], c.details["note"]) for c in recorded] == [
        ("cancelled", refunded.id, ""),
        ("fulfilled", handed.id, "sent by DM"),
    ]
    html = await (await owner.get("/orders", params={"status": "all"})).text()
    assert f"order #{handed.id}" in html and "sent by DM" in html
    assert 'data-testid="fulfil-order"' not in html  # nothing open is left


async def test_hostile_names_are_text_on_the_orders_page(h: ConsoleHarness) -> None:
    eve = await h.person(HOSTILE)
    a = await h.group(HOSTILE, members=[eve])
    order = await ordered(h, a, eve.id)
    owner = await h.signed_in()
    await h.send(owner, "POST", f"/api/orders/{order.id}/fulfil", {"note": HOSTILE})
    for status in ("open", "all"):
        html = await (await owner.get("/orders", params={"status": status})).text()
        assert HOSTILE not in html
        assert ESCAPED in html
