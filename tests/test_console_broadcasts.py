"""The console's broadcasts page: compose, preview, confirm, and each broadcast's progress."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.push import broadcasts
from bot.push.broadcasts import Target
from tests.console_harness import Browser, ConsoleHarness, console_harness

HOSTILE = "<img src=x onerror=alert(1)>"


@pytest.fixture
async def h(engine: AsyncEngine, tmp_path: Path):
    async with console_harness(engine, tmp_path) as harness:
        yield harness


async def post(h: ConsoleHarness, client: Browser, path: str, body: Any) -> tuple[int, Any]:
    answer = await h.send(client, "POST", path, body)
    return answer.status, await answer.json()


async def run_pushes(h: ConsoleHarness) -> None:
    await h.app.pushes.run_due()
    await h.app.pushes.settle()


async def test_a_broadcast_is_previewed_confirmed_and_reaches_the_groups(h: ConsoleHarness) -> None:
    a = await h.group("Readers", tags=["vip"])
    b = await h.group("Writers")
    owner = await h.signed_in()
    body = {"template": "sample", "groups": [a, str(b)], "urgent": False, "pin": True}
    status, preview = await post(h, owner, "/api/broadcasts/preview", body)
    assert status == 200, preview
    first = min(a, b)  # the groups go in order of their ids, as /broadcast takes them
    title = "Readers" if first == a else "Writers"
    assert preview["group"] == {"chat_id": first, "title": title}
    assert (
        preview["text"]
        == f"📣 Hello {title}! This week's live Q&amp;A is on Thursday at 20:00. Bring your questions!"
    )
    assert sorted(g["chat_id"] for g in preview["groups"]) == sorted([a, b])
    assert (preview["count"], preview["pin"], preview["urgent"]) == (2, True, False)
    assert h.outbox.sent == []  # a preview sends nothing
    assert await broadcasts.progress(h.app.db) == []

    status, made = await post(h, owner, "/api/broadcasts", body)
    assert status == 201, made
    assert made["count"] == 2
    await run_pushes(h)  # the push queue the console rang
    assert "Hello Readers" in h.outbox.texts(a)[0]
    assert "Hello Writers" in h.outbox.texts(b)[0]
    assert {chat for chat, _ in h.outbox.pinned} == {a, b}

    one = await (await owner.get(f"/api/broadcasts/{made['id']}")).json()
    assert (one["sent"], one["pending"], one["done"], one["source"]) == (
        2,
        0,
        True,
        "console:900001",
    )
    assert {(g["chat_id"], g["status"]) for g in one["per_group"]} == {(a, "sent"), (b, "sent")}
    assert any("sent 2, pending 0" in line for line in one["summary"])
    listed = await (await owner.get("/api/broadcasts")).json()
    assert [item["id"] for item in listed["broadcasts"]] == [made["id"]]
    assert listed["templates"] == ["sample"]
    [change] = listed["changes"]
    assert (change["broadcast"], sorted(change["groups"])) == (made["id"], sorted([a, b]))

    page = await owner.get(f"/broadcasts?sent={made['id']}&lang=en")
    assert page.status == 200
    text = await page.text()
    for needed in (
        'id="compose"',
        'id="preview-button"',
        'id="preview"',
        'id="confirm-button"',
        'id="broadcasts"',
        f'id="broadcast-{made["id"]}"',
        'id="just-sent"',
        f"sent broadcast #{made['id']} to 2 groups",
    ):
        assert needed in text


async def test_a_text_is_checked_as_telegram_html_and_sent_as_written(h: ConsoleHarness) -> None:
    a = await h.group("Readers")
    owner = await h.signed_in()
    text = '<b>Hi</b> &lt;all&gt; <a href="https://example.com">here</a>'
    status, preview = await post(h, owner, "/api/broadcasts/preview", {"text": text, "groups": [a]})
    assert status == 200 and preview["text"] == text
    for wrong, says in [
        ("a <br> b", "text: Telegram does not allow the tag <br>"),
        ("fish & chips", "text: a bare '&'"),
        ("<b>open", "text: <b> is never closed"),
        ("x" * 4097, "text: 4097 characters once parsed"),
        ("   ", "text: is empty"),
    ]:
        status, answer = await post(
            h, owner, "/api/broadcasts/preview", {"text": wrong, "groups": [a]}
        )
        assert status == 400 and answer["error"].startswith(says), answer
    status, _ = await post(
        h, owner, "/api/broadcasts", {"text": text, "groups": [a], "urgent": True}
    )
    assert status == 201
    await run_pushes(h)
    assert h.outbox.texts(a) == [text]


async def test_what_cannot_be_broadcast_is_refused_with_the_field(h: ConsoleHarness) -> None:
    ann = await h.person("Ann")
    a = await h.group("Readers", admins=[ann])
    b = await h.group("Writers")
    owner = await h.signed_in()
    cases: list[tuple[dict[str, Any], str]] = [
        ({"groups": [a]}, "template: give a template or a text"),
        (
            {"template": "sample", "text": "hi", "groups": [a]},
            "template: give a template or a text",
        ),
        ({"template": "nope", "groups": [a]}, "template: there is no template nope"),
        ({"template": "sample"}, "groups: choose at least one group or tag"),
        ({"template": "sample", "groups": [a], "tags": ["vip"]}, "groups: choose groups by tags"),
        ({"template": "sample", "groups": "all"}, "groups: must be a list"),
        ({"template": "sample", "groups": ["x"]}, "not a group id"),
        ({"template": "sample", "tags": ["v i p"]}, "tags: 'v i p' is not a tag"),
        ({"template": "sample", "groups": [a], "urgent": "yes"}, "urgent: must be true or false"),
    ]
    for body, says in cases:
        for path in ("/api/broadcasts/preview", "/api/broadcasts"):
            status, answer = await post(h, owner, path, body)
            assert status == 400 and says in answer["error"], (body, answer)
    status, answer = await post(
        h, owner, "/api/broadcasts", {"template": "sample", "tags": ["ghost"]}
    )
    assert status == 400 and "no active group matches tag:ghost" in answer["error"]
    assert (await post(h, owner, "/api/broadcasts", {"template": "sample", "groups": [-5]}))[
        0
    ] == 404

    admin = await h.signed_in(ann.id)
    status, answer = await post(
        h, admin, "/api/broadcasts", {"template": "sample", "groups": [a, b]}
    )
    assert status == 403
    no_csrf = await admin.post("/api/broadcasts", json={"template": "sample", "groups": [a]})
    assert no_csrf.status == 403
    assert await broadcasts.progress(h.app.db) == []  # nothing was made
    assert h.outbox.sent == []


async def test_an_admin_targets_and_sees_only_their_groups(h: ConsoleHarness) -> None:
    ann = await h.person("Ann")
    a = await h.group("Readers", admins=[ann], tags=["vip"])
    c = await h.group("Others", tags=["vip"])
    admin = await h.signed_in(ann.id)
    status, preview = await post(
        h, admin, "/api/broadcasts/preview", {"template": "sample", "tags": ["vip"]}
    )
    assert status == 200 and [g["chat_id"] for g in preview["groups"]] == [a]
    status, made = await post(h, admin, "/api/broadcasts", {"template": "sample", "tags": ["vip"]})
    assert status == 201 and made["target"] == str(a)
    await run_pushes(h)
    assert h.outbox.texts(a) and not h.outbox.texts(c)
    status, _ = await post(h, admin, "/api/broadcasts", {"template": "sample", "tags": ["none"]})
    assert status == 400

    theirs = await broadcasts.create(
        h.app.db,
        h.app.texts,
        target=Target(tags=("vip",)),
        template="sample",
        source="cli",
        now=h.clock.now(),
    )
    listed = await (await admin.get("/api/broadcasts")).json()
    assert [item["id"] for item in listed["broadcasts"]] == [made["id"]]
    assert (await admin.get(f"/api/broadcasts/{theirs}")).status == 403
    assert (await admin.get(f"/api/broadcasts/{made['id']}")).status == 200
    assert (await admin.get("/api/broadcasts/999")).status == 404
    assert (await admin.get("/api/broadcasts?limit=0")).status == 400
    owner = await h.signed_in()
    everything = await (await owner.get("/api/broadcasts")).json()
    assert [item["id"] for item in everything["broadcasts"]] == [theirs, made["id"]]
    page = await (await admin.get("/broadcasts")).text()
    assert f'id="broadcast-{made["id"]}"' in page and f'id="broadcast-{theirs}"' not in page
    assert 'value="vip"' in page


async def test_titles_and_texts_are_shown_as_text(h: ConsoleHarness) -> None:
    hostile = await h.group(HOSTILE, tags=["vip"])
    owner = await h.signed_in()
    status, preview = await post(
        h, owner, "/api/broadcasts/preview", {"template": "sample", "groups": [hostile]}
    )
    assert status == 200
    assert HOSTILE not in preview["text"]  # the bot's text escapes the title
    assert "&lt;img src=x onerror=alert(1)&gt;" in preview["text"]
    assert preview["group"]["title"] == HOSTILE  # JSON: the page's script sets it as text
    status, _ = await post(
        h, owner, "/api/broadcasts", {"text": "&lt;img src=x&gt; hi", "groups": [hostile]}
    )
    assert status == 201
    await run_pushes(h)
    page = await (await owner.get("/broadcasts")).text()
    assert HOSTILE not in page
    assert "&lt;img src=x onerror=alert(1)&gt;" in page
    assert "<img" not in page
