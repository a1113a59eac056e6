"""The console's members pages: search and filters, a member's history, tags, points, CSV."""

from __future__ import annotations

import csv
import io
from datetime import date, timedelta
from pathlib import Path

import pytest
from aiogram.types import User
from sqlalchemy import insert
from sqlalchemy.ext.asyncio import AsyncEngine

from bot import points
from bot.db import CHECKINS, MEMBER_TAGS, MEMBERS, TIER_CHANGES, writing
from tests.console_harness import ConsoleHarness, console_harness

HOSTILE = "<img src=x onerror=alert(1)>"
ESCAPED = "&lt;img src=x onerror=alert(1)&gt;"


@pytest.fixture
async def h(engine: AsyncEngine, tmp_path: Path):
    async with console_harness(engine, tmp_path) as harness:
        yield harness


async def give(h: ConsoleHarness, chat_id: int, user_id: int, delta: int, reason: str) -> None:
    async with writing(h.app.db) as conn:
        change = points.Change(chat_id, user_id, delta, reason, "checkin", h.clock.now())
        await points.apply(conn, [change])


async def two_groups(h: ConsoleHarness) -> tuple[User, User, User, int, int]:
    ann, bob, eve = await h.person("Ann"), await h.person("Bob"), await h.person(HOSTILE)
    a = await h.group("Group A", admins=[ann], members=[bob, eve])
    b = await h.group("Group B", members=[bob])
    return ann, bob, eve, a, b


async def test_the_list_searches_and_filters_the_viewers_groups(h: ConsoleHarness) -> None:
    ann, bob, eve, a, b = await two_groups(h)
    async with writing(h.app.db) as conn:
        await conn.execute(
            insert(MEMBER_TAGS).values(
                chat_id=a, user_id=bob.id, tag="vip", source="sop:x", added_at=h.clock.now()
            )
        )
    await give(h, a, bob.id, 30, "check-in")
    owner = await h.signed_in()
    everyone = await (await owner.get("/api/members")).json()
    assert everyone["total"] == 4
    assert {(m["chat_id"], m["user_id"]) for m in everyone["members"]} == {
        (a, ann.id),
        (a, bob.id),
        (a, eve.id),
        (b, bob.id),
    }

    found = await (await owner.get("/api/members", params={"q": "@bo", "group": str(a)})).json()
    [bob_a] = found["members"]
    assert (bob_a["user_id"], bob_a["tags"], bob_a["points"], bob_a["group"]) == (
        bob.id,
        ["vip"],
        30,
        "Group A",
    )
    by_id = await (await owner.get("/api/members", params={"q": str(ann.id)})).json()
    assert [m["user_id"] for m in by_id["members"]] == [ann.id]
    tagged = await (await owner.get("/api/members", params={"tag": "vip"})).json()
    assert [m["user_id"] for m in tagged["members"]] == [bob.id]
    new = await (await owner.get("/api/members", params={"tier": "new", "group": str(b)})).json()
    assert [m["user_id"] for m in new["members"]] == [bob.id]
    anna = await h.person("Анна")
    await h.app.registry.member_joined(b, anna, h.clock.now(), source="test")
    cyrillic = await (await owner.get("/api/members", params={"q": "Анн"})).json()
    assert [m["user_id"] for m in cyrillic["members"]] == [anna.id]
    upper = await (await owner.get("/api/members", params={"q": "ANN"})).json()
    assert [m["user_id"] for m in upper["members"]] == [ann.id]
    wild = await (await owner.get("/api/members", params={"q": "%"})).json()
    assert wild["total"] == 0  # LIKE's wildcards are searched for as text

    page = await owner.get("/members", params={"q": "bob"})
    assert page.status == 200
    html = await page.text()
    assert 'id="members"' in html and 'id="member-search"' in html
    assert f'href="/members/{a}/{bob.id}"' in html and f'href="/members/{b}/{bob.id}"' in html
    assert f'href="/members/{a}/{ann.id}"' not in html

    # An admin of A sees A's members only, and is refused B.
    admin = await h.signed_in(ann.id)
    mine = await (await admin.get("/api/members")).json()
    assert {m["chat_id"] for m in mine["members"]} == {a}
    assert (await admin.get("/api/members", params={"group": str(b)})).status == 403
    assert (await admin.get("/members", params={"group": str(b)})).status == 403


async def test_bad_filters_are_refused_by_name(h: ConsoleHarness) -> None:
    owner = await h.signed_in()
    for params, word in (
        ({"tier": "gold"}, "tier"),
        ({"group": "x"}, "group"),
        ({"page": "0"}, "page"),
    ):
        answer = await owner.get("/api/members", params=params)
        assert answer.status == 400
        assert word in (await answer.json())["error"]
    assert (await owner.get("/api/members", params={"group": "-1"})).status == 404


async def test_the_list_is_paged(h: ConsoleHarness) -> None:
    a = await h.group("Big")
    async with writing(h.app.db) as conn:
        await conn.execute(
            insert(MEMBERS),
            [
                {"chat_id": a, "user_id": 5000 + n, "first_name": f"M{n}", "status": "member"}
                for n in range(60)
            ],
        )
    owner = await h.signed_in()
    first = await (await owner.get("/api/members", params={"group": str(a)})).json()
    assert (first["total"], first["pages"], len(first["members"])) == (60, 2, 50)
    second = await (await owner.get("/api/members", params={"group": str(a), "page": "2"})).json()
    assert len(second["members"]) == 10
    seen = {m["user_id"] for m in first["members"]} | {m["user_id"] for m in second["members"]}
    assert len(seen) == 60
    html = await (await owner.get("/members", params={"group": str(a)})).text()
    assert 'data-testid="page-next"' in html and "page=2" in html


async def test_a_members_history(h: ConsoleHarness) -> None:
    ann = await h.person("Ann")
    a = await h.group("Group A")
    await h.app.registry.member_joined(
        a,
        ann,
        h.clock.now(),
        invite_link="https://t.me/+spring",
        invite_name="spring",
        source="test",
    )
    await h.app.activity.flush()
    today = date(2026, 11, 2)
    async with writing(h.app.db) as conn:
        await conn.execute(
            insert(CHECKINS),
            [
                {
                    "chat_id": a,
                    "user_id": ann.id,
                    "day": today - timedelta(days=d),
                    "at": h.clock.now(),
                    "streak": 2 - d,
                    "points": 10,
                }
                for d in range(2)
            ],
        )
        await conn.execute(
            insert(TIER_CHANGES).values(
                chat_id=a, user_id=ann.id, old="new", new="seed", at=h.clock.now()
            )
        )
    await give(h, a, ann.id, 20, "check-in streak")
    owner = await h.signed_in()
    answer = await (await owner.get(f"/api/members/{a}/{ann.id}")).json()
    assert answer["member"]["invite_link"] == "https://t.me/+spring"
    assert answer["member"]["points"] == 20
    [joined] = answer["membership"]
    assert (joined["type"], joined["invite_link"], joined["invite_name"]) == (
        "member_joined",
        "https://t.me/+spring",
        "spring",
    )
    assert [c["day"] for c in answer["checkins"]] == ["2026-11-02", "2026-11-01"]
    assert answer["checkin_count"] == 2
    assert [(r["delta"], r["reason"]) for r in answer["ledger"]] == [(20, "check-in streak")]
    assert [(c["old"], c["new"]) for c in answer["tier_changes"]] == [("new", "seed")]

    page = await owner.get(f"/members/{a}/{ann.id}")
    assert page.status == 200
    html = await page.text()
    for shown in (
        "https://t.me/+spring",
        "check-in streak",
        'data-testid="add-tag"',
        'data-testid="adjust-points"',
        "2026-11-01",
    ):
        assert shown in html
    assert (await owner.get(f"/api/members/{a}/424242")).status == 404
    assert (await owner.get(f"/members/{a}/424242")).status == 404


async def test_tags_are_added_and_removed_and_recorded(h: ConsoleHarness) -> None:
    ann, bob, _eve, a, b = await two_groups(h)
    owner = await h.signed_in()
    added = await h.send(owner, "POST", f"/api/members/{a}/{bob.id}/tags", {"tag": " helper "})
    assert added.status == 200
    assert (await added.json()) == {"added": True, "tag": "helper", "tags": ["helper"]}
    again = await h.send(owner, "POST", f"/api/members/{a}/{bob.id}/tags", {"tag": "helper"})
    assert (await again.json())["added"] is False
    for body in ({}, {"tag": ""}, {"tag": "two words"}, {"tag": "x" * 65}, {"tag": 5}):
        bad = await h.send(owner, "POST", f"/api/members/{a}/{bob.id}/tags", body)
        assert bad.status == 400
        assert "tag" in (await bad.json())["error"]

    # The SOPs see the tag: it is written as their `tag` step writes it.
    facts = await h.app.engine.facts.members(a, [bob.id], h.clock.now())
    assert "helper" in facts[bob.id].tags

    removed = await h.send(owner, "DELETE", f"/api/members/{a}/{bob.id}/tags/helper")
    assert (await removed.json()) == {"removed": True, "tag": "helper", "tags": []}
    gone = await h.send(owner, "DELETE", f"/api/members/{a}/{bob.id}/tags/helper")
    assert gone.status == 404

    recorded = await h.console.changes.recent(areas=("member",))
    assert [(c.action, c.details["tag"], c.details["user"]) for c in recorded] == [
        ("tag_removed", "helper", bob.id),
        ("tag_added", "helper", bob.id),
    ]
    html = await (await owner.get(f"/members/{a}/{bob.id}")).text()
    assert "tagged Bob helper" in html and "removed the tag helper from Bob" in html
    assert "tagged Bob helper" in await (await owner.get("/members")).text()

    admin = await h.signed_in(ann.id)
    refused = await h.send(admin, "POST", f"/api/members/{b}/{bob.id}/tags", {"tag": "x"})
    assert refused.status == 403
    assert (await h.send(admin, "DELETE", f"/api/members/{b}/{bob.id}/tags/x")).status == 403
    unknown = await h.send(owner, "POST", f"/api/members/{a}/424242/tags", {"tag": "x"})
    assert unknown.status == 404


async def test_points_are_adjusted_as_with_the_points_command(h: ConsoleHarness) -> None:
    ann, bob, _eve, a, b = await two_groups(h)
    owner = await h.signed_in()
    url = f"/api/members/{a}/{bob.id}/points"
    added = await h.send(owner, "POST", url, {"delta": 50, "reason": "helped a newcomer"})
    assert added.status == 200
    assert (await added.json())["balance"] == 50
    short = await h.send(owner, "POST", url, {"delta": -80, "reason": "oops"})
    assert short.status == 400
    answer = await short.json()
    assert answer["balance"] == 50 and "50" in answer["error"]
    taken = await h.send(owner, "POST", url, {"delta": -20, "reason": "wrong check-in"})
    assert (await taken.json())["balance"] == 30
    for body, word in (
        ({"delta": 0, "reason": "x"}, "delta"),
        ({"delta": "5", "reason": "x"}, "delta"),
        ({"delta": True, "reason": "x"}, "delta"),
        ({"delta": 1_000_001, "reason": "x"}, "delta"),
        ({"delta": 5}, "reason"),
        ({"delta": 5, "reason": "  "}, "reason"),
        ({"delta": 5, "reason": "r" * 201}, "reason"),
    ):
        bad = await h.send(owner, "POST", url, body)
        assert bad.status == 400, body
        assert word in (await bad.json())["error"]
    bad_json = await owner.post(url, data="[1]", headers={"X-CSRF-Token": await h.csrf(owner)})
    assert bad_json.status == 400

    history = await (await owner.get(f"/api/members/{a}/{bob.id}")).json()
    assert [(r["delta"], r["source"]) for r in history["ledger"]] == [
        (-20, f"console:{h.app.settings.owner_ids[0]}"),
        (50, f"console:{h.app.settings.owner_ids[0]}"),
    ]
    assert [c["what"] for c in history["changes"]] == [
        "-20 points for Bob (wrong check-in), balance 30",
        "+50 points for Bob (helped a newcomer), balance 50",
    ]
    # Without the page's CSRF token nothing happens.
    forged = await owner.post(url, json={"delta": 5, "reason": "x"})
    assert forged.status == 403
    admin = await h.signed_in(ann.id)
    assert (
        await h.send(
            admin, "POST", f"/api/members/{b}/{bob.id}/points", {"delta": 5, "reason": "x"}
        )
    ).status == 403
    mine = await h.send(
        admin, "POST", f"/api/members/{a}/{bob.id}/points", {"delta": 5, "reason": "x"}
    )
    assert (await mine.json())["balance"] == 35


async def test_the_csv_export(h: ConsoleHarness) -> None:
    ann, bob, eve, a, b = await two_groups(h)
    await h.app.registry.member_joined(
        a, await h.person("=cmd|' /C calc'!A0"), h.clock.now(), source="test"
    )
    owner = await h.signed_in()
    answer = await owner.get("/api/members.csv", params={"group": str(a)})
    assert answer.status == 200
    assert answer.headers["Content-Type"].startswith("text/csv")
    assert "attachment" in answer.headers["Content-Disposition"]
    assert answer.headers["X-Content-Type-Options"] == "nosniff"
    raw = await answer.read()
    assert raw.startswith(b"\xef\xbb\xbf")
    rows = list(csv.DictReader(io.StringIO(raw.decode("utf-8-sig"))))
    assert {row["user_id"] for row in rows} == {str(ann.id), str(bob.id), str(eve.id)} | {
        row["user_id"] for row in rows if row["name"].startswith("'=")
    }
    assert len(rows) == 4
    names = {row["name"] for row in rows}
    assert HOSTILE in names  # text in a CSV, as it is
    assert "'=cmd|' /C calc'!A0" in names
    assert {row["chat_id"] for row in rows} == {str(a)}  # a negative id stays a number
    assert {row["group"] for row in rows} == {"Group A"}

    chinese = await h.person("张三")
    await h.app.registry.member_joined(b, chinese, h.clock.now(), source="test")
    found = await owner.get("/api/members.csv", params={"q": "张"})
    text = (await found.read()).decode("utf-8-sig")
    assert text.splitlines()[0].startswith("chat_id,group,user_id,name")
    assert "张三" in text and len(text.splitlines()) == 2

    admin = await h.signed_in(ann.id)
    assert (await admin.get("/api/members.csv", params={"group": str(b)})).status == 403
    mine = (await (await admin.get("/api/members.csv")).read()).decode("utf-8-sig")
    assert "张三" not in mine


async def test_hostile_names_are_text_on_every_members_page(h: ConsoleHarness) -> None:
    _ann, _bob, eve, a, _b = await two_groups(h)
    owner = await h.signed_in()
    await h.send(owner, "POST", f"/api/members/{a}/{eve.id}/tags", {"tag": "<b>x</b>"})
    await h.send(
        owner, "POST", f"/api/members/{a}/{eve.id}/points", {"delta": 5, "reason": HOSTILE}
    )
    for path in ("/members", f"/members/{a}/{eve.id}", "/members?q=img"):
        html = await (await owner.get(path)).text()
        assert HOSTILE not in html and "<b>x</b>" not in html, path
        assert ESCAPED in html, path
