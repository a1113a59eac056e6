"""End to end: every SOP shipped in `sops/` works in the real `tidepool run` process.

Each test triggers one shipped SOP the way a member or the calendar would and checks that its
first message reached the group. The calendar follows the moved clock (one test shows the
daily tip firing on its own); the other calendar SOPs are run the way an admin runs them by
hand, `/sop_run ID`, whose answer must not be a failure, so that no test waits for its hour.
The bot's clock is moved to midday in the group's zone first, so that nothing waits for quiet
hours (22:00-08:00) by accident.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial
from typing import Any
from zoneinfo import ZoneInfo

import yaml

from bot.emulator import EmulatorClient
from tests.e2e.conftest import (
    ROOT,
    Tidepool,
    all_confirmed,
    answer_to,
    deliveries_recorded,
    wait_until,
)
from tests.e2e.test_sop_e2e import DAY, TimeShift, _has, greeted

SHANGHAI = ZoneInfo("Asia/Shanghai")  # the harness's TIMEZONE


@dataclass
class Group:
    """A supergroup with the bot as administrator, its owner and an admin (not an owner)."""

    chat: int
    owner: int
    admin: int
    clock: TimeShift


async def group_at(ctl: EmulatorClient, tidepool: Tidepool, hour: int = 12) -> Group:
    """Start the bot at the next `hour`:00 in Shanghai, in a group where it is an admin."""
    clock = TimeShift(ctl, tidepool.folder)
    local = datetime.fromtimestamp(await ctl.now(), SHANGHAI)
    target = local.replace(hour=hour, minute=0, second=0, microsecond=0)
    if target <= local:
        target += timedelta(days=1)
    await clock.forward((target - local).total_seconds())
    owner = (await ctl.create_user("Olga", username="olga"))["id"]
    await ctl.start(owner)
    chat = (await ctl.create_chat("Tea lovers", type="supergroup"))["id"]
    await ctl.set_member(chat, owner, "creator")
    admin = (await ctl.create_user("Ada", username="ada"))["id"]
    await ctl.set_member(chat, admin, "administrator")
    tidepool.extra_env.update(OWNER_IDS=str(owner), CLOCK_FILE=str(clock.file), LANGUAGE="en")
    await tidepool.start(ctl)
    await ctl.set_bot_status(chat, "administrator", by=owner)
    await wait_until(lambda: _group_active(tidepool, chat), what="the bot to know the group")
    return Group(chat, owner, admin, clock)


async def member(ctl: EmulatorClient, tidepool: Tidepool, chat: int, name: str) -> int:
    """A member who joined the group (their welcome run started: the join is handled)."""
    user = int((await ctl.create_user(name, username=name.lower()))["id"])
    await ctl.join(chat, user)
    await wait_until(partial(_runs_of, tidepool, "welcome", user), what=f"{name}'s join")
    return user


async def run_by_hand(ctl: EmulatorClient, g: Group, sop_id: str, who: str = "") -> str:
    """An admin sends `/sop_run SOP_ID [WHO]` in the group; the bot's answer, which must say
    the SOP ran (to the end, or started), not that it failed or did not start."""
    said = await ctl.send_message(g.chat, g.admin, f"/sop_run {sop_id} {who}".strip())
    answer = (await answer_to(ctl, g.chat, said))["text"]
    whom = f" for {who}" if who else ""
    assert answer in (
        f"Ran <code>{sop_id}</code>{whom} to the end.",
        f"Started <code>{sop_id}</code>{whom}.",
    ), answer
    return str(answer)


def mention(user: int) -> str:
    """How a text links a member (the closing quote: user 100 is not user 1001)."""
    return f'tg://user?id={user}"'


# -- member-triggered SOPs --------------------------------------------------------------------


async def test_daily_checkin_a_member_checks_in_with_the_command(
    ctl: EmulatorClient, tidepool: Tidepool
) -> None:
    g = await group_at(ctl, tidepool)
    ann = await member(ctl, tidepool, g.chat, "Ann")

    said = await ctl.send_message(g.chat, ann, "/checkin")
    reply = await answer_to(ctl, g.chat, said)
    assert mention(ann) in reply["text"]
    assert "✅ +10 points · streak 1 · #1 today" in reply["text"]
    assert tidepool.rows("SELECT user_id, streak, points FROM checkins") == [(ann, 1, 10)]


async def test_streak_milestone_seven_days_in_a_row_are_celebrated_in_the_group(
    ctl: EmulatorClient, tidepool: Tidepool
) -> None:
    g = await group_at(ctl, tidepool)
    ann = await member(ctl, tidepool, g.chat, "Ann")

    for day in range(1, 8):
        said = await ctl.send_message(g.chat, ann, "/checkin")
        reply = await answer_to(ctl, g.chat, said)
        assert f"streak {day} " in reply["text"], reply["text"]
        if day < 7:
            assert await greeted(ctl, g.chat, "days in a row") == [], "no milestone yet"
            await g.clock.forward(DAY)
    await wait_until(lambda: _has(ctl, g.chat, "days in a row", 1), what="the celebration")
    [celebration] = await greeted(ctl, g.chat, "days in a row")
    assert mention(ann) in celebration["text"]
    assert "has checked in 7 days in a row!" in celebration["text"]
    assert not celebration["reply_to_message_id"], "a post of its own, not the check-in reply"


# -- welcome ----------------------------------------------------------------------------------


async def test_welcome_a_quiet_groups_first_joiner_is_greeted_within_two_seconds(
    ctl: EmulatorClient, tidepool: Tidepool
) -> None:
    g = await group_at(ctl, tidepool)
    ann = (await ctl.create_user("Ann"))["id"]

    joined = await ctl.join(g.chat, ann)
    await wait_until(lambda: _has(ctl, g.chat, "Welcome to", 1), what="the greeting")
    [greeting] = await greeted(ctl, g.chat, "Welcome to")
    assert mention(ann) in greeting["text"]
    assert greeting["reply_markup"]["inline_keyboard"][0][0]["text"] == "Group rules"
    late = greeting["date"] - joined["message"]["date"]
    assert 0 <= late <= 2, f"greeted {late} s after the join"


async def test_welcome_three_joiners_within_a_second_get_one_greeting_naming_all(
    ctl: EmulatorClient, tidepool: Tidepool
) -> None:
    g = await group_at(ctl, tidepool)
    people = [(await ctl.create_user(name))["id"] for name in ("Ann", "Ben", "Cai")]

    first = await ctl.join(g.chat, people[0])
    for user in people[1:]:
        await ctl.join(g.chat, user)
    await wait_until(lambda: _has(ctl, g.chat, "Welcome to", 1), what="the greeting")
    # Nothing more can come: every join is handled, each joiner's greeting step is done (the
    # run is past it), and every message the emulator saw is in the bot's delivery records.
    await wait_until(lambda: all_confirmed(ctl), what="the joins to be handled")
    await wait_until(lambda: _greeted_runs(tidepool, 3), what="three runs past the greeting")
    await wait_until(partial(deliveries_recorded, tidepool, ctl, g.chat), what="delivery idle")
    [greeting] = await greeted(ctl, g.chat, "Welcome to")
    assert all(mention(user) in greeting["text"] for user in people), greeting["text"]
    assert greeting["date"] - first["message"]["date"] <= 2
    shared = tidepool.rows(
        "SELECT DISTINCT message_id FROM sop_steps JOIN sop_runs ON sop_runs.id = run_id"
        " WHERE sop_id = 'welcome' AND step = 'greet'"
    )
    assert shared == [(greeting["message_id"],)], "the three greeting steps share one message"


# -- calendar SOPs --------------------------------------------------------------------------------


async def test_daily_tip_fires_at_nine_when_the_clock_is_moved_past_it(
    ctl: EmulatorClient, tidepool: Tidepool
) -> None:
    g = await group_at(ctl, tidepool, hour=8)
    assert await greeted(ctl, g.chat, "Tip of the day") == [], "no tip before nine"

    await g.clock.forward(3600 + 60)  # 09:01 in Shanghai: the cron "0 9 * * *" has passed
    await wait_until(lambda: _has(ctl, g.chat, "Tip of the day", 1), what="the 09:00 tip")


# -- calendar SOPs, run by hand -----------------------------------------------------------------


async def test_daily_tip_run_by_an_admin_posts_the_first_tip(
    ctl: EmulatorClient, tidepool: Tidepool
) -> None:
    g = await group_at(ctl, tidepool)
    tips = yaml.safe_load((ROOT / "content" / "rotations" / "daily_tips.yaml").read_text())

    await run_by_hand(ctl, g, "daily_tip")
    await wait_until(lambda: _has(ctl, g.chat, "Tip of the day", 1), what="the tip")
    [tip] = await greeted(ctl, g.chat, "Tip of the day")
    assert tips[0]["en"] in tip["text"], "a new group starts at the first tip"
    await wait_until(partial(_pushes_sent, tidepool, 1), what="the push to be marked sent")
    assert tidepool.rows("SELECT status FROM pushes") == [("sent",)], "one push, sent once"


async def test_weekly_leaderboard_run_by_an_admin_posts_last_weeks_board(
    ctl: EmulatorClient, tidepool: Tidepool
) -> None:
    g = await group_at(ctl, tidepool)
    ann = await member(ctl, tidepool, g.chat, "Ann")
    said = await ctl.send_message(g.chat, ann, "/checkin")
    await answer_to(ctl, g.chat, said)
    await g.clock.forward(7 * DAY)  # the same weekday next week: Ann's check-in was last week

    await run_by_hand(ctl, g, "weekly_leaderboard")
    await wait_until(lambda: _has(ctl, g.chat, "Last week's leaderboard", 1), what="the board")
    [board] = await greeted(ctl, g.chat, "Last week's leaderboard")
    lines = board["text"].splitlines()
    assert any(line.startswith("1. ") and mention(ann) in line for line in lines), lines
    assert board["text"].count(mention(ann)) == 1, "each winner is mentioned once"
    button = board["reply_markup"]["inline_keyboard"][0][0]
    assert button["callback_data"] == "checkin"


async def test_weekly_lottery_run_by_an_admin_opens_the_lottery(
    ctl: EmulatorClient, tidepool: Tidepool
) -> None:
    g = await group_at(ctl, tidepool)

    await run_by_hand(ctl, g, "weekly_lottery")
    await wait_until(lambda: _has(ctl, g.chat, "Lottery #1:", 1), what="the lottery post")
    [post] = await greeted(ctl, g.chat, "Lottery #1:")
    assert "This week&#39;s gift: a hand-picked surprise" in post["text"]
    assert "3 winners" in post["text"]
    [(commitment,)] = tidepool.rows("SELECT commitment FROM lotteries")
    assert commitment in post["text"]
    assert post["reply_markup"]["inline_keyboard"][0][0]["callback_data"] == "lottery:enter:1"


async def test_live_reminders_run_only_once_switched_on_and_announce_the_live(
    ctl: EmulatorClient, tidepool: Tidepool
) -> None:
    g = await group_at(ctl, tidepool)

    said = await ctl.send_message(g.chat, g.admin, "/sop_run live_reminders")
    refused = await answer_to(ctl, g.chat, said)
    assert refused["text"] == (
        "<code>live_reminders</code> did not start here: it is off in this group."
    )
    said = await ctl.send_message(g.chat, g.admin, "/sop_on live_reminders")
    switched = await answer_to(ctl, g.chat, said)
    assert "now on in this group" in switched["text"]

    await run_by_hand(ctl, g, "live_reminders")
    await wait_until(lambda: _has(ctl, g.chat, "Live: Weekly live Q&amp;A", 1), what="the post")
    [post] = await greeted(ctl, g.chat, "Live: Weekly live Q&amp;A")
    tomorrow = datetime.fromtimestamp(await ctl.now(), SHANGHAI) + timedelta(days=1)
    assert f"{tomorrow:%Y-%m-%d} 20:00" in post["text"]
    remind, watch = post["reply_markup"]["inline_keyboard"][0]
    assert (remind["callback_data"], watch["callback_data"]) == ("live:remind:1", "live:watch:1")
    await wait_until(partial(_pinned, ctl, g.chat, post["message_id"]), what="the pin")


# -- silence and dormancy -----------------------------------------------------------------------


async def test_silent_reactivation_an_admins_run_mentions_the_members_silent_for_two_weeks(
    ctl: EmulatorClient, tidepool: Tidepool
) -> None:
    g = await group_at(ctl, tidepool)
    ann = await member(ctl, tidepool, g.chat, "Ann")
    ben = await member(ctl, tidepool, g.chat, "Ben")
    for user in (ann, ben):
        await ctl.send_message(g.chat, user, "hello everyone")
    await g.clock.forward(15 * DAY)
    await ctl.send_message(g.chat, ben, "back from holiday")  # Ben is not silent; Ann is
    await wait_until(partial(_messages_stored, tidepool, 3), what="the three messages")

    # The silent check runs daily at 10:00 on the real calendar; an admin runs it now.
    await run_by_hand(ctl, g, "silent_reactivation")
    await wait_until(lambda: _has(ctl, g.chat, "haven't heard from you", 1), what="the nudge")
    [nudge] = await greeted(ctl, g.chat, "haven't heard from you")
    assert mention(ann) in nudge["text"] and mention(ben) not in nudge["text"]


async def test_silent_reactivation_an_admin_nudges_a_silent_member_by_name(
    ctl: EmulatorClient, tidepool: Tidepool
) -> None:
    g = await group_at(ctl, tidepool)
    ann = await member(ctl, tidepool, g.chat, "Ann")
    await ctl.send_message(g.chat, ann, "hello everyone")
    await wait_until(partial(_messages_stored, tidepool, 1), what="Ann's message")
    await g.clock.forward(15 * DAY)

    await run_by_hand(ctl, g, "silent_reactivation", "@ann")
    await wait_until(lambda: _has(ctl, g.chat, "haven't heard from you", 1), what="the nudge")
    [nudge] = await greeted(ctl, g.chat, "haven't heard from you")
    assert mention(ann) in nudge["text"]
    tags = tidepool.rows("SELECT user_id, tag FROM member_tags WHERE tag = 'reactivated_recently'")
    assert tags == [(ann, "reactivated_recently")], "the 30-day cool-down has begun"


async def test_reengage_dormant_greets_a_member_the_daily_tiers_find_dormant(
    ctl: EmulatorClient, tidepool: Tidepool
) -> None:
    g = await group_at(ctl, tidepool)
    ann = await member(ctl, tidepool, g.chat, "Ann")
    await ctl.send_message(g.chat, ann, "hello everyone")
    await wait_until(partial(_messages_stored, tidepool, 1), what="Ann's message")
    # A month of silence: the daily analytics, on the bot's clock after 05:00 each day, find
    # Ann dormant, and the tier change starts the SOP.
    await g.clock.forward(31 * DAY)

    await wait_until(lambda: _has(ctl, g.chat, "we miss you", 1), 45, what="the re-engagement")
    [greeting] = await greeted(ctl, g.chat, "we miss you")
    assert mention(ann) in greeting["text"]
    changes = tidepool.rows("SELECT user_id, new FROM tier_changes WHERE new = 'dormant'")
    assert (ann, "dormant") in changes


# -- signals ------------------------------------------------------------------------------------


async def _group_active(tidepool: Tidepool, chat: int) -> bool:
    found = tidepool.rows(f"SELECT status FROM groups WHERE id = {chat}")
    return found == [("active",)]


async def _runs_of(tidepool: Tidepool, sop_id: str, user: int) -> bool:
    found = tidepool.rows(
        f"SELECT count(*) FROM sop_runs WHERE sop_id = '{sop_id}' AND user_id = {user}"
    )
    return bool(found[0][0])


async def _pushes_sent(tidepool: Tidepool, count: int) -> bool:
    found = tidepool.rows("SELECT count(*) FROM pushes WHERE status = 'sent'")
    return bool(found[0][0] >= count)


async def _messages_stored(tidepool: Tidepool, count: int) -> bool:
    """`count` member messages are in the activity log (so the member's last activity too)."""
    found = tidepool.rows("SELECT count(*) FROM events WHERE type = 'message'")
    return bool(found[0][0] >= count)


async def _greeted_runs(tidepool: Tidepool, count: int) -> bool:
    """`count` welcome runs have finished their greeting step."""
    done = tidepool.rows(
        "SELECT count(*) FROM sop_steps JOIN sop_runs ON sop_runs.id = sop_steps.run_id"
        " WHERE sop_runs.sop_id = 'welcome' AND sop_steps.step = 'greet'"
        " AND sop_steps.status = 'done'"
    )
    return bool(done[0][0] >= count)


async def _pinned(ctl: EmulatorClient, chat: int, message_id: int) -> bool:
    found: list[dict[str, Any]] = [m for m in await ctl.sent(chat) if m["message_id"] == message_id]
    return bool(found and found[0]["pinned"])
