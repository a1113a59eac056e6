"""End to end: members check in through the real bot and the emulator; streaks, boards, /me."""

from __future__ import annotations

import sqlite3

from bot.emulator import EmulatorClient
from tests.e2e.conftest import Tidepool, all_confirmed, wait_until
from tests.e2e.test_sop_e2e import DAY, _has, greeted, setup, sops_without

# A group post carrying the check-in button, as operators add to their own SOPs.
PROMPT = """\
schema_version: 1
id: checkin_prompt
name: Check-in prompt
groups: all
concurrency_key: group
triggers:
  - type: command
    command: prompt
steps:
  - send:
      template: checkin.button
      buttons:
        - - text: checkin.button
            data: checkin
"""


def ledger(tidepool: Tidepool) -> list[tuple[int, int, str]]:
    with sqlite3.connect(tidepool.folder / "tidepool.db") as db:
        rows = db.execute("SELECT user_id, delta, reason FROM points_ledger ORDER BY id")
        return [tuple(row) for row in rows]


def checkins(tidepool: Tidepool) -> list[tuple[int, str, int]]:
    with sqlite3.connect(tidepool.folder / "tidepool.db") as db:
        rows = db.execute("SELECT user_id, day, streak FROM checkins ORDER BY id")
        return [tuple(row) for row in rows]


async def test_keywords_button_once_a_day_streak_bonus_milestone_top_and_me(
    ctl: EmulatorClient, tidepool: Tidepool
) -> None:
    # A week of the other calendar SOPs' posts (the weekly lottery opened and drawn, the tips)
    # would fill the group's 20 a minute; the weekly leaderboard, posted on whichever Monday the
    # week crosses, says "today" too and is never deleted.
    sops = sops_without(
        tidepool.folder,
        "weekly_lottery",
        "daily_tip",
        "reengage_dormant",
        "silent_reactivation",
        "weekly_leaderboard",
    )
    (sops / "checkin_prompt.yaml").write_text(PROMPT)
    s = await setup(ctl, tidepool, sops)
    group, clock = s["group"], s["clock"]
    ann = (await ctl.create_user("Ann"))["id"]
    bob = (await ctl.create_user("Bob"))["id"]
    cy = (await ctl.create_user("Cy"))["id"]
    for member in (ann, bob, cy):
        await ctl.join(group, member)
    await wait_until(lambda: all_confirmed(ctl), what="the joins")

    # Each way in: the command, both keywords, and the button on a group post.
    said = await ctl.send_message(group, ann, "/checkin")
    await wait_until(lambda: _has(ctl, group, "#1 today", 1), what="Ann's check-in")
    [reply] = await greeted(ctl, group, "#1 today")
    assert f"id={ann}" in reply["text"] and "+10 points · streak 1" in reply["text"]
    assert reply["reply_to_message_id"] == said["message"]["message_id"]
    await ctl.send_message(group, bob, "打卡")
    await wait_until(lambda: _has(ctl, group, "#2 today", 1), what="Bob's check-in")
    await ctl.send_message(group, s["owner"], "/prompt")
    await wait_until(lambda: _has(ctl, group, "Check in", 1), what="the prompt")
    [prompt] = await greeted(ctl, group, "Check in")
    button = prompt["reply_markup"]["inline_keyboard"][0][0]
    await ctl.press(group, cy, prompt["message_id"], button["callback_data"])
    await wait_until(lambda: _has(ctl, group, "#3 today", 1), what="Cy's check-in by button")

    # A second check-in the same day: a friendly answer, no points.
    await ctl.send_message(group, ann, "签到")
    await wait_until(lambda: _has(ctl, group, "already checked in", 1), what="already")
    await wait_until(lambda: all_confirmed(ctl), what="quiet")
    assert [row for row in ledger(tidepool) if row[0] == ann] == [(ann, 10, "check-in")]

    # Ann goes on for six more days: the seventh brings the bonus and the milestone SOP.
    for day in range(2, 8):
        await clock.forward(DAY)
        await ctl.send_message(group, ann, "/checkin")
        needle = f"streak {day} "
        await wait_until(lambda: _has(ctl, group, needle, 1), what=f"day {day}")  # noqa: B023
    await wait_until(lambda: _has(ctl, group, "7 days in a row", 1), what="the celebration")
    [seventh] = await greeted(ctl, group, "streak 7 ")
    assert "+60 points (with a 50 bonus for 7 days)" in seventh["text"]
    assert ledger(tidepool)[-2:] == [(ann, 10, "check-in"), (ann, 50, "streak bonus: 7 days")]
    assert [streak for user, _, streak in checkins(tidepool) if user == ann] == list(range(1, 8))

    # The check-in replies delete themselves two minutes after they were sent.
    await clock.forward(180)
    await wait_until(lambda: _replies_gone(ctl, group), what="the replies to go")

    await ctl.send_message(group, bob, "/top all")
    await wait_until(lambda: _has(ctl, group, "All-time leaderboard", 1), what="/top all")
    [board] = await greeted(ctl, group, "All-time leaderboard")
    lines = board["text"].splitlines()
    assert "1. Ann · 7 days" in lines and "2. Bob · 1 day" in lines and "3. Cy · 1 day" in lines
    assert "1. Ann · 120" in lines and "2. Bob · 10" in lines
    assert "tg://user" not in board["text"], "/top pings nobody"

    await ctl.send_message(group, ann, "/me")
    await wait_until(lambda: _has(ctl, group, "Points: 120", 1), what="/me")
    [me] = await greeted(ctl, group, "Points: 120")
    assert "Check-in streak: 7 days (7 in all)" in me["text"]
    assert "Tier: newcomer" in me["text"]
    await ctl.send_message(group, ann, "/top yesterday")
    await wait_until(lambda: _has(ctl, group, "Usage: /top", 1), what="the usage line")
    assert await tidepool.stop() == 0


async def _replies_gone(ctl: EmulatorClient, group: int) -> bool:
    replies = await greeted(ctl, group, "today")
    return bool(replies) and all(reply["deleted"] for reply in replies)
