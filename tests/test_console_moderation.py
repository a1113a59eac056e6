"""The console's moderation page: the group's mode and its switch, the last 30 days' actions,
undone and false-positive rate, the moderation log with the checks' verdicts and the deleted
text, "Not spam" and "Ban" from the page, and who may see and change any of it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from aiogram.types import User
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.db import MODERATION_GROUPS
from tests.console_harness import OWNER, ConsoleHarness, console_harness
from tests.test_moderation import SPAM, join, say

HOSTILE = "<img src=x onerror=alert(1)>"
ESCAPED = "&lt;img src=x onerror=alert(1)&gt;"


@pytest.fixture
async def h(engine: AsyncEngine, tmp_path: Path) -> AsyncIterator[ConsoleHarness]:
    async with console_harness(engine, tmp_path) as harness:
        yield harness


@dataclass
class Seeded:
    a: int
    b: int
    ann: User  # admin of A
    zed: User  # admin of B
    olga: User  # a member of A, muted for flooding
    spammer: User  # a newcomer to A whose spam the checks deleted
    deleted: int  # the checks' deletion of the spam
    restricted: int  # and the spammer's restriction
    flood: int  # the SOP's mute of olga
    failed: int  # an SOP's mute the bot had no right for
    warned: int  # ann's warning to olga


async def seeded(h: ConsoleHarness) -> Seeded:
    """Group A: a newcomer (a hostile name) posted spam, which the checks deleted and
    restricted them for; the flood SOP muted olga; ann warned olga; a mute failed for want of
    the right. Group B has an action of its own."""
    ann, zed, olga = await h.person("Ann"), await h.person("Zed"), await h.person("Olga")
    spammer = await h.person(HOSTILE)
    a = await h.group("Group A", admins=[ann], members=[olga])
    b = await h.group("Group B", admins=[zed])
    mod = h.app.moderation
    await join(h, a, spammer)
    await say(h, a, spammer, SPAM)
    restricted, deleted = await mod.store.latest(a, 2)
    assert (deleted.action, restricted.action) == ("delete", "restrict")
    h.later(minutes=5)
    flood = await mod.mute(
        a, olga.id, duration=timedelta(minutes=10), by="sop:flood", check="flood"
    )
    h.later(minutes=5)
    warned = await mod.warn(a, olga.id, by=f"admin:{ann.id}", reason="off topic")
    h.later(minutes=5)
    h.outbox.unrestrictable.add(a)
    failed = await mod.mute(a, olga.id, duration=timedelta(hours=1), by="sop:flood", check="flood")
    h.outbox.unrestrictable.clear()
    await mod.kick(b, zed.id + 1000, by="sop:join_check", check="join_check")
    return Seeded(
        a,
        b,
        ann,
        zed,
        olga,
        spammer,
        deleted.id,
        restricted.id,
        flood.action_id or 0,
        failed.action_id or 0,
        warned.done.action_id or 0,
    )


def by_id(got: dict[str, Any]) -> dict[int, dict[str, Any]]:
    return {row["id"]: row for row in got["actions"]}


async def decide(
    h: ConsoleHarness, client: Any, chat_id: int, action_id: int, decision: str
) -> Any:
    path = f"/api/groups/{chat_id}/moderation/{action_id}/decision"
    return await h.send(client, "POST", path, {"decision": decision})


async def test_the_api_has_the_mode_figures_and_the_log(h: ConsoleHarness) -> None:
    s = await seeded(h)
    owner = await h.signed_in()
    answer = await owner.get(f"/api/groups/{s.a}/moderation")
    assert answer.status == 200
    got = await answer.json()
    assert (got["mode"], got["title"], got["total"], got["pages"]) == ("on", "Group A", 5, 1)
    # Done by the checks and the SOP: the deletion, the restriction, the flood mute; not the
    # admin's warning, not the failed mute.
    assert got["figures"] == {
        "days": 30,
        "mode": "on",
        "actions": 3,
        "undone": 0,
        "false_positive_rate": 0.0,
        "dry": 0,
    }
    assert [row["id"] for row in got["actions"]] == [
        s.failed,
        s.warned,
        s.flood,
        s.restricted,
        s.deleted,
    ]
    rows = by_id(got)
    deleted = rows[s.deleted]
    assert (deleted["action"], deleted["by_kind"], deleted["member"], deleted["state"]) == (
        "delete",
        "checks",
        HOSTILE,
        "done",
    )
    assert deleted["text"] == SPAM and deleted["decidable"] is True
    fired = [v["check"] for v in deleted["verdicts"] if v["spam"]]
    assert "stop_words" in fired and "links" in fired
    assert {v["check"] for v in deleted["verdicts"]} >= {"links", "emoji", "mixed_alphabet"}
    assert deleted["at"].endswith("+08:00")  # in the group's time (Shanghai)
    restricted = rows[s.restricted]
    assert restricted["decidable"] is False and restricted["verdicts"] is None
    flood = rows[s.flood]
    assert (flood["by_kind"], flood["by_id"], flood["check"], flood["member"]) == (
        "sop",
        "flood",
        "flood",
        "Olga",
    )
    assert flood["until"] is not None
    warned = rows[s.warned]
    assert (warned["by_kind"], warned["by_name"], warned["reason"]) == ("admin", "Ann", "off topic")
    failed = rows[s.failed]
    assert (failed["state"], failed["error"]) == ("failed", "rights")


async def test_the_page_shows_it_in_words(h: ConsoleHarness) -> None:
    s = await seeded(h)
    owner = await h.signed_in()
    page = await owner.get(f"/groups/{s.a}/moderation")
    assert page.status == 200
    html = await page.text()
    assert 'data-mode="on"' in html and 'data-testid="mode-dry"' in html
    assert '<div class="value" id="moderation-actions">3</div>' in html
    assert '<div class="value" id="moderation-rate">0%</div>' in html
    assert 'id="moderation-dry"' not in html  # on, and nothing recorded dry
    assert f'<tr data-action="{s.deleted}" data-state="done">' in html
    assert f'<tr data-action="{s.failed}" data-state="failed">' in html
    assert "the bot lacks the right" in html and "first-message checks" in html
    assert "SOP flood" in html and "stop words" in html and 'data-spam="true"' in html
    assert html.count('data-testid="not-spam"') == 1  # the deletion only
    assert "加微信" in html  # the deleted text
    assert HOSTILE not in html and ESCAPED in html
    assert "Group B" not in html and "join check" not in html  # B's kick is B's

    zh = await (await owner.get(f"/groups/{s.a}/moderation", params={"lang": "zh"})).text()
    assert "新成员消息检查" in zh and "违禁词" in zh and "误判率" in zh and "不是广告" in zh

    # The group's pages lead here.
    group_page = await (await owner.get(f"/groups/{s.a}")).text()
    assert f'href="/groups/{s.a}/moderation"' in group_page


async def test_a_group_without_moderation_has_a_page_too(h: ConsoleHarness) -> None:
    quiet = await h.group("Quiet")
    owner = await h.signed_in()
    got = await (await owner.get(f"/api/groups/{quiet}/moderation")).json()
    assert got["actions"] == [] and got["total"] == 0 and got["mode"] == "on"
    assert got["figures"]["false_positive_rate"] is None
    html = await (await owner.get(f"/groups/{quiet}/moderation")).text()
    assert '<div class="value" id="moderation-rate">–</div>' in html
    assert "Nothing in the moderation log yet" in html


async def test_only_the_groups_admins_see_and_change_its_moderation(h: ConsoleHarness) -> None:
    s = await seeded(h)
    nobody = await h.client()
    page = await nobody.get(f"/groups/{s.a}/moderation", allow_redirects=False)
    assert page.status == 302 and page.headers["Location"].startswith("/signin")
    assert (await nobody.get(f"/api/groups/{s.a}/moderation")).status == 401

    zed = await h.signed_in(s.zed.id)  # an admin of B only
    assert (await zed.get(f"/groups/{s.a}/moderation")).status == 403
    assert (await zed.get(f"/api/groups/{s.a}/moderation")).status == 403
    mode = await h.send(zed, "POST", f"/api/groups/{s.a}/moderation/mode", {"mode": "off"})
    assert mode.status == 403 and h.app.moderation.mode(s.a) == "on"
    assert (await decide(h, zed, s.a, s.deleted, "not_spam")).status == 403
    assert (await zed.get(f"/api/groups/{s.b}/moderation")).status == 200
    # Through B's path, A's action is not found: nothing of A's is decided from B.
    assert (await decide(h, zed, s.b, s.deleted, "ban")).status == 404
    assert not [m for m in h.outbox.moderated if m[0] == "banChatMember" and m[2] == s.spammer.id]

    ann = await h.signed_in(s.ann.id)
    assert (await ann.get(f"/groups/{s.a}/moderation")).status == 200
    assert (await ann.get("/api/groups/-42/moderation")).status == 403
    owner = await h.signed_in()
    assert (await owner.get("/api/groups/-42/moderation")).status == 404


async def test_changes_need_the_pages_csrf_token(h: ConsoleHarness) -> None:
    s = await seeded(h)
    ann = await h.signed_in(s.ann.id)
    forged = await ann.post(f"/api/groups/{s.a}/moderation/mode", json={"mode": "off"})
    assert forged.status == 403 and h.app.moderation.mode(s.a) == "on"
    path = f"/api/groups/{s.a}/moderation/{s.deleted}/decision"
    forged = await ann.post(path, json={"decision": "not_spam"})
    assert forged.status == 403
    assert (await h.app.moderation.store.action(s.deleted)).undone_at is None  # type: ignore[union-attr]
    assert await h.console.changes.recent(chat_ids=[s.a], areas=("moderation",)) == []


async def test_an_admin_switches_the_mode_and_the_bot_follows(h: ConsoleHarness) -> None:
    s = await seeded(h)
    ann = await h.signed_in(s.ann.id)
    path = f"/api/groups/{s.a}/moderation/mode"
    bad = await h.send(ann, "POST", path, {"mode": "loud"})
    assert bad.status == 400 and "on, off, dry" in (await bad.json())["error"]

    answer = await h.send(ann, "POST", path, {"mode": "dry"})
    assert answer.status == 200, await answer.text()
    assert await answer.json() == {"chat_id": s.a, "mode": "dry", "before": "on", "changed": True}
    assert h.app.moderation.mode(s.a) == "dry"
    async with h.app.db.connect() as conn:
        changed_by = (
            await conn.execute(
                select(MODERATION_GROUPS.c.changed_by).where(MODERATION_GROUPS.c.chat_id == s.a)
            )
        ).scalar_one()
    assert changed_by == s.ann.id  # as /moderation dry by ann would have stored it
    [change] = await h.console.changes.recent(chat_ids=[s.a], areas=("moderation",))
    assert (change.user_id, change.action, change.details["mode"]) == (s.ann.id, "mode", "dry")

    # The running bot follows: a newcomer's spam is recorded, not deleted.
    other = await h.person("Omar")
    await join(h, s.a, other)
    message = await say(h, s.a, other, SPAM)
    assert (s.a, message.message_id) not in h.outbox.deleted
    got = await (await ann.get(f"/api/groups/{s.a}/moderation")).json()
    assert got["mode"] == "dry" and got["figures"]["dry"] == 2  # the deletion and restriction
    assert got["mode_changed_by"] == s.ann.id and got["mode_changed_by_name"] == "Ann"
    html = await (await ann.get(f"/groups/{s.a}/moderation")).text()
    assert 'data-mode="dry"' in html and '<div class="value" id="moderation-dry">2</div>' in html
    assert "set by Ann on" in html and "moderation mode: on → dry" in html

    again = await h.send(ann, "POST", path, {"mode": "dry"})
    assert (await again.json())["changed"] is False
    assert len(await h.console.changes.recent(chat_ids=[s.a], areas=("moderation",))) == 1


async def test_not_spam_from_the_console_restores_the_member(h: ConsoleHarness) -> None:
    s = await seeded(h)
    ann = await h.signed_in(s.ann.id)
    answer = await decide(h, ann, s.a, s.deleted, "not_spam")
    assert answer.status == 200, await answer.text()
    got = await answer.json()
    assert got["said"] == f"{HOSTILE} may write again, and the same text passes from now on."
    method, chat, user, (permissions, _until) = h.outbox.moderated[-1]
    assert (method, chat, user) == ("restrictChatMember", s.a, s.spammer.id)
    assert permissions.can_send_messages  # the restriction is lifted
    assert not h.app.screening.wants(s.a, s.spammer.id)  # approved

    got = await (await ann.get(f"/api/groups/{s.a}/moderation")).json()
    rows = by_id(got)
    for undone in (s.deleted, s.restricted):
        assert rows[undone]["state"] == "undone"
        assert rows[undone]["undone_by"] == f"admin:{s.ann.id}"
        assert rows[undone]["undone_by_name"] == "Ann"
    assert rows[s.deleted]["decidable"] is False
    assert rows[s.flood]["state"] == "done"
    assert (got["figures"]["actions"], got["figures"]["undone"]) == (3, 2)
    assert got["figures"]["false_positive_rate"] == pytest.approx(2 / 3, abs=1e-4)
    html = await (await ann.get(f"/groups/{s.a}/moderation")).text()
    assert '<div class="value" id="moderation-rate">67%</div>' in html
    assert 'data-testid="not-spam"' not in html
    assert f"not spam: {ESCAPED} (action #{s.deleted})" in html  # the change log

    [change] = await h.console.changes.recent(chat_ids=[s.a], areas=("moderation",))
    assert (change.user_id, change.action, change.details["user"]) == (
        s.ann.id,
        "not_spam",
        s.spammer.id,
    )
    again = await decide(h, ann, s.a, s.deleted, "ban")
    assert again.status == 409
    assert (await again.json())["error"] == "Another admin has already decided this one."

    # The checks learnt the text: the same spam from another newcomer passes.
    other = await h.person("Omar")
    await join(h, s.a, other)
    message = await say(h, s.a, other, SPAM)
    assert (s.a, message.message_id) not in h.outbox.deleted


async def test_ban_from_the_console_bans(h: ConsoleHarness) -> None:
    s = await seeded(h)
    owner = await h.signed_in()
    answer = await decide(h, owner, s.a, s.deleted, "ban")
    assert answer.status == 200, await answer.text()
    assert h.outbox.moderated[-1][:3] == ("banChatMember", s.a, s.spammer.id)
    got = await (await owner.get(f"/api/groups/{s.a}/moderation")).json()
    ban = got["actions"][0]
    assert (ban["action"], ban["by"], ban["member"]) == ("ban", f"admin:{OWNER}", HOSTILE)
    assert by_id(got)[s.deleted]["decidable"] is False  # decided by the ban
    assert got["figures"]["undone"] == 0  # a ban confirms: nothing was a false positive
    again = await decide(h, owner, s.a, s.deleted, "not_spam")
    assert again.status == 409


async def test_telegram_must_list_the_viewer_as_an_admin_to_decide(h: ConsoleHarness) -> None:
    s = await seeded(h)
    ann = await h.signed_in(s.ann.id)  # her session sees A for ten minutes
    await h.ctl.set_member(s.a, s.ann.id, "member")  # demoted in Telegram meanwhile
    h.app.admins.forget(s.a)
    refused = await decide(h, ann, s.a, s.deleted, "not_spam")
    assert refused.status == 403
    assert "Telegram does not list you as an admin" in (await refused.json())["error"]
    assert (await h.app.moderation.store.action(s.deleted)).undone_at is None  # type: ignore[union-attr]
    assert h.app.screening.wants(s.a, s.spammer.id)  # still a newcomer under checks


async def test_only_what_the_checks_deleted_is_decided_here(h: ConsoleHarness) -> None:
    s = await seeded(h)
    owner = await h.signed_in()
    for action_id in (s.flood, s.restricted, s.warned):
        refused = await decide(h, owner, s.a, action_id, "not_spam")
        assert refused.status == 409
        assert "first-message checks deleted" in (await refused.json())["error"]
    assert (await decide(h, owner, s.a, 999_999, "ban")).status == 404
    bad = await decide(h, owner, s.a, s.deleted, "maybe")
    assert bad.status == 400 and "not_spam or ban" in (await bad.json())["error"]
    assert await h.console.changes.recent(chat_ids=[s.a], areas=("moderation",)) == []


async def test_the_log_pages_by_fifty(h: ConsoleHarness) -> None:
    olga = await h.person("Olga")
    a = await h.group("Group A", members=[olga])
    store = h.app.moderation.store
    for n in range(55):
        await store.record(
            chat_id=a,
            user_id=olga.id,
            action="warn",
            by=f"admin:{OWNER}",
            reason=f"warning {n}",
            at=h.clock.now(),
        )
    owner = await h.signed_in()
    first = await (await owner.get(f"/api/groups/{a}/moderation")).json()
    assert (first["total"], first["page"], first["pages"], len(first["actions"])) == (55, 1, 2, 50)
    assert first["actions"][0]["reason"] == "warning 54"
    second = await (await owner.get(f"/api/groups/{a}/moderation", params={"page": "2"})).json()
    assert [row["reason"] for row in second["actions"]] == [
        f"warning {n}" for n in range(4, -1, -1)
    ]
    html = await (await owner.get(f"/groups/{a}/moderation")).text()
    assert 'href="?page=2"' in html and "55 in all, page 1 of 2" in html
    bad = await owner.get(f"/api/groups/{a}/moderation", params={"page": "0"})
    assert bad.status == 400
