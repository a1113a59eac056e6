"""End to end, with the real bot process: a member's /invite link brings friends; a referral
qualifies after three days on the test clock and pays the inviter once; leaving soon after
reverses it and takes the points back; coming back never counts again; leaving before voids it;
a campaign's numbers show in /invites and `tidepool export invites`; a campaign that needs
approval has its requests approved and attributed."""

from __future__ import annotations

import re
from typing import Any

from bot.emulator import EmulatorClient
from tests.e2e.conftest import Tidepool, all_confirmed, wait_until
from tests.e2e.test_sop_e2e import greeted, setup, sops_without

LINK = re.compile(r"https://t\.me/\+[\w-]+")
DAY = 86400.0


def referrals(tidepool: Tidepool) -> dict[int, tuple[Any, ...]]:
    """invitee -> (inviter, state, reason, via request)"""
    rows = tidepool.rows("SELECT invitee_id, inviter_id, state, reason, via_request FROM referrals")
    return {row[0]: tuple(row[1:]) for row in rows}


def balance(tidepool: Tidepool, user_id: int) -> int:
    rows = tidepool.rows(f"SELECT balance FROM points_balances WHERE user_id = {user_id}")
    return int(rows[0][0]) if rows else 0


def link_joins(tidepool: Tidepool, link: str) -> int:
    rows = tidepool.rows(f"SELECT joins FROM invite_links WHERE link = '{link}'")
    return int(rows[0][0]) if rows else 0


async def said(ctl: EmulatorClient, chat: int, needle: str) -> bool:
    return bool(await greeted(ctl, chat, needle))


async def told(ctl: EmulatorClient, user_id: int, needle: str) -> bool:
    return bool(await private(ctl, user_id, needle))


async def true(value: bool) -> bool:
    """A condition read from the database, as `wait_until` takes one."""
    return value


async def private(ctl: EmulatorClient, user_id: int, needle: str) -> list[dict[str, Any]]:
    return [m for m in await ctl.sent(user_id) if needle in (m.get("text") or "")]


async def test_a_referral_pays_once_is_reversed_and_never_counts_twice(
    ctl: EmulatorClient, tidepool: Tidepool
) -> None:
    sops = sops_without(
        tidepool.folder, "weekly_lottery", "daily_tip", "reengage_dormant", "silent_reactivation"
    )
    s = await setup(ctl, tidepool, sops)
    group, clock = s["group"], s["clock"]
    ada = (await ctl.create_user("Ada", username="ada"))["id"]
    await ctl.start(ada)
    await ctl.join(group, ada)
    ben = (await ctl.create_user("Ben"))["id"]
    cy = (await ctl.create_user("Cy"))["id"]
    await wait_until(lambda: all_confirmed(ctl), what="Ada's join")

    # Ada asks for her link: privately, since she has started the bot.
    await ctl.send_message(group, ada, "/invite")
    await wait_until(lambda: told(ctl, ada, "invite link"), what="Ada's link in private")
    [sent] = await private(ctl, ada, "invite link")
    found = LINK.search(sent["text"])
    assert found is not None
    link = found.group(0)
    await wait_until(lambda: said(ctl, group, "I sent you your invite link"), what="a note")
    await ctl.send_message(group, ada, "/invite")  # the same link again
    await wait_until(lambda: len_at_least(private(ctl, ada, link), 2), what="the link again")

    for friend in (ben, cy):
        await ctl.join(group, friend, invite_link=link)
    await wait_until(lambda: true(len(referrals(tidepool)) == 2), what="two referrals")
    assert referrals(tidepool) == {ben: (ada, "pending", None, 0), cy: (ada, "pending", None, 0)}
    for text in ("hi all", "thanks for having me", "what are we reading?"):
        await ctl.send_message(group, ben, text)
    await wait_until(lambda: all_confirmed(ctl), what="Ben's messages")

    # Cy leaves after two days: void.
    await clock.forward(2 * DAY)
    await ctl.leave(group, cy)
    await wait_until(
        lambda: true(referrals(tidepool)[cy][1] == "void"), what="Cy's referral voided"
    )
    assert referrals(tidepool)[cy] == (ada, "void", "left", 0)

    # Three days after the join Ben's referral qualifies: Ada gets 50 points and a thank-you.
    await clock.forward(1 * DAY + 60)
    await wait_until(lambda: told(ctl, ada, "Thank you for bringing Ben"), what="the thanks")
    assert referrals(tidepool)[ben][1] == "qualified"
    assert balance(tidepool, ada) == 50
    [thanks] = await private(ctl, ada, "Thank you for bringing Ben")
    assert "you now have 50" in thanks["text"]

    # Ben leaves the next day, within the claw-back: reversed, and the points go back.
    await clock.forward(1 * DAY)
    await ctl.leave(group, ben)
    await wait_until(lambda: told(ctl, ada, "Ben left"), what="the reversal notice")
    assert referrals(tidepool)[ben] == (ada, "reversed", "left", 0)
    assert balance(tidepool, ada) == 0
    ledger = tidepool.rows(f"SELECT delta, reason FROM points_ledger WHERE user_id = {ada}")
    assert ledger == [(50, "referral"), (-50, "referral reversed")]

    # Ben comes back through the link: a join through it, never a referral again.
    await ctl.join(group, ben, invite_link=link)
    await wait_until(
        lambda: true(link_joins(tidepool, link) == 3), what="the rejoin counted on the link"
    )
    assert referrals(tidepool)[ben] == (ada, "reversed", "left", 0)
    await clock.forward(4 * DAY)
    for text in ("back again", "missed you", "hello"):
        await ctl.send_message(group, ben, text)
    await wait_until(lambda: all_confirmed(ctl), what="Ben's messages")
    await clock.forward(DAY)
    assert len(await private(ctl, ada, "Thank you for bringing Ben")) == 1
    assert balance(tidepool, ada) == 0

    # Ada sees her referrals and why.
    await ctl.send_message(group, ada, "/invites")
    await wait_until(lambda: said(ctl, group, "2 joined through your link"), what="/invites")
    [mine] = await greeted(ctl, group, "2 joined through your link")
    assert "Ben: reversed (left the group)" in mine["text"]
    assert "Cy: void (left the group)" in mine["text"]
    assert await tidepool.stop() == 0


async def len_at_least(found: Any, count: int) -> bool:
    return len(await found) >= count


async def test_campaign_numbers_export_and_approved_requests(
    ctl: EmulatorClient, tidepool: Tidepool
) -> None:
    s = await setup(ctl, tidepool)
    group, owner = s["group"], s["owner"]
    dan = (await ctl.create_user("Dan"))["id"]
    eve = (await ctl.create_user("Eve"))["id"]
    banned = (await ctl.create_user("Mal"))["id"]

    await ctl.send_message(group, owner, "/campaign spring limit=10 expires=7d")
    await wait_until(lambda: said(ctl, group, "Campaign spring:"), what="the campaign link")
    [made] = await greeted(ctl, group, "Campaign spring:")
    assert "Up to 10 people" in made["text"]
    found = LINK.search(made["text"])
    assert found is not None
    spring = found.group(0)
    await ctl.send_message(group, owner, "/campaign spring")
    await wait_until(lambda: said(ctl, group, "already a campaign called spring"), what="refusal")

    await ctl.join(group, dan, invite_link=spring)
    await wait_until(lambda: true(dan in referrals(tidepool)), what="Dan's referral")
    assert referrals(tidepool)[dan] == (None, "pending", None, 0)

    # A campaign whose joins are requests: the bot approves them (the rule: its own links),
    # but never someone removed from the group before.
    await ctl.send_message(group, owner, "/campaign vip approve")
    await wait_until(lambda: said(ctl, group, "Campaign vip:"), what="the vip link")
    [vip_made] = await greeted(ctl, group, "Campaign vip:")
    found = LINK.search(vip_made["text"])
    assert found is not None
    vip = found.group(0)
    asked = await ctl.join(group, eve, invite_link=vip)
    assert asked["requested"]
    await wait_until(lambda: true(eve in referrals(tidepool)), what="Eve approved and attributed")
    assert referrals(tidepool)[eve] == (None, "pending", None, 1)
    await ctl.join(group, banned)
    await ctl.kick(group, banned, by=owner)
    await wait_until(lambda: all_confirmed(ctl), what="Mal's join and removal")
    await ctl.set_member(group, banned, "left")  # unbanned: free to ask again
    await ctl.join(group, banned, invite_link=vip)
    await wait_until(lambda: not_pending(ctl, group), what="Mal's request decided")
    assert banned not in referrals(tidepool)

    await ctl.send_message(group, owner, "/invites")
    await wait_until(lambda: said(ctl, group, "Invites this month"), what="the admin numbers")
    [numbers] = await greeted(ctl, group, "Invites this month")
    assert "spring: 1 joined, 0 qualified, 1 pending" in numbers["text"]
    assert "vip: 1 joined" in numbers["text"]
    assert "Fission K over 30 days" in numbers["text"]
    assert await tidepool.stop() == 0

    rows = await tidepool.export("invites")
    by_invitee = {row["invitee_id"]: row for row in rows}
    assert by_invitee[dan]["link_name"] == "spring" and by_invitee[dan]["state"] == "pending"
    assert by_invitee[eve]["link_name"] == "vip" and by_invitee[eve]["via_request"]
    assert by_invitee[dan]["link_kind"] == "campaign"


async def not_pending(ctl: EmulatorClient, group: int) -> bool:
    return not await ctl.join_requests(group)
