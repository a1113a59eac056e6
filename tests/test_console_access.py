"""The console's doors: sign-in links, sessions, CSRF, who sees which group, escaping."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.console_harness import OWNER, ConsoleHarness, console_harness

HOSTILE = "<img src=x onerror=alert(1)>"


@pytest.fixture
async def h(engine: AsyncEngine, tmp_path: Path):
    async with console_harness(engine, tmp_path) as harness:
        yield harness


async def test_without_a_session_pages_go_to_sign_in_and_the_api_answers_401(
    h: ConsoleHarness,
) -> None:
    browser = await h.client()
    page = await browser.get("/", allow_redirects=False)
    assert page.status == 302
    assert page.headers["Location"].startswith("/signin")
    api = await browser.get("/api/groups")
    assert api.status == 401
    assert "error" in await api.json()
    forged = await browser.get("/api/groups", cookies={"tidepool_console": "abc.def"})
    assert forged.status == 401


async def test_a_link_signs_in_once_and_not_after_ten_minutes(h: ConsoleHarness) -> None:
    browser = await h.client()
    token = await h.console.sign_in.issue_link(OWNER)
    preview = await browser.get(f"/signin/{token}")  # a link preview fetches it: not used up
    assert preview.status == 200
    first = await browser.post(f"/signin/{token}", allow_redirects=False)
    assert first.status == 303
    cookie = first.cookies["tidepool_console"]
    assert cookie["httponly"] and cookie["samesite"] == "Lax" and not cookie["secure"]
    assert (await browser.get("/api/groups")).status == 200

    again = await (await h.client()).post(f"/signin/{token}", allow_redirects=False)
    assert again.status == 403
    assert "already used" in await again.text()

    late = await h.console.sign_in.issue_link(OWNER)
    h.later(minutes=10, seconds=1)
    expired = await (await h.client()).post(f"/signin/{late}", allow_redirects=False)
    assert expired.status == 403
    assert "expired" in await expired.text()
    unknown = await (await h.client()).post("/signin/nothing", allow_redirects=False)
    assert unknown.status == 403


async def test_sessions_end_at_sign_out_and_after_seven_days(h: ConsoleHarness) -> None:
    browser = await h.signed_in()
    csrf = await h.csrf(browser)
    out = await browser.post("/signout", data={"csrf": csrf}, allow_redirects=False)
    assert out.status == 303
    assert (await browser.get("/api/groups")).status == 401

    week = await h.signed_in()
    h.later(days=7)
    assert (await week.get("/api/groups")).status == 401


async def test_a_change_without_the_csrf_token_is_refused(h: ConsoleHarness) -> None:
    browser = await h.signed_in()
    refused = await browser.post("/signout", allow_redirects=False)
    assert refused.status == 403
    assert (await browser.get("/api/groups")).status == 200  # still signed in
    wrong = await browser.post("/signout", headers={"X-CSRF-Token": "guess"}, allow_redirects=False)
    assert wrong.status == 403


async def test_an_admin_sees_their_group_only_and_loses_it_when_demoted(h: ConsoleHarness) -> None:
    ann, bob = await h.person("Ann"), await h.person("Bob")
    a = await h.group("Group A", admins=[ann], members=[bob])
    b = await h.group("Group B", members=[ann])
    admin = await h.signed_in(ann.id)
    listed = (await (await admin.get("/api/groups")).json())["groups"]
    assert [g["chat_id"] for g in listed] == [a]
    assert (await admin.get(f"/groups/{b}")).status == 403
    assert (await admin.get(f"/api/groups/{b}/stats")).status == 403

    owner = await h.signed_in()
    listed = (await (await owner.get("/api/groups")).json())["groups"]
    assert sorted(g["chat_id"] for g in listed) == sorted([a, b])

    # A member who is no admin anywhere is refused at sign-in.
    token = await h.console.sign_in.issue_link(bob.id)
    refused = await (await h.client()).post(f"/signin/{token}", allow_redirects=False)
    assert refused.status == 403

    # Demoted in Telegram: within ten minutes the session has no group left and ends.
    await h.ctl.set_member(a, ann.id, "member")
    assert (await admin.get("/api/groups")).status == 200  # not rechecked yet
    h.later(minutes=10)
    assert (await admin.get("/api/groups")).status == 401


async def test_titles_and_names_are_shown_as_text(h: ConsoleHarness) -> None:
    await h.group(HOSTILE, members=[await h.person(HOSTILE)])
    browser = await h.signed_in()
    page = await (await browser.get("/")).text()
    assert HOSTILE not in page
    assert "&lt;img src=x onerror=alert(1)&gt;" in page
    assert "script-src 'self'" in (await browser.get("/")).headers["Content-Security-Policy"]


async def test_an_owner_api_token_works_without_a_session_and_needs_no_csrf(
    h: ConsoleHarness,
) -> None:
    token = await h.console.sign_in.issue_token(OWNER, "script")
    browser = await h.client()
    answer = await browser.get("/api/groups", headers={"Authorization": f"Bearer {token}"})
    assert answer.status == 200
    bad = await browser.get("/api/groups", headers={"Authorization": "Bearer tp_nope"})
    assert bad.status == 401


async def test_the_cookie_is_secure_behind_https(h: ConsoleHarness) -> None:
    from aiohttp.test_utils import TestClient, TestServer

    from bot.console._web import Console

    secure = Console(h.app, "https://console.example.com/")
    async with TestClient(TestServer(secure.application())) as browser:
        token = await secure.sign_in.issue_link(OWNER)
        answer = await browser.post(f"/signin/{token}", allow_redirects=False)
        assert answer.status == 303
        assert answer.cookies["tidepool_console"]["secure"]
        assert secure.public_url == "https://console.example.com"


async def test_tidepool_run_serves_it_or_tells_the_owners_why_not(
    engine: AsyncEngine, tmp_path: Path
) -> None:
    import socket

    import aiohttp

    from bot.console._serve import serve_console

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        async with console_harness(engine, tmp_path, console_listen=f"127.0.0.1:{port}") as h:
            assert await serve_console(h.app) is None
            [notice] = [m for m in h.outbox.sent if m.chat_id == OWNER]
            assert f"could not start on 127.0.0.1:{port}" in notice.text

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    async with console_harness(engine, tmp_path, console_listen=f"127.0.0.1:{port}") as h:
        served = await serve_console(h.app)
        assert served is not None
        console, runner = served
        try:
            assert console.public_url == f"http://127.0.0.1:{port}"
            async with (
                aiohttp.ClientSession() as http,
                http.get(f"{console.public_url}/api/groups") as answer,
            ):
                assert answer.status == 401
        finally:
            await runner.cleanup()


async def test_the_language_switch_keeps_the_page_and_its_filters(h: ConsoleHarness) -> None:
    chat = await h.group("Tea")
    browser = await h.signed_in()
    page = await (await browser.get(f"/groups/{chat}?days=7")).text()
    assert f'href="/groups/{chat}?days=7&amp;lang=zh"' in page
    chinese = await (await browser.get(f"/groups/{chat}?days=7&lang=zh")).text()
    assert f'href="/groups/{chat}?days=7&amp;lang=en"' in chinese
    assert "退出登录" in chinese
