"""End to end: members redeem rewards with their points; the last one in stock goes to one of
two members pressing at once; admins are told privately (or in the group when none can be
reached) and fulfil or cancel orders with /orders and its buttons."""

from __future__ import annotations

import asyncio
import shutil
import sqlite3
from pathlib import Path
from typing import Any

from bot.emulator import EmulatorClient
from tests.e2e.conftest import ROOT, Tidepool, all_confirmed, wait_until
from tests.e2e.test_sop_e2e import _has, greeted, setup

CATALOGUE = """
rewards:
  - id: mug
    name: {zh: 马克杯, en: Branded mug}
    cost: 100
    stock: 1
    per_member: 1
  - id: stickers
    name: {zh: 表情包, en: Sticker pack}
    cost: 30
    stock: null
    per_member: 1
"""


def content(tidepool: Tidepool) -> Path:
    """A content folder of the shipped texts and a small catalogue, used by the bot."""
    folder = tidepool.folder / "content"
    shutil.copytree(ROOT / "content" / "texts", folder / "texts")
    write(folder / "rewards.yaml", CATALOGUE)
    tidepool.extra_env["CONTENT_DIR"] = str(folder)
    return folder


def write(path: Path, text: str) -> None:
    path.write_text(text, encoding="utf-8")


def rows(tidepool: Tidepool, query: str) -> list[tuple[Any, ...]]:
    with sqlite3.connect(tidepool.folder / "tidepool.db") as db:
        return [tuple(row) for row in db.execute(query)]


def orders(tidepool: Tidepool) -> list[tuple[Any, ...]]:
    return rows(
        tidepool, "SELECT id, user_id, reward_id, status, closed_by FROM orders ORDER BY id"
    )


async def answer_of(ctl: EmulatorClient, pressed: dict[str, Any]) -> dict[str, Any]:
    """The bot's answer to a button press, once it came."""
    found: list[dict[str, Any]] = []

    async def answered() -> bool:
        answer = await ctl.callback_answer(pressed["callback_query_id"])
        found[:] = [answer] if answer else []
        return bool(found)

    await wait_until(answered, what="the answer to a press")
    return found[0]


async def points_for(ctl: EmulatorClient, group: int, admin: int, who: str, count: int) -> None:
    await ctl.send_message(group, admin, f"/points @{who} +150 welcome gift")
    await wait_until(lambda: _has(ctl, group, "Balance now: 150", count), what="the points")


async def test_the_last_one_goes_to_one_member_and_an_admin_fulfils_it(
    ctl: EmulatorClient, tidepool: Tidepool
) -> None:
    content(tidepool)
    s = await setup(ctl, tidepool)
    group, owner = s["group"], s["owner"]
    admin = (await ctl.create_user("Ada", username="ada"))["id"]
    await ctl.set_member(group, admin, "administrator")
    await ctl.start(admin)  # Ada has started the bot: she can be told privately
    alice = (await ctl.create_user("Alice", username="alice"))["id"]
    bob = (await ctl.create_user("Bob", username="bob"))["id"]
    for member in (alice, bob):
        await ctl.join(group, member)
    await wait_until(lambda: all_confirmed(ctl), what="the joins")
    await points_for(ctl, group, admin, "alice", 1)
    await points_for(ctl, group, admin, "bob", 2)

    await ctl.send_message(group, alice, "/rewards")
    await wait_until(lambda: _has(ctl, group, "you have <b>150</b> points", 1), what="the list")
    [listing] = await greeted(ctl, group, "<b>Rewards</b>")
    assert (
        "Alice" in listing["text"] and "<b>Branded mug</b>: 100 points · 1 left" in listing["text"]
    )
    buttons = [row[0]["callback_data"] for row in listing["reply_markup"]["inline_keyboard"]]
    assert buttons == ["reward:mug", "reward:stickers"]

    # Both press the last mug at the same moment: one gets it, the other hears it is gone.
    presses = await asyncio.gather(
        *(ctl.press(group, who, listing["message_id"], "reward:mug") for who in (alice, bob))
    )
    answers = [await answer_of(ctl, pressed) for pressed in presses]
    won = [answer for answer in answers if "Done! Order #1" in (answer["text"] or "")]
    lost = [answer for answer in answers if "out of stock" in (answer["text"] or "")]
    assert (len(won), len(lost)) == (1, 1), answers
    assert "You have 50 points left" in won[0]["text"] and lost[0]["show_alert"]
    [(order_id, winner, reward, status, _)] = orders(tidepool)
    loser = bob if winner == alice else alice
    assert (order_id, reward, status) == (1, "mug", "open")
    balances = dict(rows(tidepool, "SELECT user_id, balance FROM points_balances"))
    assert balances == {winner: 50, loser: 150}

    await wait_until(lambda: _has(ctl, group, "redeemed <b>Branded mug</b>", 1), what="news")
    [news] = await greeted(ctl, group, "redeemed <b>Branded mug</b>")
    assert f'tg://user?id={winner}"' in news["text"] and "order #1" in news["text"]
    assert "An admin will be in touch" in news["text"]
    # Ada (and the owner, who is the group's creator) got the order privately, with buttons.
    await wait_until(lambda: _has(ctl, admin, "New order #1", 1), what="Ada's notice")
    [notice] = await greeted(ctl, admin, "New order #1")
    assert "Tea &lt;lovers&gt;" in notice["text"] and "Branded mug (100 points)" in notice["text"]
    assert [b["callback_data"] for b in notice["reply_markup"]["inline_keyboard"][0]] == [
        "order:done:1",
        "order:cancel:1",
    ]
    await wait_until(lambda: _has(ctl, owner, "New order #1", 1), what="the owner's notice")

    # Members may not see or close orders.
    await ctl.send_message(group, loser, "/orders")
    await wait_until(lambda: _has(ctl, group, "Only the group's admins", 1), what="a refusal")
    await ctl.send_message(group, admin, "/orders")
    await wait_until(lambda: _has(ctl, group, "Open orders: 1", 1), what="the orders")
    [listed] = await greeted(ctl, group, "Open orders: 1")
    assert "#1 · Branded mug" in listed["text"] and "100 points" in listed["text"]
    refused = await ctl.press(group, loser, listed["message_id"], "order:done:1")
    assert "Only the group's admins" in (await answer_of(ctl, refused))["text"]
    done = await ctl.press(group, admin, listed["message_id"], "order:done:1")
    assert (await answer_of(ctl, done))["text"] == "Marked fulfilled."

    async def emptied() -> bool:
        current = [m for m in await ctl.sent(group) if m["message_id"] == listed["message_id"]]
        return "No open orders" in current[0]["text"] and not current[0]["reply_markup"]

    await wait_until(emptied, what="the list to show no open orders")
    assert orders(tidepool) == [(1, winner, "mug", "fulfilled", admin)]
    # Ada's private notice still has its buttons: pressing one says what happened, and the
    # notice then shows it.
    again = await ctl.press(admin, admin, notice["message_id"], "order:done:1")
    assert "Order #1 is already fulfilled (by Ada)" in (await answer_of(ctl, again))["text"]

    # The one who missed the mug takes stickers; Ada cancels that order from her private notice.
    stickers = await ctl.press(group, loser, listing["message_id"], "reward:stickers")
    assert "Order #2" in (await answer_of(ctl, stickers))["text"]
    await wait_until(lambda: _has(ctl, admin, "New order #2", 1), what="the second notice")
    [second] = await greeted(ctl, admin, "New order #2")
    cancel = await ctl.press(admin, admin, second["message_id"], "order:cancel:2")
    assert "points are back" in (await answer_of(ctl, cancel))["text"]
    await wait_until(lambda: _has(ctl, group, "was cancelled", 1), what="the member told")
    [cancelled] = await greeted(ctl, group, "was cancelled")
    assert f"tg://user?id={loser}" in cancelled["text"] and "Balance now: 150" in cancelled["text"]

    async def notice_closed() -> bool:
        [current] = [m for m in await ctl.sent(admin) if m["message_id"] == second["message_id"]]
        return "<b>Cancelled</b> by Ada" in current["text"] and not current["reply_markup"]

    await wait_until(notice_closed, what="the notice to show it cancelled")
    await ctl.send_message(group, admin, "/orders all")
    await wait_until(lambda: _has(ctl, group, "Recently closed", 1), what="/orders all")
    [history] = await greeted(ctl, group, "Recently closed")
    assert "#2 · Sticker pack" in history["text"] and "cancelled by Ada" in history["text"]
    assert "#1 · Branded mug" in history["text"] and "fulfilled by Ada" in history["text"]
    assert await tidepool.stop() == 0

    assert orders(tidepool) == [
        (1, winner, "mug", "fulfilled", admin),
        (2, loser, "stickers", "cancelled", admin),
    ]
    assert rows(tidepool, "SELECT user_id, delta, reason, source FROM points_ledger ORDER BY id")[
        2:
    ] == [
        (winner, -100, "redeemed Branded mug", "reward:mug"),
        (loser, -30, "redeemed Sticker pack", "reward:stickers"),
        (loser, 30, "refund: Sticker pack (order #2 cancelled)", "reward:stickers"),
    ]
    assert rows(tidepool, "SELECT reward_id, taken FROM reward_stock ORDER BY reward_id") == [
        ("mug", 1),
        ("stickers", 0),
    ]


async def test_without_reachable_admins_the_group_is_told_and_a_broken_catalogue_is_explained(
    ctl: EmulatorClient, tidepool: Tidepool
) -> None:
    folder = content(tidepool)
    s = await setup(ctl, tidepool)
    # A second group whose only admin never started the bot.
    carl = (await ctl.create_user("Carl", username="carl"))["id"]
    group = (await ctl.create_chat("Book club", type="supergroup"))["id"]
    await ctl.set_member(group, carl, "creator")
    await ctl.set_bot_status(group, "administrator", by=carl)
    alice = (await ctl.create_user("Alice", username="alice"))["id"]
    await ctl.join(group, alice)
    await wait_until(lambda: all_confirmed(ctl), what="the join")
    await points_for(ctl, group, carl, "alice", 1)

    await ctl.send_message(group, alice, "/rewards")
    await wait_until(lambda: _has(ctl, group, "<b>Rewards</b>", 1), what="the list")
    [listing] = await greeted(ctl, group, "<b>Rewards</b>")
    pressed = await ctl.press(group, alice, listing["message_id"], "reward:stickers")
    assert "Order #1" in (await answer_of(ctl, pressed))["text"]
    await wait_until(lambda: _has(ctl, group, "Admins: please hand it over", 1), what="news")
    private = await ctl.calls(method="sendMessage", chat_id=carl)
    assert private and not private[-1]["ok"], "Carl was tried privately first"
    more = await ctl.press(group, alice, listing["message_id"], "reward:stickers")
    assert (await answer_of(ctl, more))["text"] == (
        "You have already redeemed Sticker pack 1 time(s), the most one member may."
    )

    await ctl.send_message(group, carl, "/orders cancel 1")
    await wait_until(lambda: _has(ctl, group, "was cancelled", 1), what="the cancellation")
    [cancelled] = await greeted(ctl, group, "was cancelled")
    assert "Balance now: 150" in cancelled["text"]
    await ctl.send_message(group, carl, "/orders done 1")
    await wait_until(lambda: _has(ctl, group, "already cancelled", 1), what="closed twice")
    await ctl.send_message(group, carl, "/orders done 99")
    await wait_until(lambda: _has(ctl, group, "no order #99", 1), what="an unknown order")
    await ctl.send_message(group, carl, "/orders please")
    await wait_until(lambda: _has(ctl, group, "Usage: /orders", 1), what="the usage")

    # A broken catalogue: members hear it is unavailable, admins also see what is wrong.
    write(folder / "rewards.yaml", CATALOGUE.replace("cost: 100", "cost: lots"))
    await ctl.send_message(group, alice, "/rewards")
    await wait_until(lambda: _has(ctl, group, "Rewards are unavailable", 1), what="unavailable")
    [member_view] = await greeted(ctl, group, "Rewards are unavailable")
    assert "<pre>" not in member_view["text"]
    await ctl.send_message(group, carl, "/rewards")
    await wait_until(lambda: _has(ctl, group, "rewards.0.cost", 1), what="the problem")
    [admin_view] = await greeted(ctl, group, "rewards.0.cost")
    assert "must be a whole number, not &#39;lots&#39;" in admin_view["text"]
    assert tidepool.alive(), "the bot keeps running"
    assert await tidepool.stop() == 0
    assert "rewards.0.cost: must be a whole number" in tidepool.logs()
    assert s["group"] != group
