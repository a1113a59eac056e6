"""End to end: admins adjust members' points with /points; the ledger and balance agree."""

from __future__ import annotations

import sqlite3

from bot.emulator import EmulatorClient
from tests.e2e.conftest import Tidepool, all_confirmed, wait_until
from tests.e2e.test_sop_e2e import _has, greeted, setup


def ledger(tidepool: Tidepool) -> list[tuple[int, int, str, str]]:
    with sqlite3.connect(tidepool.folder / "tidepool.db") as db:
        rows = db.execute("SELECT user_id, delta, reason, source FROM points_ledger ORDER BY id")
        return [tuple(row) for row in rows]


def balances(tidepool: Tidepool) -> dict[int, int]:
    with sqlite3.connect(tidepool.folder / "tidepool.db") as db:
        return dict(db.execute("SELECT user_id, balance FROM points_balances").fetchall())


async def test_admins_give_and_take_points(ctl: EmulatorClient, tidepool: Tidepool) -> None:
    s = await setup(ctl, tidepool)
    group = s["group"]
    admin = (await ctl.create_user("Ada", username="ada"))["id"]
    await ctl.set_member(group, admin, "administrator")
    alice = (await ctl.create_user("Alice", username="alice"))["id"]
    shy = (await ctl.create_user("<b>Shy</b>"))["id"]
    for member in (alice, shy):
        await ctl.join(group, member)
    await wait_until(lambda: all_confirmed(ctl), what="the joins")

    await ctl.send_message(group, alice, "/points @alice +1000 because")
    await wait_until(lambda: _has(ctl, group, "Only the group's admins", 1), what="a refusal")
    await ctl.send_message(group, admin, "/points @alice lots")
    await wait_until(lambda: _has(ctl, group, "Usage: /points", 1), what="the usage line")
    await ctl.send_message(group, admin, "/points @nobody +5")
    await wait_until(lambda: _has(ctl, group, "I don't know @nobody", 1), what="unknown member")

    await ctl.send_message(group, admin, "/points @alice +50 helped a newcomer")
    await wait_until(lambda: _has(ctl, group, "Balance now: 50", 1), what="the award")
    [award] = await greeted(ctl, group, "Balance now: 50")
    assert "@alice: +50 points (helped a newcomer)" in award["text"]
    await ctl.send_message(group, admin, "/points @alice -80 too much")
    await wait_until(lambda: _has(ctl, group, "I can't take 80", 1), what="a refused spend")

    # In reply to a member without a username; their name is shown escaped.
    said = await ctl.send_message(group, shy, "hello everyone")
    await ctl.send_message(
        group, admin, "/points +10", reply_to_message_id=said["message"]["message_id"]
    )
    await wait_until(lambda: _has(ctl, group, "Balance now: 10", 1), what="the reply award")
    [reply] = await greeted(ctl, group, "Balance now: 10")
    assert "&lt;b&gt;Shy&lt;/b&gt;: +10 points (admin adjustment)" in reply["text"]
    assert await tidepool.stop() == 0

    assert ledger(tidepool) == [
        (alice, 50, "helped a newcomer", f"admin:{admin}"),
        (shy, 10, "admin adjustment", f"admin:{admin}"),
    ]
    assert balances(tidepool) == {alice: 50, shy: 10}
