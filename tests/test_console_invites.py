"""The console's invites page: K and the cycle time, the month's inviters, campaigns with their
retention, the latest referrals, and revoking a campaign from the page."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from aiogram.types import User
from sqlalchemy import insert, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.db import INVITE_LINKS, MEMBER_DAYS, REFERRALS, writing
from bot.invites.links import Link
from tests.console_harness import OWNER, ConsoleHarness, console_harness

HOSTILE = "<img src=x onerror=alert(1)>"
ESCAPED = "&lt;img src=x onerror=alert(1)&gt;"


@pytest.fixture
async def h(engine: AsyncEngine, tmp_path: Path):
    async with console_harness(engine, tmp_path) as harness:
        yield harness


@dataclass
class Seeded:
    a: int
    b: int
    ann: User  # admin of A
    zed: User  # admin of B
    bob: User  # a member of A whose link brought cat and dan
    cat: User
    dan: User
    eve: User  # came through the campaign, pending
    fay: User  # came through the campaign, left after two days
    spring: Link
    now: datetime


async def joined(h: ConsoleHarness, chat_id: int, user: User, link: Link, at: datetime) -> None:
    """A first join through `link`, told to the bot as Telegram tells it (the registry counts
    it and the referrals credit it)."""
    await h.app.registry.member_joined(chat_id, user, at, invite_link=link.link, source="test")


async def seeded(h: ConsoleHarness) -> Seeded:
    """Group A: bob (joined at the start) brought cat (qualified) and dan (left at once); the
    campaign `spring` brought fay (left after 2 days) and eve (just now, pending). Twelve days
    on, bob and cat wrote in the last 30 days, ann only before."""
    start = h.clock.now()
    ann, zed, bob = await h.person("Ann"), await h.person("Zed"), await h.person("Bob")
    cat, dan = await h.person("Cat"), await h.person("Dan")
    eve, fay = await h.person(HOSTILE), await h.person("Fay")
    a = await h.group("Group A", admins=[ann], members=[bob])
    b = await h.group("Group B", admins=[zed])
    links = h.app.invites.links
    spring = await links.campaign(a, "spring", ann.id, lasts=timedelta(days=30))
    mine = await links.personal(a, bob)
    await links.campaign(b, "elsewhere", zed.id)

    await joined(h, a, fay, spring, start + timedelta(days=4))
    await h.app.registry.member_left(a, fay, start + timedelta(days=6), source="test")
    await joined(h, a, cat, mine, start + timedelta(days=7))
    h.later(days=12)
    now = h.clock.now()
    await joined(h, a, dan, mine, now - timedelta(days=2))
    await h.app.registry.member_left(a, dan, now - timedelta(days=2, minutes=-2), source="test")
    await joined(h, a, eve, spring, now - timedelta(minutes=5))
    today = now.date()
    async with writing(h.app.db) as conn:
        await conn.execute(
            update(REFERRALS)
            .where(REFERRALS.c.chat_id == a, REFERRALS.c.invitee_id == cat.id)
            .values(state="qualified", qualified_at=now - timedelta(days=1))
        )
        await conn.execute(
            insert(MEMBER_DAYS),
            [
                {"chat_id": a, "user_id": bob.id, "day": today - timedelta(days=1), "messages": 4},
                {"chat_id": a, "user_id": cat.id, "day": today - timedelta(days=3), "messages": 1},
                {"chat_id": a, "user_id": ann.id, "day": today - timedelta(days=40), "messages": 9},
                {"chat_id": a, "user_id": eve.id, "day": today, "messages": 0, "presses": 1},
            ],
        )
    return Seeded(a, b, ann, zed, bob, cat, dan, eve, fay, spring, now)


async def test_the_api_has_k_inviters_campaigns_and_referrals(h: ConsoleHarness) -> None:
    s = await seeded(h)
    owner = await h.signed_in()
    answer = await owner.get(f"/api/groups/{s.a}/invites")
    assert answer.status == 200
    got = await answer.json()

    fission = got["fission"]
    assert fission["qualified"] == 1 and fission["active"] == 2  # bob and cat wrote
    assert fission["k"] == 0.5
    assert fission["cycle_days"] == 11.0  # bob joined at the start; cat qualified on day 11
    assert fission["first_day"] == str(s.now.date() - timedelta(days=29))

    [bob] = got["inviters"]  # campaigns credit nobody; cat joined this month, so did dan
    assert (bob["user_id"], bob["name"]) == (s.bob.id, "Bob")
    assert (bob["qualified"], bob["pending"], bob["void"], bob["reversed"]) == (1, 0, 1, 0)

    [spring] = got["campaigns"]  # B's campaign is B's
    assert spring["name"] == "spring" and spring["link"] == s.spring.link
    assert spring["revoked"] is False and spring["expired"] is False
    assert spring["joins"] == 2 and spring["approval"] is False
    assert (spring["qualified"], spring["pending"], spring["void"]) == (0, 1, 1)
    # fay stayed two days: kept after 1 day, not after 7; eve is too new to count.
    assert (spring["retention_day1"], spring["retention_day7"]) == (1.0, 0.0)
    assert spring["expires_at"].endswith("+08:00")  # in the group's time (Shanghai)

    referrals = got["referrals"]
    assert [r["invitee_id"] for r in referrals] == [s.eve.id, s.dan.id, s.cat.id, s.fay.id]
    assert got["referrals_total"] == 4
    eve, dan, cat, fay = referrals
    assert (eve["state"], eve["campaign"], eve["inviter_id"], eve["invitee"]) == (
        "pending",
        "spring",
        None,
        HOSTILE,
    )
    assert (dan["state"], dan["reason"], dan["inviter"]) == ("void", "left_quickly", "Bob")
    assert (cat["state"], cat["reason"]) == ("qualified", None)
    assert (
        cat["qualified_at"]
        == (s.now - timedelta(days=1)).astimezone(h.app.invites.zones(s.a)).isoformat()
    )
    assert (fay["state"], fay["reason"], fay["left_at"] is not None) == ("void", "left", True)


async def test_the_page_shows_the_numbers_with_reasons_in_words(h: ConsoleHarness) -> None:
    s = await seeded(h)
    owner = await h.signed_in()
    page = await owner.get(f"/groups/{s.a}/invites")
    assert page.status == 200
    html = await page.text()
    assert '<div class="value" id="invites-k">0.50</div>' in html
    assert "11.0 days" in html
    assert f'<tr data-user="{s.bob.id}">' in html
    assert 'data-campaign="spring" data-status="active"' in html
    assert 'data-testid="revoke-campaign"' in html
    assert ">100%<" in html and ">0%<" in html  # spring's retention
    assert "left within minutes of joining" in html and "left the group" in html
    assert "The latest 4 of 4" in html
    assert "elsewhere" not in html  # group B's campaign
    # Times in the group's clock: cat qualified a day ago, 09:00 in Shanghai.
    assert (s.now - timedelta(days=1)).strftime("%Y-%m-%d") + " 09:00" in html
    assert HOSTILE not in html and ESCAPED in html

    zh = await (await owner.get(f"/groups/{s.a}/invites", params={"lang": "zh"})).text()
    assert "加入几分钟内就退群了" in zh and "30 天裂变系数 K" in zh and "已退群" in zh

    # The group's page leads here.
    group_page = await (await owner.get(f"/groups/{s.a}")).text()
    assert f'href="/groups/{s.a}/invites"' in group_page


async def test_a_group_with_no_invitations_has_a_page_too(h: ConsoleHarness) -> None:
    a = await h.group("Quiet")
    owner = await h.signed_in()
    got = await (await owner.get(f"/api/groups/{a}/invites")).json()
    assert got["fission"]["k"] is None and got["fission"]["cycle_days"] is None
    assert got["inviters"] == got["campaigns"] == got["referrals"] == []
    html = await (await owner.get(f"/groups/{a}/invites")).text()
    assert '<div class="value" id="invites-k">–</div>' in html
    assert "No campaigns yet" in html and "Nobody has joined through the bot&#39;s links" in html


async def test_only_the_groups_admins_see_its_invites(h: ConsoleHarness) -> None:
    s = await seeded(h)
    nobody = await h.client()
    page = await nobody.get(f"/groups/{s.a}/invites", allow_redirects=False)
    assert page.status == 302 and page.headers["Location"].startswith("/signin")
    assert (await nobody.get(f"/api/groups/{s.a}/invites")).status == 401

    zed = await h.signed_in(s.zed.id)  # an admin of B only
    assert (await zed.get(f"/groups/{s.a}/invites")).status == 403
    assert (await zed.get(f"/api/groups/{s.a}/invites")).status == 403
    refused = await h.send(zed, "POST", f"/api/groups/{s.a}/campaigns/spring/revoke")
    assert refused.status == 403
    assert (await zed.get(f"/api/groups/{s.b}/invites")).status == 200

    ann = await h.signed_in(s.ann.id)
    assert (await ann.get(f"/groups/{s.a}/invites")).status == 200
    assert (await ann.get("/api/groups/-42/invites")).status == 403  # not one of theirs
    owner = await h.signed_in()
    assert (await owner.get("/api/groups/-42/invites")).status == 404
    assert (await owner.get("/groups/nope/invites")).status == 404  # not a group id: no route


async def test_an_admin_revokes_a_campaign_and_the_change_is_recorded(h: ConsoleHarness) -> None:
    s = await seeded(h)
    ann = await h.signed_in(s.ann.id)
    path = f"/api/groups/{s.a}/campaigns/spring/revoke"
    forged = await ann.post(path)  # no CSRF token
    assert forged.status == 403
    assert await h.app.invites.links.find_campaign(s.a, "spring") is not None

    answer = await h.send(ann, "POST", path)
    assert answer.status == 200, await answer.text()
    assert (await answer.json())["revoked"] == {"name": "spring", "link": s.spring.link}
    assert await h.app.invites.links.find_campaign(s.a, "spring") is None
    [spring] = (await (await ann.get(f"/api/groups/{s.a}/invites")).json())["campaigns"]
    assert spring["revoked"] is True
    [change] = await h.console.changes.recent(chat_ids=[s.a], areas=("invite",))
    assert (change.user_id, change.action) == (s.ann.id, "campaign_revoked")
    assert change.details["campaign"] == "spring"

    html = await (await ann.get(f"/groups/{s.a}/invites")).text()
    assert 'data-campaign="spring" data-status="revoked"' in html
    assert 'data-testid="revoke-campaign"' not in html
    assert "revoked the link of campaign spring" in html  # the change log

    again = await h.send(ann, "POST", path)
    assert again.status == 404
    assert "no active campaign called spring" in (await again.json())["error"]


async def test_a_campaign_name_in_any_script_is_revoked_by_its_name(h: ConsoleHarness) -> None:
    ann = await h.person("Ann")
    a = await h.group("Group A", admins=[ann])
    await h.app.invites.links.campaign(a, "春季", ann.id)
    owner = await h.signed_in()
    answer = await h.send(owner, "POST", f"/api/groups/{a}/campaigns/%E6%98%A5%E5%AD%A3/revoke")
    assert answer.status == 200, await answer.text()
    assert await h.app.invites.links.find_campaign(a, "春季") is None


async def test_telegram_refusing_a_revoke_is_said_plainly_and_changes_nothing(
    h: ConsoleHarness,
) -> None:
    a = await h.group("Group A")
    await h.app.invites.links.campaign(a, "gone", OWNER)
    await h.ctl.set_member(a, h.app.me.id, "member")  # the bot lost its admin rights
    owner = await h.signed_in()
    path = f"/api/groups/{a}/campaigns/gone/revoke"
    answer = await h.send(owner, "POST", path)
    assert answer.status == 502
    error = (await answer.json())["error"]
    assert error.startswith("Telegram refused to revoke the link of campaign gone:")
    assert "not enough rights" in error and "The link still works" in error
    async with h.app.db.connect() as conn:
        revoked_at = (
            await conn.execute(
                select(INVITE_LINKS.c.revoked_at).where(INVITE_LINKS.c.name == "gone")
            )
        ).scalar_one()
    assert revoked_at is None
    assert await h.console.changes.recent(chat_ids=[a], areas=("invite",)) == []

    headers = {"X-CSRF-Token": await h.csrf(owner), "Accept": "application/json"}
    zh = await owner.post(path, params={"lang": "zh"}, headers=headers)
    assert "Telegram 拒绝作废活动 gone 的链接" in (await zh.json())["error"]
