"""End to end, with the real bot process and the emulator: the join check (switched on with
/sop_on join_check) restricts a joiner, ignores another member's press, frees the joiner on their
own press and only then welcomes them; a joiner who never presses is kicked after 5 minutes on
the test clock and may join again; without the right to restrict nobody is checked or kicked and
the admins are told once; a flood is muted."""

from __future__ import annotations

from functools import partial
from typing import Any

import pytest

from bot.emulator import EmulatorClient, EmulatorError
from tests.e2e.conftest import Tidepool, all_confirmed, wait_until
from tests.e2e.test_sop_e2e import greetings, named, setup, sops_without

QUIET = ("weekly_lottery", "daily_tip", "reengage_dormant", "silent_reactivation")
PROMPT = "tap the button below within 5 minutes"


async def in_group(ctl: EmulatorClient, chat: int, needle: str) -> list[dict[str, Any]]:
    return [m for m in await ctl.sent(chat) if needle in (m.get("text") or "")]


async def status(ctl: EmulatorClient, chat: int, user: int) -> str:
    return str((await ctl.member(chat, user))["status"])


async def live(ctl: EmulatorClient, chat: int, message_id: int) -> bool:
    return any(m["message_id"] == message_id for m in await ctl.messages(chat))


async def prompt_for(ctl: EmulatorClient, chat: int, user: int) -> dict[str, Any] | None:
    found = [m for m in await in_group(ctl, chat, PROMPT) if f"id={user}" in m["text"]]
    return found[-1] if found else None


async def held(ctl: EmulatorClient, chat: int, user: int) -> bool:
    """Restricted, with a prompt of their own in the group."""
    restricted = await status(ctl, chat, user) == "restricted"
    return restricted and await prompt_for(ctl, chat, user) is not None


async def welcomed(ctl: EmulatorClient, chat: int, user: int) -> bool:
    return any(user in named(message) for message in await greetings(ctl, chat))


async def switched_on(ctl: EmulatorClient, group: int, owner: int) -> None:
    await ctl.send_message(group, owner, "/sop_on join_check")

    async def on() -> bool:
        return bool(await in_group(ctl, group, "join_check</code> is now on"))

    await wait_until(on, what="the join check switched on")


async def test_the_joiner_alone_frees_themselves_and_is_welcomed_after(
    ctl: EmulatorClient, tidepool: Tidepool
) -> None:
    s = await setup(ctl, tidepool, sops_without(tidepool.folder, *QUIET))
    group, owner, clock = s["group"], s["owner"], s["clock"]
    olaf = (await ctl.create_user("Olaf"))["id"]
    await ctl.join(group, olaf)  # before the check: welcomed as always
    await wait_until(lambda: welcomed(ctl, group, olaf), what="Olaf welcomed")
    await switched_on(ctl, group, owner)

    nina = (await ctl.create_user("Nina"))["id"]
    await ctl.join(group, nina)
    await wait_until(lambda: held(ctl, group, nina), what="Nina restricted with her prompt")
    with pytest.raises(EmulatorError):
        await ctl.send_message(group, nina, "hello?")  # Telegram refuses a restricted member
    prompt = await prompt_for(ctl, group, nina)
    assert prompt is not None
    data = prompt["reply_markup"]["inline_keyboard"][0][0]["callback_data"]

    pressed = await ctl.press(group, olaf, prompt["message_id"], data)  # not his button

    async def answered() -> bool:
        return await ctl.callback_answer(pressed["callback_query_id"]) is not None

    await wait_until(answered, what="Olaf's press answered")
    answer = await ctl.callback_answer(pressed["callback_query_id"])
    assert answer is not None and answer["show_alert"] and "not for you" in answer["text"]
    assert await status(ctl, group, nina) == "restricted"
    assert await status(ctl, group, olaf) == "member"

    await ctl.press(group, nina, prompt["message_id"], data)
    await wait_until(lambda: _is(status(ctl, group, nina), "member"), what="Nina freed")

    async def welcome_planned() -> bool:
        rows = tidepool.rows(
            f"SELECT count(*) FROM sop_runs WHERE sop_id = 'welcome' AND user_id = {nina}"
        )
        return bool(rows[0][0])

    await wait_until(welcome_planned, what="Nina's welcome started once the check ended")
    await clock.forward(61)  # greetings a minute apart at most: Olaf's window closes
    await wait_until(lambda: welcomed(ctl, group, nina), what="Nina welcomed after her press")

    async def prompt_gone() -> bool:
        return not await live(ctl, group, prompt["message_id"])

    await wait_until(prompt_gone, what="the prompt deleted")
    calls = [(c["method"], c["params"]) for c in await ctl.calls() if c["ok"]]
    lifted = max(
        i
        for i, (m, p) in enumerate(calls)
        if m == "restrictChatMember" and int(p["user_id"]) == nina
    )
    greeted = min(
        i
        for i, (m, p) in enumerate(calls)
        if m == "sendMessage"
        and f"id={nina}" in str(p.get("text"))
        and str(p.get("text")).startswith("Welcome to ")
    )
    assert lifted < greeted, "the welcome waited for the join check"
    await ctl.send_message(group, nina, "thanks, happy to be here")  # she may write now

    # Pia never presses: reminded after 3 minutes, kicked (not banned) after 5.
    pia = (await ctl.create_user("Pia"))["id"]
    await ctl.join(group, pia)
    await wait_until(lambda: held(ctl, group, pia), what="Pia restricted with her prompt")
    first = await prompt_for(ctl, group, pia)
    assert first is not None
    # The clock moves once her run waits: a wait begun after the move would end later.
    await wait_until(lambda: waits_at(tidepool, pia, "2"), what="Pia's check waiting")
    await clock.forward(181)

    async def reminded() -> bool:
        return any(f"id={pia}" in m["text"] for m in await in_group(ctl, group, "one more step"))

    await wait_until(reminded, what="Pia reminded")
    await wait_until(lambda: waits_at(tidepool, pia, "4"), what="Pia's check waiting again")
    await clock.forward(121)
    await wait_until(lambda: _is(status(ctl, group, pia), "left"), what="Pia kicked")

    async def first_prompt_gone() -> bool:
        return not await live(ctl, group, first["message_id"])

    await wait_until(first_prompt_gone, what="Pia's prompt deleted")
    assert not await welcomed(ctl, group, pia)
    await ctl.join(group, pia)  # kicked, not banned: she may come back, and is checked again
    await wait_until(all_confirmed_of(ctl), what="Pia's second join")

    async def held_again() -> bool:
        again = await prompt_for(ctl, group, pia)
        return again is not None and again["message_id"] != first["message_id"]

    await wait_until(held_again, what="a new prompt for Pia")
    kicks = tidepool.rows("SELECT count(*) FROM moderation_actions WHERE action = 'kick'")
    assert kicks[0][0] == 1


async def test_without_the_right_to_restrict_nobody_is_kicked_and_admins_hear_once(
    ctl: EmulatorClient, tidepool: Tidepool
) -> None:
    s = await setup(ctl, tidepool, sops_without(tidepool.folder, *QUIET))
    group, owner, clock = s["group"], s["owner"], s["clock"]
    await ctl.set_bot_status(group, "administrator", rights={"can_restrict_members": False})
    await switched_on(ctl, group, owner)
    people = [(await ctl.create_user(name))["id"] for name in ("Ann", "Ben")]
    for person in people:
        await ctl.join(group, person)
    for person in people:
        await wait_until(partial(welcomed, ctl, group, person), what="the welcome goes on")
    await clock.forward(6 * 60)
    await wait_until(all_confirmed_of(ctl), what="every update handled")
    for person in people:
        assert await status(ctl, group, person) == "member"
        assert await prompt_for(ctl, group, person) is None
    told = [m for m in await ctl.sent(owner) if "may not restrict" in (m.get("text") or "")]
    assert len(told) == 1
    kicked = tidepool.rows("SELECT count(*) FROM moderation_actions WHERE action = 'kick'")
    assert kicked[0][0] == 0


async def test_a_flood_is_muted(ctl: EmulatorClient, tidepool: Tidepool) -> None:
    s = await setup(ctl, tidepool, sops_without(tidepool.folder, *QUIET))
    group = s["group"]
    max_ = (await ctl.create_user("Max"))["id"]
    await ctl.join(group, max_)
    await wait_until(all_confirmed_of(ctl), what="Max's join")
    for n in range(8):
        await ctl.send_message(group, max_, f"look at this, number {n + 1}")
    await wait_until(lambda: _is(status(ctl, group, max_), "restricted"), what="Max muted")
    member = await ctl.member(group, max_)
    assert member["until_date"] and member["permissions"]["can_send_messages"] is False
    with pytest.raises(EmulatorError):
        await ctl.send_message(group, max_, "and one more")

    async def noted() -> bool:
        return bool(await in_group(ctl, group, "is sending a lot at once"))

    await wait_until(noted, what="the note in the group")
    mutes = tidepool.rows('SELECT action, "check" FROM moderation_actions')
    assert ("mute", "flood") in [tuple(row) for row in mutes]


async def waits_at(tidepool: Tidepool, user: int, position: str) -> bool:
    """The member's join check waits at the step at `position` (2: for the press, 4: after
    the reminder)."""
    rows = tidepool.rows(
        "SELECT count(*) FROM sop_runs WHERE sop_id = 'join_check' AND status = 'waiting'"
        f" AND user_id = {user} AND position = '{position}' AND wake_at IS NOT NULL"
    )
    return bool(rows[0][0])


def all_confirmed_of(ctl: EmulatorClient) -> Any:
    return lambda: all_confirmed(ctl)


async def _is(found: Any, expected: str) -> bool:
    return bool(await found == expected)
