"""End to end, with the real bot process and the emulator (which refuses a restricted member's
messages, as Telegram does): a newcomer's spam is deleted and its sender restricted; the owner's
"Not spam" frees them and lets the same text through next time; in dry mode nothing changes."""

from __future__ import annotations

from typing import Any

import pytest

from bot.emulator import EmulatorClient, EmulatorError
from tests.e2e.conftest import Tidepool, all_confirmed, wait_until
from tests.e2e.test_sop_e2e import setup, sops_without

SPAM = "💰💰 兼职日结,加微信 abc123 领取福利,刷单返利 https://spam.example/x 💰💰💰💰"
QUIET = ("weekly_lottery", "daily_tip", "reengage_dormant", "silent_reactivation")


async def private(ctl: EmulatorClient, user_id: int, needle: str) -> list[dict[str, Any]]:
    return [m for m in await ctl.sent(user_id) if needle in (m.get("text") or "")]


async def status(ctl: EmulatorClient, chat: int, user: int) -> str:
    return str((await ctl.member(chat, user))["status"])


async def present(ctl: EmulatorClient, chat: int, message_id: int) -> bool:
    return any(m["message_id"] == message_id for m in await ctl.messages(chat))


def verdicts(tidepool: Tidepool, user: int) -> list[tuple[Any, ...]]:
    return tidepool.rows(
        f"SELECT message_id, spam FROM moderation_verdicts WHERE user_id = {user} ORDER BY id"
    )


def button(message: dict[str, Any], index: int) -> str:
    return str(message["reply_markup"]["inline_keyboard"][0][index]["callback_data"])


async def test_spam_is_deleted_and_not_spam_frees_and_teaches(
    ctl: EmulatorClient, tidepool: Tidepool
) -> None:
    s = await setup(ctl, tidepool, sops_without(tidepool.folder, *QUIET))
    group, owner = s["group"], s["owner"]
    nina = (await ctl.create_user("Nina"))["id"]
    await ctl.join(group, nina)
    await wait_until(lambda: all_confirmed(ctl), what="Nina's join")

    said = await ctl.send_message(group, nina, SPAM)
    spam_id = said["message"]["message_id"]

    async def held() -> bool:
        gone = not await present(ctl, group, spam_id)
        return gone and await status(ctl, group, nina) == "restricted"

    await wait_until(held, what="the spam deleted and Nina restricted")
    with pytest.raises(EmulatorError) as refused:
        await ctl.send_message(group, nina, "why can't I write?")
    assert refused.value.status == 403

    await wait_until(lambda: _any(private(ctl, owner, "deleted a message")), what="the report")
    (report,) = await private(ctl, owner, "deleted a message")
    assert "加微信" in report["text"]
    await ctl.press(owner, owner, report["message_id"], button(report, 0))  # Not spam
    await wait_until(
        lambda: _is(status(ctl, group, nina), "member"), what="Nina free to write again"
    )

    again = await ctl.send_message(group, nina, SPAM)  # approved: no longer checked

    async def logged() -> bool:
        rows = tidepool.rows(f"SELECT count(*) FROM events WHERE user_id = {nina}")
        return bool(rows[0][0] >= 3)  # joined, the spam, this one

    await wait_until(logged, what="Nina's message logged")
    assert await present(ctl, group, again["message"]["message_id"])
    assert [row[0] for row in verdicts(tidepool, nina)] == [spam_id]  # not checked again

    pia = (await ctl.create_user("Pia"))["id"]  # the same text from another newcomer passes
    await ctl.join(group, pia)
    await wait_until(lambda: all_confirmed(ctl), what="Pia's join")
    hers = await ctl.send_message(group, pia, SPAM)

    async def judged() -> bool:
        return len(verdicts(tidepool, pia)) == 1

    await wait_until(judged, what="Pia's message judged")
    assert verdicts(tidepool, pia)[0][1] in (False, 0)
    assert await present(ctl, group, hers["message"]["message_id"])
    assert await status(ctl, group, pia) == "member"
    undone = tidepool.rows("SELECT count(*) FROM moderation_actions WHERE undone_at IS NOT NULL")
    assert undone[0][0] == 2  # the deletion and the restriction: both counted as false positives


async def test_dry_mode_changes_nothing(ctl: EmulatorClient, tidepool: Tidepool) -> None:
    s = await setup(ctl, tidepool, sops_without(tidepool.folder, *QUIET))
    group, owner = s["group"], s["owner"]
    await ctl.send_message(group, owner, "/moderation dry")
    await wait_until(
        lambda: _any(_in_group(ctl, group, "dry mode")), what="the mode switched to dry"
    )
    omar = (await ctl.create_user("Omar"))["id"]
    await ctl.join(group, omar)
    await wait_until(lambda: all_confirmed(ctl), what="Omar's join")
    said = await ctl.send_message(group, omar, SPAM)

    async def judged() -> bool:
        return len(verdicts(tidepool, omar)) == 1

    await wait_until(judged, what="the spam judged")
    assert verdicts(tidepool, omar)[0][1] in (True, 1)
    assert await present(ctl, group, said["message"]["message_id"])
    assert await status(ctl, group, omar) == "member"
    dry = tidepool.rows("SELECT action, dry FROM moderation_actions ORDER BY id")
    assert [(action, bool(flag)) for action, flag in dry] == [("delete", True), ("restrict", True)]
    assert not await private(ctl, owner, "deleted a message")
    await ctl.send_message(group, omar, "still here")  # not restricted: Telegram takes it


async def _any(found: Any) -> bool:
    return bool(await found)


async def _is(found: Any, expected: str) -> bool:
    return bool(await found == expected)


async def _in_group(ctl: EmulatorClient, chat: int, needle: str) -> list[dict[str, Any]]:
    return [m for m in await ctl.sent(chat) if needle in (m.get("text") or "")]
