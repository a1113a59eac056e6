"""The console's group page: the /stats figures as JSON and charts, top members, settings."""

from __future__ import annotations

import json
import re
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiogram.types import User
from sqlalchemy import insert, update
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.db import EVENTS, MEMBERS, EventType, writing
from bot.points import Change, Ledger
from tests.console_harness import OWNER, ConsoleHarness, console_harness

HOSTILE = "<img src=x onerror=alert(1)>"
CHARTS = ("chart-messages", "chart-joins", "chart-retention", "chart-heatmap", "chart-tiers")
EMBEDDED = re.compile(r'<script type="application/json" id="group-stats">(.*?)</script>', re.S)


@pytest.fixture
async def h(engine: AsyncEngine, tmp_path: Path):
    async with console_harness(engine, tmp_path) as harness:
        yield harness


async def messages(h: ConsoleHarness, chat_id: int, *sent: tuple[User, datetime]) -> None:
    """Messages in the activity log, as the bot records them (the rollup counts them)."""
    rows = [
        {
            "chat_id": chat_id,
            "user_id": user.id,
            "at": at,
            "type": EventType.MESSAGE.value,
            "data": None,
            "is_reply": False,
            "is_forward": False,
        }
        for user, at in sent
    ]
    async with writing(h.app.db) as conn:
        await conn.execute(insert(EVENTS), rows)


async def busy_group(h: ConsoleHarness, title: str = "Tea lovers") -> tuple[int, User, User, User]:
    """A group with an admin (Ann) and two members; Bob wrote 3 messages, Cy 1, Ann none."""
    ann, bob, cy = await h.person("Ann"), await h.person("Bob"), await h.person("Cy")
    chat_id = await h.group(title, admins=[ann], members=[bob, cy], tags=["tea"])
    now = h.clock.now()
    await messages(
        h,
        chat_id,
        (bob, now - timedelta(hours=1)),
        (bob, now - timedelta(days=1)),
        (bob, now - timedelta(days=2)),
        (cy, now - timedelta(minutes=5)),
    )
    async with writing(h.app.db) as conn:
        await conn.execute(
            update(MEMBERS)
            .where(MEMBERS.c.chat_id == chat_id, MEMBERS.c.user_id == bob.id)
            .values(tier="core")
        )
    await Ledger(h.app.db).adjust(Change(chat_id, bob.id, 25, "helped", "admin:1", now))
    return chat_id, ann, bob, cy


async def test_the_stats_api_has_the_figures_series_heatmap_tiers_and_top_members(
    h: ConsoleHarness,
) -> None:
    chat_id, _ann, bob, cy = await busy_group(h)
    browser = await h.signed_in()
    answer = await browser.get(f"/api/groups/{chat_id}/stats?days=7")
    assert answer.status == 200
    stats = await answer.json()
    today = h.app.analytics.today(chat_id)
    assert (stats["days"], stats["last_day"]) == (7, today.isoformat())
    assert stats["first_day"] == (today - timedelta(days=6)).isoformat()
    m = stats["metrics"]
    assert (m["messages"], m["active"], m["joins"], m["members_end"]) == (4, 2, 3, 3)
    assert m["silent"] == 1  # Ann wrote nothing
    assert len(stats["series"]) == 7
    assert stats["series"][-1]["day"] == today.isoformat()
    assert sum(day["messages"] for day in stats["series"]) == 4
    assert sum(day["joins"] for day in stats["series"]) == 3
    assert len(stats["heatmap"]) == 7 and all(len(hours) == 24 for hours in stats["heatmap"])
    assert sum(map(sum, stats["heatmap"])) == 4
    assert [r["days"] for r in stats["retention"]] == [1, 7, 30]
    tiers = {row["tier"]: row["count"] for row in stats["tiers"]}
    assert tiers["core"] == 1 and tiers["new"] == 2
    top = stats["top_members"]
    assert [(t["user_id"], t["messages"], t["points"], t["tier"]) for t in top] == [
        (bob.id, 3, 25, "core"),
        (cy.id, 1, 0, "new"),
    ]
    assert top[0]["name"] == "Bob" and top[0]["username"] == "bob" and top[0]["active_days"] == 3
    health = stats["health"]
    assert isinstance(health["score"], int) and 0 <= health["score"] <= 100
    assert health["weekly"][-1] == health["score"]

    default = await (await browser.get(f"/api/groups/{chat_id}/stats")).json()
    assert default["days"] == 30 and len(default["series"]) == 30


async def test_days_must_be_from_1_to_365(h: ConsoleHarness) -> None:
    chat_id = await h.group("Quiet place")
    browser = await h.signed_in()
    for bad in ("0", "366", "abc", "-3", "7.5"):
        answer = await browser.get(f"/api/groups/{chat_id}/stats?days={bad}")
        assert answer.status == 400, bad
        assert "days" in (await answer.json())["error"]
    assert (await browser.get(f"/api/groups/{chat_id}/stats?days=365")).status == 200
    assert (await browser.get(f"/groups/{chat_id}?days=abc")).status == 400
    assert (await browser.get("/api/groups/-42/stats")).status == 404
    assert (await browser.get("/api/groups/nope/stats")).status == 400


async def test_the_page_shows_figures_charts_top_members_and_settings(h: ConsoleHarness) -> None:
    chat_id, *_ = await busy_group(h)
    browser = await h.signed_in()
    answer = await browser.get(f"/groups/{chat_id}?days=7&lang=en")
    assert answer.status == 200
    page = await answer.text()
    for chart in CHARTS:
        assert f'id="{chart}"' in page
    assert '<script src="/static/vendor/echarts/echarts.min.js" defer></script>' in page
    assert '<script src="/static/group.js" defer></script>' in page
    assert 'href="?days=7" data-days="7" aria-current="page"' in page
    assert 'data-testid="tile-messages"><div class="value">4<' in page
    assert "Bob" in page and "core member" in page and 'id="top-members"' in page
    assert 'data-api="PATCH /api/groups/' in page and 'value="tea"' in page
    found = EMBEDDED.search(page)
    assert found is not None
    embedded = json.loads(found.group(1))
    api = await (await browser.get(f"/api/groups/{chat_id}/stats?days=7")).json()
    assert embedded == api  # the page draws what the API answers
    labels = re.search(r'id="group-labels">(.*?)</script>', page, re.S)
    assert labels is not None and json.loads(labels.group(1))["weekdays"][0] == "Mon"
    zh = await (await browser.get(f"/groups/{chat_id}?lang=zh")).text()
    assert "每日消息与活跃成员" in zh and 'href="?days=30" data-days="30" aria-current="page"' in zh
    for name in ("group.js", "group.css"):
        static = await browser.get(f"/static/{name}")
        assert static.status == 200


async def test_settings_change_at_once_are_recorded_and_shown(h: ConsoleHarness) -> None:
    chat_id, *_ = await busy_group(h)
    browser = await h.signed_in()
    body = {
        "timezone": "Europe/Berlin",
        "language": "en",
        "tags": ["vip", "course", "vip"],
        "quiet_hours": "23:00-07:30",
        "daily_cap": 3,
    }
    answer = await h.send(browser, "PATCH", f"/api/groups/{chat_id}", body)
    assert answer.status == 200, await answer.text()
    result = await answer.json()
    assert result["changed"]["tags"] == {"old": ["tea"], "new": ["vip", "course"]}
    assert result["changed"]["timezone"] == {"old": None, "new": "Europe/Berlin"}
    known = h.app.registry.groups[chat_id]
    assert (known.timezone, known.language, known.tags) == (
        "Europe/Berlin",
        "en",
        ["vip", "course"],
    )
    rules = h.app.pushes.rules(chat_id)  # what the push queue uses for its next push
    assert (str(rules.quiet), rules.cap, str(rules.zone)) == ("23:00-07:30", 3, "Europe/Berlin")
    assert result["settings"]["in_force"]["daily_cap"] == 3

    # Back to the defaults, and a cap of 0 (no cap).
    reset = {"timezone": "", "language": "default", "quiet_hours": "default", "daily_cap": "off"}
    answer = await h.send(browser, "PATCH", f"/api/groups/{chat_id}", reset)
    assert answer.status == 200
    known = h.app.registry.groups[chat_id]
    assert (known.timezone, known.language, known.quiet_hours, known.daily_cap) == (
        None,
        None,
        None,
        0,
    )
    # The same values again change nothing and record nothing.
    again = await (await h.send(browser, "PATCH", f"/api/groups/{chat_id}", reset)).json()
    assert again["changed"] == {}

    group = await (await browser.get(f"/api/groups/{chat_id}")).json()
    assert [(c["area"], c["action"], c["user_id"]) for c in group["changes"]] == [
        ("group", "settings", OWNER),
        ("group", "settings", OWNER),
    ]
    assert group["changes"][1]["details"]["changed"]["daily_cap"] == {"old": None, "new": 3}
    page = await (await browser.get(f"/groups/{chat_id}?lang=en")).text()
    assert 'id="changes"' in page
    assert "Daily cap: default → 3" in page and "Daily cap: 3 → 0" in page
    assert "Time zone: Europe/Berlin → default" in page


async def test_bad_settings_are_refused_with_the_field_named_and_change_nothing(
    h: ConsoleHarness,
) -> None:
    chat_id, *_ = await busy_group(h)
    browser = await h.signed_in()
    bad: list[tuple[dict[str, Any], str]] = [
        ({"timezone": "Mars/Olympus"}, "timezone"),
        ({"timezone": 8}, "timezone"),
        ({"language": "fr"}, "language"),
        ({"tags": "vip"}, "tags"),
        ({"tags": ["ok", "no way"]}, "tags"),
        ({"tags": ["a,b"]}, "tags"),
        ({"tags": ["123"]}, "tags"),
        ({"quiet_hours": "25:00-08:00"}, "quiet_hours"),
        ({"quiet_hours": "08:00-08:00"}, "quiet_hours"),
        ({"daily_cap": 1001}, "daily_cap"),
        ({"daily_cap": -1}, "daily_cap"),
        ({"daily_cap": True}, "daily_cap"),
        ({"daily_cap": "lots"}, "daily_cap"),
        ({"colour": "blue"}, "colour"),
        ({}, "nothing to change"),
        ({"language": "en", "daily_cap": 5000}, "daily_cap"),  # all or nothing
    ]
    for body, field in bad:
        answer = await h.send(browser, "PATCH", f"/api/groups/{chat_id}", body)
        assert answer.status == 400, body
        assert field in (await answer.json())["error"], body
    not_json = await h.send(browser, "PATCH", f"/api/groups/{chat_id}", ["language", "en"])
    assert not_json.status == 400
    known = h.app.registry.groups[chat_id]
    assert (known.language, known.daily_cap, known.tags) == (None, None, ["tea"])
    group = await (await browser.get(f"/api/groups/{chat_id}")).json()
    assert group["changes"] == []


async def test_an_admin_of_one_group_gets_403_for_another(h: ConsoleHarness) -> None:
    chat_id, ann, *_ = await busy_group(h)
    other = await h.group("Other group", members=[ann])
    admin = await h.signed_in(ann.id)
    assert (await admin.get(f"/groups/{chat_id}")).status == 200
    assert (await admin.get(f"/api/groups/{chat_id}/stats")).status == 200
    for path in (f"/groups/{other}", f"/api/groups/{other}/stats", f"/api/groups/{other}"):
        assert (await admin.get(path)).status == 403, path
    refused = await h.send(admin, "PATCH", f"/api/groups/{other}", {"daily_cap": 1})
    assert refused.status == 403
    assert h.app.registry.groups[other].daily_cap is None
    mine = await h.send(admin, "PATCH", f"/api/groups/{chat_id}", {"daily_cap": 2})
    assert mine.status == 200
    change = (await (await admin.get(f"/api/groups/{chat_id}")).json())["changes"][0]
    assert (change["user_id"], change["by"]) == (ann.id, "Ann")
    # Without the page's CSRF token a change is refused.
    forged = await admin.patch(f"/api/groups/{chat_id}", json={"daily_cap": 9})
    assert forged.status == 403
    assert h.app.registry.groups[chat_id].daily_cap == 2


async def test_hostile_titles_names_and_tags_are_shown_as_text(h: ConsoleHarness) -> None:
    villain = await h.person("Villain")
    chat_id = await h.group(HOSTILE, members=[villain])
    async with writing(h.app.db) as conn:
        await conn.execute(
            update(MEMBERS)
            .where(MEMBERS.c.chat_id == chat_id, MEMBERS.c.user_id == villain.id)
            .values(first_name=HOSTILE)
        )
    await messages(h, chat_id, (villain, h.clock.now() - timedelta(hours=2)))
    browser = await h.signed_in()
    page = await (await browser.get(f"/groups/{chat_id}")).text()
    assert HOSTILE not in page
    assert "&lt;img src=x onerror=alert(1)&gt;" in page  # the title and the member's name
    assert "\\u003cimg src=x onerror=alert(1)\\u003e" in page  # in the embedded JSON
    stats = await (await browser.get(f"/api/groups/{chat_id}/stats")).json()
    assert stats["title"] == HOSTILE and stats["top_members"][0]["name"] == HOSTILE


async def test_a_new_group_with_nothing_yet_still_has_a_page(h: ConsoleHarness) -> None:
    chat_id = await h.group("Brand new")
    browser = await h.signed_in()
    stats = await (await browser.get(f"/api/groups/{chat_id}/stats?days=90")).json()
    assert stats["metrics"]["messages"] == 0 and stats["top_members"] == []
    assert all(r["rate"] is None for r in stats["retention"])
    assert len(stats["series"]) == 90
    page = await browser.get(f"/groups/{chat_id}?days=90&lang=en")
    assert page.status == 200
    text = await page.text()
    assert "Nobody wrote in this period." in text and "Nobody has changed anything" in text
    assert date.fromisoformat(stats["first_day"]) == h.app.analytics.today(chat_id) - timedelta(
        days=89
    )
