"""End to end: a week of activity gives the expected /stats numbers and a chart; a month later
the members have become dormant (the shipped re-engagement SOP greets them once) and the
silent group raises its health alert once; /tiers and /forgetme work in the chat."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

from bot.emulator import EmulatorClient
from tests.e2e.conftest import Tidepool, all_confirmed, wait_until
from tests.e2e.test_rewards_e2e import answer_of
from tests.e2e.test_sop_e2e import _has, greeted, setup

DAY = 86400


async def test_stats_tiers_and_the_health_alert_from_a_simulated_month(
    ctl: EmulatorClient, tidepool: Tidepool
) -> None:
    # The calendar SOPs (the daily tip, the silent digest) fire on the moved clock too: with no
    # daily cap, the re-engagement after the month is not held over to the next day by them.
    tidepool.extra_env.update(QUIET_HOURS="off", DAILY_CAP="0")
    s = await setup(ctl, tidepool)
    group, owner, clock = s["group"], s["owner"], s["clock"]
    # The daily analytics work after 05:00 on the group's clock: live at 10:00 in Shanghai (the
    # harness's zone), whatever the machine's time of day.
    local_hour = ((await ctl.now()) // 3600 + 8) % 24
    await clock.forward(((10 - local_hour) % 24) * 3600)
    people = {}
    for name in ("Ann", "Ben", "Cai", "Dan"):
        people[name] = (await ctl.create_user(name, username=name.lower()))["id"]
        await ctl.join(group, people[name])
    await wait_until(lambda: all_confirmed(ctl), what="the joins")

    # A week: Ann, Ben and Cai write three messages a day; Dan only on the first day.
    for day in range(7):
        for name in ("Ann", "Ben", "Cai"):
            for n in range(3):
                await ctl.send_message(group, people[name], f"day {day} note {n}")
        if day == 0:
            await ctl.send_message(group, people["Dan"], "hello all")
        await wait_until(lambda: all_confirmed(ctl), what="the day's messages")
        if day < 6:
            await clock.forward(DAY)

    await ctl.send_message(group, people["Ann"], "/stats 7d")
    await wait_until(lambda: _has(ctl, group, "Only the group's admins", 1), what="a refusal")
    await ctl.send_message(group, owner, "/stats 7d")
    await wait_until(lambda: _has(ctl, group, "📊", 1), what="the summary")
    [summary] = await greeted(ctl, group, "📊")
    text = summary["text"]
    assert "(7 days)" in text
    # 3 × 3 × 7, Dan's one, and the two /stats commands (commands count as messages)
    assert "Messages: 66;" in text
    assert "active members: 5 (100% of members)" in text  # Olga wrote a command
    assert "Members: 0 → 5 (+4 joined" in text

    async def charted() -> list[dict[str, Any]]:
        return [m for m in await ctl.sent(group) if m["kind"] == "photo"]

    await wait_until(lambda: _truthy(charted()), what="the chart")
    [call] = await ctl.calls(method="sendPhoto")
    assert call["ok"] and call["params"]["photo"]["size"] > 10_000
    await ctl.send_message(group, owner, "/stats @dan")
    await wait_until(lambda: _has(ctl, group, "👤", 1), what="Dan's figures")
    [dan] = await greeted(ctl, group, "👤")
    assert "Messages: 1 on 1 day" in dan["text"]

    # A month of silence: everyone becomes dormant, the SOP greets them, the owner is alerted.
    await clock.forward(31 * DAY)

    async def mentioned() -> list[int]:
        greetings = await greeted(ctl, group, "we miss you")
        return [p for g in greetings for p in people.values() if f"tg://user?id={p}" in g["text"]]

    async def everyone_greeted() -> bool:
        return len(await mentioned()) >= len(people)

    await wait_until(everyone_greeted, 30, what="the re-engagement of all four")
    # Once each; the texts combine (the first goes at once, the others queued behind it share
    # the next message), so four dormant members are at most two messages.
    assert sorted(await mentioned()) == sorted(people.values())
    assert len(await greeted(ctl, group, "we miss you")) <= 2
    await wait_until(lambda: _has(ctl, owner, "has had no message for", 1), what="the alert")
    dormant = tidepool.rows("SELECT count(*) FROM tier_changes WHERE new = 'dormant'")
    assert dormant[0][0] >= 4
    [(checked,)] = tidepool.rows("SELECT day FROM group_checks")
    await clock.forward(2 * DAY)
    later = (date.fromisoformat(checked) + timedelta(days=2)).isoformat()
    await wait_until(lambda: _checked(tidepool, later), 30, what="two more days of analytics")
    assert len(await greeted(ctl, owner, "has had no message for")) == 1
    again = await mentioned()
    assert len(again) == len(set(again)) == len(people), "each member re-engaged once, no repeat"

    await ctl.send_message(group, owner, "/tiers")
    await wait_until(lambda: _has(ctl, group, "Member tiers", 1), what="the tiers")
    [listed] = await greeted(ctl, group, "Member tiers")
    assert "dormant: 5" in listed["text"]  # Olga, silent since her /stats, too

    # Dan asks to be forgotten: his names go, the group's counts stay.
    await ctl.send_message(group, people["Dan"], "/forgetme")
    await wait_until(lambda: _has(ctl, group, "This deletes your data", 1), what="the question")
    [question] = await greeted(ctl, group, "This deletes your data")
    yes = question["reply_markup"]["inline_keyboard"][0][0]["callback_data"]
    refused = await answer_of(
        ctl, await ctl.press(group, people["Ann"], question["message_id"], yes)
    )
    assert "Only the member who asked" in refused["text"]
    await ctl.press(group, people["Dan"], question["message_id"], yes)

    async def forgotten() -> bool:
        found = tidepool.rows(f"SELECT count(*) FROM members WHERE user_id = {people['Dan']}")
        return bool(found[0][0] == 0)

    await wait_until(forgotten, what="Dan's data to go")
    assert tidepool.rows("SELECT count(*) FROM members WHERE first_name = 'Dan'") == [(0,)]
    assert tidepool.rows(f"SELECT count(*) FROM events WHERE user_id = {people['Dan']}") == [(0,)]


async def _truthy(value: Any) -> bool:
    return bool(await value)


async def _checked(tidepool: Tidepool, day: str) -> bool:
    return tidepool.rows("SELECT day FROM group_checks") == [(day,)]
