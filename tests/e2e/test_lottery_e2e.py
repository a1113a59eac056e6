"""End to end: an admin opens a lottery, members enter with its button (the ineligible are told
why privately), the bot is stopped before the deadline and started after it: the draw happens
once, a member who left cannot win, anyone can verify it, and a reroll replaces a winner."""

from __future__ import annotations

import json

from bot.emulator import EmulatorClient
from bot.lottery import draw as drawing
from tests.e2e.conftest import Tidepool, all_confirmed, wait_until
from tests.e2e.test_rewards_e2e import answer_of
from tests.e2e.test_sop_e2e import _has, greeted, setup, sops_without

DAY = 86400


async def test_a_lottery_is_drawn_once_across_a_restart_and_checks_out(
    ctl: EmulatorClient, tidepool: Tidepool
) -> None:
    # Two days on may pass Friday 20:00, when the weekly lottery would open lottery #1.
    s = await setup(ctl, tidepool, sops_without(tidepool.folder, "weekly_lottery"))
    group, owner, clock = s["group"], s["owner"], s["clock"]
    people = {}
    for name in ("Alice", "Bob", "Carol", "Erin"):
        people[name] = (await ctl.create_user(name, username=name.lower()))["id"]
        await ctl.join(group, people[name])
    await wait_until(lambda: all_confirmed(ctl), what="the joins")
    await clock.forward(2 * DAY)
    dave = (await ctl.create_user("Dave", username="dave"))["id"]
    await ctl.join(group, dave)  # joined just now: too new for a 1-day tenure rule
    await wait_until(lambda: all_confirmed(ctl), what="Dave's join")
    # Frank was in the group before the bot (no update about him); Vera only visits it.
    people["Frank"] = (await ctl.create_user("Frank", username="frank"))["id"]
    await ctl.set_member(group, people["Frank"], "member")
    vera = (await ctl.create_user("Vera"))["id"]

    # A malformed command gets what is wrong and the usage, no lottery.
    await ctl.send_message(group, owner, "/lottery two 2h Signed book")
    await wait_until(lambda: _has(ctl, group, "whole number from 1 to 50", 1), what="an error")
    [error] = await greeted(ctl, group, "whole number from 1 to 50")
    assert "Usage: /lottery WINNERS DURATION PRIZE" in error["text"]
    await ctl.send_message(group, people["Alice"], "/lottery 1 2h Free mug")
    await wait_until(lambda: _has(ctl, group, "Only the group's admins", 1), what="a refusal")

    await ctl.send_message(group, owner, "/lottery 2 2h Signed book tenure=1d")
    await wait_until(lambda: _has(ctl, group, "Lottery #1: Signed book", 1), what="the post")
    [post] = await greeted(ctl, group, "Lottery #1: Signed book")
    [(commitment,)] = tidepool.rows("SELECT commitment FROM lotteries")
    assert commitment in post["text"] and "in the group for at least 1d" in post["text"]
    button = post["reply_markup"]["inline_keyboard"][0][0]
    assert button["callback_data"] == "lottery:enter:1"

    for name in ("Alice", "Bob", "Carol", "Erin", "Frank"):  # Frank: Telegram says he is in
        pressed = await ctl.press(group, people[name], post["message_id"], "lottery:enter:1")
        answer = await answer_of(ctl, pressed)
        assert "You're in lottery #1" in answer["text"] and not answer["show_alert"]
    again = await answer_of(
        ctl, await ctl.press(group, people["Alice"], post["message_id"], "lottery:enter:1")
    )
    assert again["text"] == "You have already entered. Good luck!"
    refused = await answer_of(
        ctl, await ctl.press(group, dave, post["message_id"], button["callback_data"])
    )
    assert refused["show_alert"] and "in the group for 1d" in refused["text"]
    assert await greeted(ctl, group, "in the group for 1d") == [], "refusals stay private"
    visitor = await answer_of(
        ctl, await ctl.press(group, vera, post["message_id"], "lottery:enter:1")
    )
    assert visitor["text"] == "Only members of this group can enter."

    async def counted() -> bool:
        [current] = [m for m in await ctl.sent(group) if m["message_id"] == post["message_id"]]
        return "Entries so far: <b>5</b>" in current["text"]

    await wait_until(counted, 15, what="the post to show 5 entries")
    await ctl.leave(group, people["Carol"])  # Carol leaves before the draw: she is out
    await wait_until(lambda: all_confirmed(ctl), what="Carol's leave")

    # The bot is down at the deadline and comes back after it.
    assert await tidepool.stop() == 0
    await clock.forward(3 * 3600)
    await tidepool.start(ctl)
    await wait_until(lambda: _has(ctl, group, "Lottery #1 is drawn", 1), what="the announcement")
    [announced] = await greeted(ctl, group, "Lottery #1 is drawn")
    [(seed, digest, entrants, status)] = tidepool.rows(
        "SELECT seed, entrants_digest, entrants, status FROM lotteries"
    )
    eligible = sorted(people[name] for name in ("Alice", "Bob", "Erin", "Frank"))
    winners = drawing.draw(seed, eligible, 2)
    assert (status, entrants, digest) == ("drawn", 4, drawing.entrants_digest(eligible))
    assert drawing.commitment(seed) == commitment
    assert seed in announced["text"] and digest in announced["text"]
    assert all(f"tg://user?id={winner}" in announced["text"] for winner in winners)
    assert f"tg://user?id={people['Carol']}" not in announced["text"]
    assert announced["reply_to_message_id"] == post["message_id"]
    assert tidepool.rows("SELECT user_id, out_reason FROM lottery_entries WHERE NOT in_draw") == [
        (people["Carol"], "left the group")
    ]

    async def post_closed() -> bool:
        [current] = [m for m in await ctl.sent(group) if m["message_id"] == post["message_id"]]
        return "Drawn. 5 entered" in current["text"] and not current["reply_markup"]

    await wait_until(post_closed, what="the post to say it is drawn")
    # Anyone can check the draw; an admin rerolls a winner who did not claim.
    await ctl.send_message(group, dave, "/lottery_verify 1")
    await wait_until(lambda: _has(ctl, group, "Lottery #1 checks out", 1), what="the check")
    names = {people[name]: name for name in people}
    await ctl.send_message(
        group, owner, f"/lottery_reroll 1 @{names[winners[0]].lower()} unclaimed"
    )
    await wait_until(lambda: _has(ctl, group, "🔁 Lottery #1", 1), what="the reroll")
    [rerolled] = await greeted(ctl, group, "🔁 Lottery #1")
    newcomer = list(drawing.picks(seed, eligible))[2]
    assert f"tg://user?id={newcomer}" in rerolled["text"] and "(unclaimed)" in rerolled["text"]

    async def announcement_updated() -> bool:
        [current] = [m for m in await ctl.sent(group) if m["message_id"] == announced["message_id"]]
        return f"tg://user?id={newcomer}" in current["text"]

    await wait_until(announcement_updated, what="the announcement to show the new winner")
    await ctl.send_message(group, owner, "/lottery_reroll 1 @dave")
    await wait_until(lambda: _has(ctl, group, "@dave is not a winner", 1), what="a bad reroll")
    await ctl.send_message(group, owner, "/lottery_verify 1")
    await wait_until(lambda: _has(ctl, group, "Lottery #1 checks out", 2), what="the 2nd check")

    # A second restart announces nothing again.
    assert await tidepool.stop() == 0
    await tidepool.start(ctl)
    await ctl.send_message(group, owner, "/lotteries")
    await wait_until(lambda: _has(ctl, group, "No lottery is open", 1), what="the list")
    assert len(await greeted(ctl, group, "Lottery #1 is drawn")) == 1
    assert await tidepool.stop() == 0

    code, out, _ = await tidepool.command("lottery", "verify", "1")
    assert code == 0 and "the draw checks out" in out
    trail = await tidepool.export("lotteries")
    actions = [row["action"] for row in trail]
    assert actions[:6] == ["opened", "entered", "entered", "entered", "entered", "entered"]
    assert actions[6:] == ["out", "drawn", "picked", "picked", "rerolled"]
    drawn = next(row for row in trail if row["action"] == "drawn")
    details = (
        drawn["details"] if isinstance(drawn["details"], dict) else json.loads(drawn["details"])
    )
    assert details["seed"] == seed and details["entrant_ids"] == drawing.entrants_text(eligible)
    entered = tidepool.rows("SELECT count(*) FROM events WHERE type = 'lottery_entered'")
    assert entered == [(5,)]
