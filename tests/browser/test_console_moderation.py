"""The console's moderation page in a real browser, served by the real `tidepool run` process.

Telegram is the emulator: a newcomer's spam is deleted by the first-message checks and the
newcomer restricted; the owner opens the group's Moderation page from its navigation, sees
the deletion with the checks' verdicts and the deleted text, switches the group to a dry run,
and presses "Not spam", which frees the newcomer in Telegram.
"""

from __future__ import annotations

from functools import partial

from playwright.async_api import Browser, expect

from bot.emulator import EmulatorClient
from tests.browser.test_console_pages import Watched, sign_in_link
from tests.e2e.conftest import Tidepool, wait_until
from tests.e2e.test_sop_e2e import setup
from tests.test_moderation import SPAM


async def is_newcomer(tidepool: Tidepool, chat: int, user: int) -> bool:
    """The bot saw the member join: their first messages will be checked."""
    return bool(
        tidepool.rows(
            f"SELECT 1 FROM moderation_members WHERE chat_id = {chat} AND user_id = {user}"
        )
    )


async def in_status(ctl: EmulatorClient, chat: int, user: int, status: str) -> bool:
    return bool((await ctl.member(chat, user))["status"] == status)


async def test_an_owner_decides_on_the_checks_deletion_from_the_moderation_page(
    ctl: EmulatorClient, tidepool: Tidepool, browser: Browser
) -> None:
    tidepool.extra_env.update(QUIET_HOURS="off", DAILY_CAP="0")
    s = await setup(ctl, tidepool)
    group, owner = s["group"], s["owner"]
    nia = (await ctl.create_user("Nia", username="nia"))["id"]
    await ctl.join(group, nia)
    await wait_until(partial(is_newcomer, tidepool, group, nia), 30, "the bot to see Nia join")
    await ctl.send_message(group, nia, SPAM)
    await wait_until(partial(in_status, ctl, group, nia, "restricted"), 30, "Nia restricted")
    [(deleted,)] = tidepool.rows(
        f"SELECT id FROM moderation_actions WHERE action = 'delete' AND user_id = {nia}"
    )

    context = await browser.new_context(viewport={"width": 1300, "height": 900})
    page = await context.new_page()
    page.set_default_timeout(60_000)
    watched = Watched(page)
    await page.goto(await sign_in_link(ctl, owner))
    await page.click("#signin")
    await page.click(f"#groups tr[data-chat='{group}'] a")
    await page.click("#group-pages >> text=Moderation")

    # The deletion and the restriction, with the checks' verdicts and the deleted text.
    await expect(page.locator("#moderation-actions")).to_have_text("2")
    await expect(page.locator("#moderation-rate")).to_have_text("0%")
    row = page.locator(f"#moderation-log tr[data-action='{deleted}']")
    await expect(row).to_have_attribute("data-state", "done")
    await expect(row.locator("[data-testid='deleted-text']")).to_contain_text("加微信")
    await expect(row.locator("[data-check='stop_words']")).to_have_attribute("data-spam", "true")

    # A dry run from the console: the running bot's mode, stored as the owner's change.
    await page.click("[data-testid='mode-dry']")
    await expect(page.locator("#mode")).to_have_attribute("data-mode", "dry")
    assert tidepool.rows(f"SELECT mode FROM moderation_groups WHERE chat_id = {group}") == [
        ("dry",)
    ]

    # "Not spam": Nia may write again, and the page counts a false positive.
    await row.locator("[data-testid='not-spam']").click()
    await expect(row).to_have_attribute("data-state", "undone")
    await expect(page.locator("#moderation-rate")).to_have_text("100%")
    await expect(row.locator("[data-testid='not-spam']")).to_have_count(0)
    await expect(page.locator("#moderation-changes")).to_contain_text("not spam: Nia")
    await wait_until(partial(in_status, ctl, group, nia, "member"), 30, "Nia free again")
    await ctl.send_message(group, nia, "Thanks, I only wanted to share my notes")

    assert watched.errors == []
    await context.close()
