"""End to end: the real bot runs the shipped welcome SOP through the emulator, across restarts.

Every wait here waits for something the step under test must produce, counted: the welcome runs
of exactly the members who joined (read from the bot's database), greetings naming each of
them, a reply to a later update of the same chat (updates of one chat are handled in order), or
runs that reached their end. None can hold before the bot has handled what the test sent; the
emulator's count of confirmed updates can (the bot confirms a batch by asking for the next,
while the last update may still be in hand).
"""

from __future__ import annotations

import asyncio
import re
import shutil
import signal
import sqlite3
from collections import Counter
from pathlib import Path
from typing import Any

from bot.clock import SHIFT_REREAD
from bot.emulator import EmulatorClient
from tests.e2e.conftest import ROOT, Tidepool, wait_until

DAY = 86400.0
MENTION = re.compile(r"tg://user\?id=(\d+)")


class TimeShift:
    """Moves the bot's clock (CLOCK_FILE) and the emulator's clock forward together."""

    def __init__(self, ctl: EmulatorClient, folder: Path) -> None:
        self.ctl = ctl
        self.file = folder / "clock-shift"
        self.file.write_text("0")
        self.shift = 0.0

    async def forward(self, seconds: float) -> None:
        self.shift += seconds
        # Replaced, not rewritten in place: the bot must never read a half-written (empty) file,
        # which it takes for no shift at all.
        fresh = self.file.with_name(self.file.name + ".new")
        fresh.write_text(str(self.shift))
        fresh.replace(self.file)
        await self.ctl.advance_clock(seconds)
        await asyncio.sleep(3 * SHIFT_REREAD)  # the bot reads the file this often


def sops_without(folder: Path, *ids: str) -> Path:
    """A copy of the shipped SOPs in `folder` without these. Calendar SOPs fire on the moved
    clock: a test that moves days and is not about them leaves out the ones it would meet
    (the weekly lottery's post takes lottery #1 on a Friday, the tips count toward the cap)."""
    sops = folder / "sops"
    shutil.copytree(ROOT / "sops", sops)
    for sop_id in ids:
        (sops / f"{sop_id}.yaml").unlink()
    return sops


async def setup(
    ctl: EmulatorClient, tidepool: Tidepool, sops: Path | None = None
) -> dict[str, Any]:
    owner = (await ctl.create_user("Olga", username="olga"))["id"]
    await ctl.start(owner)
    group = (await ctl.create_chat("Tea <lovers>", type="supergroup"))["id"]
    await ctl.set_member(group, owner, "creator")
    clock = TimeShift(ctl, tidepool.folder)
    tidepool.extra_env.update(OWNER_IDS=str(owner), CLOCK_FILE=str(clock.file), LANGUAGE="en")
    if sops is not None:
        tidepool.extra_env["SOPS_DIR"] = str(sops)
    await tidepool.start(ctl)
    await ctl.set_bot_status(group, "administrator", by=owner)
    return {"owner": owner, "group": group, "clock": clock}


async def texts(ctl: EmulatorClient, chat: int) -> list[dict[str, Any]]:
    return [m for m in await ctl.sent(chat) if m.get("text") or m.get("caption")]


async def greeted(ctl: EmulatorClient, chat: int, needle: str) -> list[dict[str, Any]]:
    return [m for m in await texts(ctl, chat) if needle in (m["text"] or "")]


async def greetings(ctl: EmulatorClient, chat: int) -> list[dict[str, Any]]:
    """The welcome greetings sent to `chat` (not the /sops listing, which names the SOP)."""
    return [m for m in await texts(ctl, chat) if (m["text"] or "").startswith("Welcome to ")]


def named(message: dict[str, Any]) -> list[int]:
    """The members a message mentions, in order."""
    return [int(user_id) for user_id in MENTION.findall(message["text"] or "")]


async def times_greeted(ctl: EmulatorClient, chat: int) -> Counter[int]:
    """How many greetings name each member."""
    return Counter(user for message in await greetings(ctl, chat) for user in named(message))


async def test_welcome_escaped_name_button_and_exactly_one_nudge(
    ctl: EmulatorClient, tidepool: Tidepool
):
    s = await setup(ctl, tidepool)
    group, clock = s["group"], s["clock"]
    odd = (await ctl.create_user("<b>&amp;"))["id"]
    presser = (await ctl.create_user("Pat"))["id"]
    await ctl.join(group, odd)
    await ctl.join(group, presser)
    await wait_until(lambda: _welcome_runs(tidepool, odd, presser), what="a welcome run per join")
    assert presser not in await times_greeted(ctl, group), "a later joiner waits for the window"

    await clock.forward(61)
    await wait_until(lambda: _greeted(ctl, group, odd, presser), what="greetings naming both")
    assert await times_greeted(ctl, group) == {odd: 1, presser: 1}, "each greeted once"
    sent = await greetings(ctl, group)
    [for_odd] = [m for m in sent if odd in named(m)]
    assert "&lt;b&gt;&amp;amp;" in for_odd["text"] and "<b>&amp;" not in for_odd["text"]
    [greeting] = [m for m in sent if presser in named(m)]
    assert "Pat" in greeting["text"]
    button = greeting["reply_markup"]["inline_keyboard"][0][0]
    assert button["callback_data"] == "s:welcome:rules"

    pressed = await ctl.press(group, presser, greeting["message_id"], button["callback_data"])
    await wait_until(lambda: _has(ctl, group, "three simple rules", 1), what="the rules")
    answer = await ctl.callback_answer(pressed["callback_query_id"])
    assert answer is not None

    # The rules reply deletes itself ten minutes after it was sent (once the bot has noted it).
    [rules] = await greeted(ctl, group, "three simple rules")
    assert not rules["deleted"]
    await wait_until(lambda: _deletion_noted(tidepool), what="the deletion to be noted")
    await clock.forward(11 * 60)
    await wait_until(lambda: _rules_deleted(ctl, group), what="the rules reply to go")

    await clock.forward(DAY)
    await wait_until(lambda: _has(ctl, group, "settling in", 1), what="the nudge")
    await clock.forward(3 * DAY)
    await wait_until(lambda: _welcome_over(tidepool, 2), what="both welcome runs to end")
    nudges = await greeted(ctl, group, "settling in")
    assert len(nudges) == 1 and f"id={odd}" in nudges[0]["text"], "only the silent member"
    assert await tidepool.stop() == 0

    # (The days moved also bring the calendar SOPs' runs, such as the daily tip's.)
    runs = {(r["user_id"], r["status"]) for r in await _runs(tidepool) if r["sop_id"] == "welcome"}
    assert runs == {(odd, "done"), (presser, "done")}


async def test_restart_during_the_wait_sends_the_nudge_once_on_time(
    ctl: EmulatorClient, tidepool: Tidepool
):
    s = await setup(ctl, tidepool)
    group, clock = s["group"], s["clock"]
    member = (await ctl.create_user("Quiet"))["id"]
    await ctl.join(group, member)
    await wait_until(lambda: _welcome_runs(tidepool, member), what="a welcome run for the join")
    await clock.forward(61)
    await wait_until(lambda: _greeted(ctl, group, member), what="the greeting")
    greeting_at = (await greetings(ctl, group))[0]["date"]
    assert await tidepool.stop() == 0

    await clock.forward(DAY - 120)  # the bot is down for most of the day
    await tidepool.start(ctl)
    await clock.forward(120)
    await wait_until(lambda: _has(ctl, group, "settling in", 1), what="the nudge after restart")
    await clock.forward(DAY)
    await wait_until(lambda: _welcome_over(tidepool, 1), what="the welcome run to end")
    nudges = await greeted(ctl, group, "settling in")
    assert len(nudges) == 1
    assert abs(nudges[0]["date"] - (greeting_at + DAY)) < 30, "sent when the wait ended"
    assert await tidepool.stop() == 0
    # ...and a second restart does not send anything again. A newcomer after it is greeted by
    # the same timer, later than anything the restart could have sent again.
    await tidepool.start(ctl)
    await clock.forward(DAY)
    probe = (await ctl.create_user("Later"))["id"]
    await ctl.join(group, probe)
    await wait_until(lambda: _welcome_runs(tidepool, member, probe), what="the newcomer's run")
    await clock.forward(61)
    await wait_until(lambda: _greeted(ctl, group, probe), what="the newcomer's greeting")
    assert len(await greeted(ctl, group, "settling in")) == 1
    assert await times_greeted(ctl, group) == {member: 1, probe: 1}
    assert await tidepool.stop() == 0


async def test_a_wait_due_while_down_runs_late_and_owners_are_told(
    ctl: EmulatorClient, tidepool: Tidepool
):
    s = await setup(ctl, tidepool)
    group, clock, owner = s["group"], s["clock"], s["owner"]
    member = (await ctl.create_user("Late"))["id"]
    await ctl.join(group, member)
    await wait_until(lambda: _welcome_runs(tidepool, member), what="a welcome run for the join")
    await clock.forward(61)
    await wait_until(lambda: _greeted(ctl, group, member), what="the greeting")
    assert await tidepool.stop() == 0
    await clock.forward(DAY + 1800)  # due half an hour ago: within the 1 h catch-up grace
    await tidepool.start(ctl)
    await wait_until(lambda: _has(ctl, group, "settling in", 1), what="the late nudge")
    await wait_until(lambda: _has(ctl, owner, "ran them late", 1), what="the owner's notice")
    assert await tidepool.stop() == 0


async def test_broken_sop_is_reported_and_the_others_run(ctl: EmulatorClient, tidepool: Tidepool):
    sops = tidepool.folder / "sops"
    shutil.copytree(ROOT / "sops", sops)
    (sops / "broken.yaml").write_text(
        "schema_version: 1\nid: broken\nname: Broken\ngroups: all\n"
        "triggers:\n  - type: member_joined\nsteps:\n  - send: {template: no.such_text}\n"
    )
    s = await setup(ctl, tidepool, sops)
    group, clock, owner = s["group"], s["clock"], s["owner"]
    await wait_until(lambda: _has(ctl, owner, "broken.yaml", 1), what="the owner's notice")
    [notice] = await greeted(ctl, owner, "broken.yaml")
    assert "no.such_text" in notice["text"] and "8:" in notice["text"]
    member = (await ctl.create_user("Still"))["id"]
    await ctl.join(group, member)
    await wait_until(lambda: _welcome_runs(tidepool, member), what="a welcome run for the join")
    await clock.forward(61)
    await wait_until(lambda: _greeted(ctl, group, member), what="the greeting")

    # An admin fixes nothing but asks: /sops lists the broken file; a member may not.
    await ctl.send_message(group, member, "/sops")
    await wait_until(lambda: _has(ctl, group, "Only the group's admins", 1), what="a refusal")
    await ctl.send_message(group, owner, "/sops")
    await wait_until(lambda: _has(ctl, group, "SOPs in this group", 1), what="the list")
    [listing] = await greeted(ctl, group, "SOPs in this group")
    assert "welcome" in listing["text"] and "broken.yaml" in listing["text"]

    # Breaking the welcome file keeps its last good version running after /reload.
    (sops / "welcome.yaml").write_text((sops / "welcome.yaml").read_text() + "\n  - bogus: 1\n")
    await ctl.send_message(group, owner, "/reload")
    await wait_until(lambda: _has(ctl, group, "last good version keeps running", 1), what="reload")
    other = (await ctl.create_user("Next"))["id"]
    await ctl.join(group, other)
    await wait_until(lambda: _welcome_runs(tidepool, member, other), what="a run by the kept one")
    await clock.forward(61)
    await wait_until(lambda: _greeted(ctl, group, other), what="a greeting by the kept version")
    assert await times_greeted(ctl, group) == {member: 1, other: 1}

    # SIGHUP reloads too, and tells the owners what is broken now.
    (sops / "silent_reactivation.yaml").write_text("schema_version: 1\nid: [\n")
    assert tidepool.process is not None
    tidepool.process.send_signal(signal.SIGHUP)
    await wait_until(
        lambda: _has(ctl, owner, "silent_reactivation.yaml", 1), what="the SIGHUP notice"
    )
    assert tidepool.alive()
    assert await tidepool.stop() == 0


async def _rules_deleted(ctl: EmulatorClient, chat: int) -> bool:
    rules = await greeted(ctl, chat, "three simple rules")
    return len(rules) == 1 and bool(rules[0]["deleted"])


async def _has(ctl: EmulatorClient, chat: int, needle: str, count: int) -> bool:
    return len(await greeted(ctl, chat, needle)) >= count


async def _greeted(ctl: EmulatorClient, chat: int, *members: int) -> bool:
    """Each of `members` is named in a greeting (alone or with others, at once or later)."""
    return set(members) <= set(await times_greeted(ctl, chat))


async def _deletion_noted(tidepool: Tidepool) -> bool:
    return bool(_rows(tidepool, "SELECT count(*) FROM scheduled_deletions")[0][0])


async def _welcome_runs(tidepool: Tidepool, *members: int) -> bool:
    """The bot has started exactly these welcome runs: one for each of `members` (a member named
    twice has two). Written by the handling of the member's join, so never true before it."""
    rows = _rows(tidepool, "SELECT user_id FROM sop_runs WHERE sop_id = 'welcome'")
    return Counter(user_id for (user_id,) in rows) == Counter(members)


async def _welcome_over(tidepool: Tidepool, count: int) -> bool:
    """There are `count` welcome runs, and every one has ended."""
    rows = _rows(tidepool, "SELECT status FROM sop_runs WHERE sop_id = 'welcome'")
    over = ("done", "cancelled", "failed", "skipped")
    return len(rows) == count and all(status in over for (status,) in rows)


def _rows(tidepool: Tidepool, query: str, *params: Any) -> list[tuple[Any, ...]]:
    with sqlite3.connect(tidepool.folder / "tidepool.db") as db:
        return [tuple(row) for row in db.execute(query, params)]


async def _runs(tidepool: Tidepool) -> list[dict[str, Any]]:
    with sqlite3.connect(tidepool.folder / "tidepool.db") as db:
        db.row_factory = sqlite3.Row
        return [dict(row) for row in db.execute("SELECT * FROM sop_runs")]


async def test_admins_switch_and_run_sops_by_hand(ctl: EmulatorClient, tidepool: Tidepool):
    s = await setup(ctl, tidepool)
    group, clock, owner = s["group"], s["clock"], s["owner"]
    admin = (await ctl.create_user("Ada", username="ada"))["id"]
    await ctl.set_member(group, admin, "administrator")
    member = (await ctl.create_user("Mo", username="mo"))["id"]
    silent = (await ctl.create_user("Sid"))["id"]
    await ctl.join(group, member)
    await ctl.join(group, silent)
    await wait_until(lambda: _welcome_runs(tidepool, member, silent), what="a run per join")
    await clock.forward(61)
    await wait_until(lambda: _greeted(ctl, group, member, silent), what="the greetings")

    await ctl.send_message(group, member, "/sop_off welcome")
    await wait_until(lambda: _has(ctl, group, "Only the group's admins", 1), what="a refusal")
    await ctl.send_message(group, admin, "/sop_off")
    await wait_until(lambda: _has(ctl, group, "Usage: /sop_off ID", 1), what="the usage line")
    await ctl.send_message(group, admin, "/sop_off welcom")
    await wait_until(lambda: _has(ctl, group, "There is no SOP", 1), what="unknown SOP")
    await ctl.send_message(group, admin, "/sop_off welcome")
    await wait_until(lambda: _has(ctl, group, "now off in this group", 1), what="switched off")
    # Sid's run, waiting for a first message, was stopped along with the SOP: no nudge comes.
    await wait_until(lambda: _welcome_over(tidepool, 2), what="the runs to stop with the SOP")

    late = (await ctl.create_user("Lou"))["id"]
    await ctl.join(group, late)
    # The group's updates are handled in order: once /sops is answered, Lou's join was handled.
    await ctl.send_message(group, owner, "/sops")
    await wait_until(lambda: _has(ctl, group, "SOPs in this group", 1), what="the list")
    [listing] = await greeted(ctl, group, "SOPs in this group")
    assert "<code>welcome</code> Welcome newcomers: off here" in listing["text"]
    joined = (
        "SELECT count(*) FROM members WHERE chat_id = ? AND user_id = ? AND joined_at IS NOT NULL"
    )
    assert _rows(tidepool, joined, group, late) == [(1,)], "the join is recorded"
    assert await _welcome_runs(tidepool, member, silent), "welcome is off: no run for Lou"
    await clock.forward(61)
    await clock.forward(DAY)
    assert await times_greeted(ctl, group) == {member: 1, silent: 1}, "none while switched off"
    assert await greeted(ctl, group, "settling in") == []

    # An anonymous admin (writing as the group) switches it back on and runs it by hand.
    await ctl.send_message(group, sender_chat_id=group, text="/sop_on welcome")
    await wait_until(lambda: _has(ctl, group, "now on in this group", 1), what="switched on")
    await ctl.send_message(group, admin, "/sop_run welcome @mo")
    await wait_until(lambda: _has(ctl, group, "Started", 1), what="the confirmation")
    await wait_until(lambda: _greeted_twice(ctl, group, member), what="a greeting by hand")
    again = (await greetings(ctl, group))[-1]
    assert named(again) == [member]
    assert await times_greeted(ctl, group) == {member: 2, silent: 1}
    await ctl.send_message(group, admin, "/sop_run welcome @nobody")
    await wait_until(lambda: _has(ctl, group, "I don't know @nobody", 1), what="unknown member")
    await ctl.send_message(group, owner, "/sops")
    await wait_until(lambda: _has(ctl, group, "SOPs in this group", 2), what="the list")
    listing = (await greeted(ctl, group, "SOPs in this group"))[-1]
    assert "on here" in listing["text"] and "silent_reactivation" in listing["text"]
    assert await tidepool.stop() == 0


async def _greeted_twice(ctl: EmulatorClient, chat: int, member: int) -> bool:
    return (await times_greeted(ctl, chat))[member] >= 2
