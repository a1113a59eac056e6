"""The console's lotteries pages: the list, entrants and winners, verification, audit CSV."""

from __future__ import annotations

import csv
import io
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.db import LOTTERY_PICKS, writing
from bot.lottery.store import Lottery, open_lottery
from bot.sop.format import LotteryRules
from tests.console_harness import ConsoleHarness, console_harness

HOSTILE = "<img src=x onerror=alert(1)>"
ESCAPED = "&lt;img src=x onerror=alert(1)&gt;"


@pytest.fixture
async def h(engine: AsyncEngine, tmp_path: Path):
    async with console_harness(engine, tmp_path) as harness:
        yield harness


async def opened(h: ConsoleHarness, chat_id: int, prize: str, winners: int = 1) -> Lottery:
    now = h.clock.now()
    async with writing(h.app.db) as conn:
        return await open_lottery(
            conn,
            chat_id,
            prize=prize,
            winners=winners,
            rules=LotteryRules(),
            claim="",
            source="command:1",
            created_by=None,
            now=now,
            draws_at=now + timedelta(hours=1),
        )


async def drawn(h: ConsoleHarness, chat_id: int, user_ids: list[int], prize: str) -> Lottery:
    lottery = await opened(h, chat_id, prize)
    store = h.app.lotteries.store
    await store.admit(lottery.id, user_ids, h.clock.now())
    result = await store.draw(lottery.id, h.clock.now() + timedelta(hours=1))
    assert not isinstance(result, Exception)
    found = await store.get(lottery.id)
    assert found is not None
    return found


async def test_lotteries_are_listed_per_group_and_shown_in_full(h: ConsoleHarness) -> None:
    ann, bob, eve = await h.person("Ann"), await h.person("Bob"), await h.person(HOSTILE)
    a = await h.group("Group A", admins=[ann], members=[bob, eve])
    b = await h.group("Group B", members=[bob])
    won = await drawn(h, a, [bob.id, eve.id], "A book")
    waiting = await opened(h, a, HOSTILE)
    other = await opened(h, b, "B prize")

    owner = await h.signed_in()
    everything = await (await owner.get("/api/lotteries")).json()
    assert [row["id"] for row in everything["lotteries"]] == [other.id, waiting.id, won.id]
    assert all("seed" not in row for row in everything["lotteries"])
    only_a = await (await owner.get("/api/lotteries", params={"group": str(a)})).json()
    assert [row["id"] for row in only_a["lotteries"]] == [waiting.id, won.id]
    drawn_ones = await (await owner.get("/api/lotteries", params={"status": "drawn"})).json()
    assert [(r["id"], r["won"], r["group"]) for r in drawn_ones["lotteries"]] == [
        (won.id, 1, "Group A")
    ]
    assert (await owner.get("/api/lotteries", params={"status": "won"})).status == 400
    assert (await owner.get("/api/lotteries", params={"group": "x"})).status == 400

    detail = await (await owner.get(f"/api/lotteries/{won.id}")).json()
    assert detail["lottery"]["seed"] == won.seed  # revealed by the draw
    assert {e["user_id"] for e in detail["entrants"]} == {bob.id, eve.id}
    [pick] = detail["picks"]
    assert pick["outcome"] == "won" and pick["user_id"] in (bob.id, eve.id)
    verification = detail["verification"]
    assert verification["ok"] is True
    assert [c["check"] for c in verification["checks"]] == [
        "commitment",
        "digest",
        "count",
        "picks",
        "winners",
    ]
    assert verification["winners"] == [pick["user_id"]]

    secret = await (await owner.get(f"/api/lotteries/{waiting.id}")).json()
    assert secret["lottery"]["seed"] is None  # an open lottery's seed stays secret
    assert secret["lottery"]["commitment"] == waiting.commitment
    assert secret["verification"] is None

    page = await owner.get(f"/lotteries/{won.id}")
    assert page.status == 200
    html = await page.text()
    assert 'id="entrants"' in html and 'id="verification"' in html
    assert 'data-ok="true"' in html and 'data-testid="audit-csv"' in html
    open_page = await (await owner.get(f"/lotteries/{waiting.id}")).text()
    assert waiting.seed not in open_page
    listing = await (await owner.get("/lotteries")).text()
    assert 'id="lotteries"' in listing and f'href="/lotteries/{won.id}"' in listing

    # An admin of A sees A's lotteries only.
    admin = await h.signed_in(ann.id)
    mine = await (await admin.get("/api/lotteries")).json()
    assert {row["chat_id"] for row in mine["lotteries"]} == {a}
    assert (await admin.get(f"/api/lotteries/{other.id}")).status == 403
    assert (await admin.get(f"/lotteries/{other.id}")).status == 403
    assert (await admin.get(f"/api/lotteries/{other.id}/audit.csv")).status == 403
    assert (await admin.get("/api/lotteries", params={"group": str(b)})).status == 403
    assert (await owner.get("/api/lotteries/999999")).status == 404


async def test_a_tampered_draw_does_not_check_out(h: ConsoleHarness) -> None:
    bob, eve = await h.person("Bob"), await h.person("Eve")
    a = await h.group("Group A", members=[bob, eve])
    lottery = await drawn(h, a, [bob.id, eve.id], "A book")
    winner = (await h.app.lotteries.store.winners(lottery.id))[0]
    loser = eve.id if winner == bob.id else bob.id
    async with writing(h.app.db) as conn:
        await conn.execute(
            update(LOTTERY_PICKS)
            .where(LOTTERY_PICKS.c.lottery_id == lottery.id)
            .values(user_id=loser)
        )
    owner = await h.signed_in()
    verification = (await (await owner.get(f"/api/lotteries/{lottery.id}")).json())["verification"]
    assert verification["ok"] is False
    assert {c["check"]: c["held"] for c in verification["checks"]}["picks"] is False
    html = await (await owner.get(f"/lotteries/{lottery.id}")).text()
    assert 'data-ok="false"' in html


async def test_the_audit_export(h: ConsoleHarness) -> None:
    bob, eve = await h.person("Bob"), await h.person("Eve")
    a = await h.group("Group A", members=[bob, eve])
    first = await drawn(h, a, [bob.id, eve.id], '=HYPERLINK("x")')
    await drawn(h, a, [bob.id], "Another")
    owner = await h.signed_in()
    answer = await owner.get(f"/api/lotteries/{first.id}/audit.csv")
    assert answer.status == 200
    assert answer.headers["Content-Type"].startswith("text/csv")
    raw = await answer.read()
    assert raw.startswith(b"\xef\xbb\xbf")
    rows = list(csv.DictReader(io.StringIO(raw.decode("utf-8-sig"))))
    assert {row["lottery_id"] for row in rows} == {str(first.id)}
    assert [row["action"] for row in rows] == ["opened", "entered", "entered", "drawn", "picked"]
    assert first.seed in rows[3]["details"]
    assert '"prize":"=HYPERLINK' in rows[0]["details"]  # JSON, so no formula at the start
    assert (await owner.get("/api/lotteries/999999/audit.csv")).status == 404


async def test_hostile_names_and_prizes_are_text(h: ConsoleHarness) -> None:
    eve = await h.person(HOSTILE)
    a = await h.group(HOSTILE, members=[eve])
    lottery = await drawn(h, a, [eve.id], HOSTILE)
    owner = await h.signed_in()
    for path in ("/lotteries", f"/lotteries/{lottery.id}"):
        html = await (await owner.get(path)).text()
        assert HOSTILE not in html, path
        assert ESCAPED in html, path
