"""The console's SOPs page: states per group, runs, the step funnel, and the switch."""

from __future__ import annotations

import shutil
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import insert
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.db import SOP_RUNS, SOP_SENDS, RunStatus, writing
from tests.console_harness import ConsoleHarness, console_harness
from tests.sop_harness import ROOT, START

HOSTILE = "<img src=x onerror=alert(1)>"


@pytest.fixture
async def h(engine: AsyncEngine, tmp_path: Path):
    async with console_harness(engine, tmp_path) as harness:
        yield harness


def sop(answer: dict[str, Any], sop_id: str) -> dict[str, Any]:
    return next(s for s in answer["sops"] if s["id"] == sop_id)


def state(answer: dict[str, Any], sop_id: str, chat_id: int) -> dict[str, Any]:
    return next(c for c in sop(answer, sop_id)["states"] if c["chat_id"] == chat_id)


async def sends(
    h: ConsoleHarness,
    chat_id: int,
    step: str,
    variant: str | None,
    sent: int,
    answered: int,
    days_ago: float = 1,
) -> None:
    at = START - timedelta(days=days_ago)
    rows = [
        {
            "chat_id": chat_id,
            "user_id": 5000 + index,
            "sop": "welcome",
            "step": step,
            "variant": variant,
            "sent_at": at,
            "responded_at": at + timedelta(hours=1) if index < answered else None,
        }
        for index in range(sent)
    ]
    async with writing(h.app.db) as conn:
        await conn.execute(insert(SOP_SENDS), rows)


async def test_the_page_and_the_api_show_each_sop_per_group(h: ConsoleHarness) -> None:
    ann = await h.person("Ann")
    a = await h.group("Readers", admins=[ann])
    hostile = await h.group(HOSTILE)
    owner = await h.signed_in()
    answer = await (await owner.get("/api/sops")).json()
    assert answer["days"] == 30 and answer["group"] is None
    assert sorted(g["chat_id"] for g in answer["groups"]) == sorted([a, hostile])
    ids = [s["id"] for s in answer["sops"]]
    assert ids == sorted(p.id for p in h.app.engine.library)
    welcome = state(answer, "welcome", a)
    assert (welcome["state"], welcome["on"], welcome["switched"]) == ("on", True, None)
    assert state(answer, "live_funnel", a)["state"] == "off"  # its file says enabled: false
    assert sop(answer, "welcome")["runs"]["done"] == 0

    page = await owner.get("/sops")
    assert page.status == 200
    text = await page.text()
    assert f'data-testid="switch-welcome-{a}"' in text
    assert "Welcome newcomers" in text
    assert HOSTILE not in text
    assert "&lt;img src=x onerror=alert(1)&gt;" in text

    # An admin sees their group only, and neither the page nor the API of another.
    admin = await h.signed_in(ann.id)
    mine = await (await admin.get("/api/sops")).json()
    assert [g["chat_id"] for g in mine["groups"]] == [a]
    assert (await admin.get(f"/api/sops?group={hostile}")).status == 403
    assert (await admin.get(f"/sops?group={hostile}")).status == 403
    assert (await admin.get(f"/sops?group={a}")).status == 200


async def test_switching_an_sop_off_and_on_goes_through_the_engine_and_is_recorded(
    h: ConsoleHarness,
) -> None:
    ann = await h.person("Ann")
    a = await h.group("Readers", admins=[ann])
    b = await h.group("Writers")
    admin = await h.signed_in(ann.id)
    off = await h.send(admin, "POST", f"/api/groups/{a}/sops/welcome", {"on": False})
    assert off.status == 200, await off.text()
    assert await off.json() == {"sop": "welcome", "chat_id": a, "on": False}
    engine = h.app.engine
    welcome = engine.library.get("welcome")
    assert welcome is not None
    assert not engine.runs_in(welcome, a)  # the running engine obeys at once
    assert engine.library.switched("welcome", a) is False
    assert engine.runs_in(welcome, b)

    answer = await (await admin.get(f"/api/sops?group={a}")).json()
    cell = state(answer, "welcome", a)
    assert (cell["state"], cell["on"], cell["switched"]) == ("off", False, False)
    [change] = answer["changes"]
    assert (change["action"], change["sop"], change["who"]) == ("off", "welcome", "Ann")
    assert change["what"] == "switched welcome off in Readers"  # the settings' language
    chinese = await (await admin.get("/api/sops?lang=zh")).json()
    assert chinese["changes"][0]["what"] == "在 Readers 关闭了 welcome"
    page = await (await admin.get("/sops?lang=en")).text()
    assert "switched welcome off in Readers" in page
    assert "Switch on" in page

    on = await h.send(admin, "POST", f"/api/groups/{a}/sops/welcome", {"on": True})
    assert (await on.json())["on"] is True
    assert engine.runs_in(welcome, a)
    async with h.app.db.connect() as conn:
        from sqlalchemy import select

        from bot.db import SOP_GROUP_SETTINGS

        row = (await conn.execute(select(SOP_GROUP_SETTINGS))).one()
    assert (row.enabled, row.changed_by) == (True, ann.id)


async def test_switch_errors(h: ConsoleHarness) -> None:
    ann = await h.person("Ann")
    a = await h.group("Readers", admins=[ann])
    b = await h.group("Writers")
    admin = await h.signed_in(ann.id)
    unknown = await h.send(admin, "POST", f"/api/groups/{a}/sops/nope", {"on": False})
    assert unknown.status == 404
    assert "no SOP nope" in (await unknown.json())["error"]
    theirs = await h.send(admin, "POST", f"/api/groups/{b}/sops/welcome", {"on": False})
    assert theirs.status == 403
    bad = await h.send(admin, "POST", f"/api/groups/{a}/sops/welcome", {"on": "no"})
    assert bad.status == 400
    assert (await bad.json())["error"] == "on: must be true or false"
    not_json = await admin.post(
        f"/api/groups/{a}/sops/welcome",
        data="on",
        headers={"X-CSRF-Token": await h.csrf(admin), "Content-Type": "application/json"},
    )
    assert not_json.status == 400
    no_csrf = await admin.post(f"/api/groups/{a}/sops/welcome", json={"on": False})
    assert no_csrf.status == 403
    owner = await h.signed_in()
    assert (
        await h.send(owner, "POST", "/api/groups/-42/sops/welcome", {"on": False})
    ).status == 404
    assert (await owner.get("/api/sops?days=14")).status == 400
    assert (await owner.get("/api/sops?group=abc")).status == 400
    assert h.app.engine.library.switched("welcome", a) is None  # nothing changed
    assert (await owner.get("/api/sops")).status == 200
    assert (await (await owner.get("/api/sops")).json())["changes"] == []


async def test_the_funnel_counts_sends_answers_drop_off_and_tests_the_variants(
    h: ConsoleHarness,
) -> None:
    a = await h.group("Readers")
    b = await h.group("Writers")
    await sends(h, a, "greet", "a", 20, 15)
    await sends(h, b, "greet", "b", 20, 5)
    await sends(h, a, "nudge", None, 10, 2)
    await sends(h, a, "rules", None, 4, 4, days_ago=40)  # outside 30 days, inside 90
    owner = await h.signed_in()
    answer = await (await owner.get("/api/sops?lang=en")).json()
    greet, nudge = sop(answer, "welcome")["funnel"]
    assert (greet["step"], greet["sent"], greet["answered"], greet["drop_off"]) == (
        "greet",
        40,
        20,
        None,
    )
    assert [(v["variant"], v["sent"], v["answered"], v["rate"]) for v in greet["variants"]] == [
        ("a", 20, 15, 0.75),
        ("b", 20, 5, 0.25),
    ]
    verdict = greet["comparison"]
    assert (verdict["better"], verdict["worse"], verdict["verdict"]) == ("a", "b", "real")
    assert verdict["significant"] and verdict["p_value"] < 0.05
    assert "a real difference" in verdict["says"]
    assert (nudge["step"], nudge["sent"], nudge["rate"], nudge["drop_off"]) == (
        "nudge",
        10,
        0.2,
        0.75,
    )
    assert nudge["comparison"] is None

    ninety = await (await owner.get("/api/sops?days=90&lang=zh")).json()
    assert [s["step"] for s in sop(ninety, "welcome")["funnel"]] == ["greet", "nudge", "rules"]
    assert "差异显著" in sop(ninety, "welcome")["funnel"][0]["comparison"]["says"]
    one = await (await owner.get(f"/api/sops?group={b}")).json()
    [only] = sop(one, "welcome")["funnel"]
    assert (only["sent"], only["answered"], only["comparison"]) == (20, 5, None)

    page = await (await owner.get("/sops?lang=en&days=30")).text()
    assert 'data-step="greet"' in page and "a real difference" in page
    assert 'data-step="rules"' not in page


async def test_runs_by_status_and_the_last_failure_in_a_group(h: ConsoleHarness) -> None:
    a = await h.group("Readers")
    at = START - timedelta(hours=3)
    base = {
        "sop_id": "welcome",
        "chat_id": a,
        "trigger": "member_joined",
        "created_at": at,
        "updated_at": at,
        "finished_at": None,
        "error": None,
    }
    async with writing(h.app.db) as conn:
        await conn.execute(
            insert(SOP_RUNS),
            [
                {**base, "status": RunStatus.DONE.value, "finished_at": at},
                {**base, "status": RunStatus.DONE.value, "finished_at": at},
                {**base, "status": RunStatus.WAITING.value},
                {
                    **base,
                    "status": RunStatus.FAILED.value,
                    "finished_at": at,
                    "error": "the <b> text broke",
                },
            ],
        )
    owner = await h.signed_in()
    answer = await (await owner.get("/api/sops")).json()
    welcome = sop(answer, "welcome")
    assert (welcome["runs"]["done"], welcome["runs"]["waiting"], welcome["runs"]["failed"]) == (
        2,
        1,
        1,
    )
    assert welcome["in_progress"] == 1
    assert state(answer, "welcome", a)["last_failure"] is None  # only with one group
    one = await (await owner.get(f"/api/sops?group={a}")).json()
    failure = state(one, "welcome", a)["last_failure"]
    assert failure["reason"] == "the <b> text broke"
    assert failure["local"] == "2026-11-02 06:00"  # on the group's clock (Shanghai)
    page = await (await owner.get(f"/sops?group={a}&lang=en")).text()
    assert "the &lt;b&gt; text broke" in page


async def test_a_broken_file_shows_its_problems(engine: AsyncEngine, tmp_path: Path) -> None:
    folder = tmp_path / "sops"
    folder.mkdir()
    for name in ("welcome.yaml", "welcome.texts.yaml"):
        shutil.copy(ROOT / "sops" / name, folder / name)
    (folder / "ghost.yaml").write_text("schema_version: 1\nid: ghost\n")
    async with console_harness(engine, tmp_path, sops=folder) as h:
        a = await h.group("Readers")
        text = (folder / "welcome.yaml").read_text()
        (folder / "welcome.yaml").write_text(text.replace("mode: single", "mode: sometimes"))
        h.app.engine.reload_files()
        owner = await h.signed_in()
        answer = await (await owner.get("/api/sops")).json()
        [welcome] = answer["sops"]
        assert welcome["broken"]["file"] == "welcome.yaml"
        assert any("mode" in problem for problem in welcome["broken"]["problems"])
        assert str(folder) not in str(welcome["broken"])  # the file's name, not the server's path
        cell = state(answer, "welcome", a)
        assert (cell["state"], cell["on"]) == ("broken", True)  # the last good version runs
        [ghost] = answer["broken_files"]
        assert ghost["file"] == "ghost.yaml" and ghost["kept"] is None
        page = await (await owner.get("/sops?lang=en")).text()
        assert "last good version still runs" in page and "ghost.yaml" in page


async def test_with_many_groups_each_sop_lists_where_it_does_not_run(
    h: ConsoleHarness, monkeypatch: pytest.MonkeyPatch
) -> None:
    from bot.console.pages import sops as page

    monkeypatch.setattr(page, "TABLE_UP_TO", 1)
    a = await h.group("Readers")
    b = await h.group("Writers")
    owner = await h.signed_in()
    assert (await h.send(owner, "POST", f"/api/groups/{b}/sops/welcome", {"on": False})).ok
    text = await (await owner.get("/sops?lang=en")).text()
    welcome = text[text.index('id="sop-welcome"') :]
    welcome = welcome[: welcome.index("</section>")]
    assert f'data-testid="switch-welcome-{b}"' in welcome
    assert f'data-testid="switch-welcome-{a}"' not in welcome
    assert "listed here are those where it does not run" in welcome
    focused = await (await owner.get(f"/sops?group={a}")).text()
    assert f'data-testid="switch-welcome-{a}"' in focused
