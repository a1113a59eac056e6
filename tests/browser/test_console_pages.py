"""The operator console in a real browser, served by the real `tidepool run` process.

Telegram is the emulator; the owner asks the bot for a sign-in link with /console in a private
chat, as an operator would, and follows it in headless Chromium. Every page is opened and must
show no error in the browser's console (a script error, a refused asset, a CSP violation).
"""

from __future__ import annotations

import re
from functools import partial
from typing import Any

from playwright.async_api import Browser, Page, expect

from bot.emulator import EmulatorClient
from tests.e2e.conftest import Tidepool, all_confirmed, wait_until
from tests.e2e.test_sop_e2e import setup

HOSTILE = "<img src=x onerror=alert(1)>"
LINK = re.compile(r"https?://\S+/signin/[A-Za-z0-9_-]+")


class Watched:
    """A page whose console errors and uncaught script errors are collected. An answer with
    one of the `expected` statuses (a refused request the page shows) is no error."""

    def __init__(self, page: Page, expected: tuple[int, ...] = (400,)) -> None:
        self.page = page
        self.errors: list[str] = []
        self.expected = tuple(f"status of {status} " for status in expected)
        page.on("console", self._console)
        page.on("pageerror", lambda error: self.errors.append(f"uncaught: {error}"))
        self.confirming = False  # a confirmation the test expects is accepted, not an error
        self.confirmed: list[str] = []
        page.on("dialog", self._dialog)

    async def _dialog(self, dialog: Any) -> None:
        if self.confirming and dialog.type == "confirm":
            self.confirmed.append(dialog.message)
            await dialog.accept()
        else:
            self.errors.append(f"dialog: {dialog.message}")
            await dialog.dismiss()

    def _console(self, message: Any) -> None:
        if message.type == "error" and not any(code in message.text for code in self.expected):
            self.errors.append(message.text)


async def sign_in_link(ctl: EmulatorClient, person: int) -> str:
    """/console in the person's private chat with the bot, and the link the bot answers."""
    before = len(await ctl.sent(person))
    await ctl.send_message(person, person, "/console")
    found: list[str] = []

    async def answered() -> bool:
        for message in (await ctl.sent(person))[before:]:
            found[:] = LINK.findall(message.get("text") or "")
            if found:
                return True
        return False

    await wait_until(answered, 30, "the sign-in link")
    return found[0]


async def seeded(ctl: EmulatorClient, tidepool: Tidepool) -> dict[str, Any]:
    """Two groups: the owner's (a hostile-named member in it) and one Ann administers."""
    tidepool.extra_env.update(QUIET_HOURS="off", DAILY_CAP="0")
    s = await setup(ctl, tidepool)
    group, owner = s["group"], s["owner"]
    ann = (await ctl.create_user("Ann", username="ann"))["id"]
    await ctl.start(ann)
    other = (await ctl.create_chat(f"Course {HOSTILE}", type="supergroup"))["id"]
    await ctl.set_member(other, ann, "administrator")
    await ctl.set_bot_status(other, "administrator", by=ann)
    odd = (await ctl.create_user(HOSTILE))["id"]
    for person in (ann, odd):
        await ctl.join(group, person)
    await ctl.join(other, odd)
    for n in range(3):
        await ctl.send_message(group, ann, f"hello {n}")
        await ctl.send_message(group, odd, f"hi {n}")
        await ctl.send_message(other, ann, f"welcome {n}")
    await wait_until(lambda: all_confirmed(ctl), 30, "the bot to read everything")
    # A campaign that brought someone.
    await ctl.send_message(group, owner, "/campaign spring")
    await wait_until(partial(has_campaign_link, ctl, group), 30, "the campaign's link")
    newcomer = (await ctl.create_user("Nia"))["id"]
    await ctl.join(group, newcomer, invite_link=await campaign_link(ctl, group))
    await wait_until(partial(referred, tidepool, newcomer), 30, "the newcomer's referral")
    return {"group": group, "other": other, "owner": owner, "ann": ann, "odd": odd}


async def campaign_link(ctl: EmulatorClient, group: int) -> str | None:
    for message in await ctl.sent(group):
        found = re.search(r"Campaign spring: (\S+)", message.get("text") or "")
        if found:
            return found.group(1)
    return None


async def has_campaign_link(ctl: EmulatorClient, group: int) -> bool:
    return await campaign_link(ctl, group) is not None


async def referred(tidepool: Tidepool, user_id: int) -> bool:
    return bool(tidepool.rows(f"SELECT 1 FROM referrals WHERE invitee_id = {user_id}"))


async def test_the_owner_signs_in_from_telegram_and_walks_every_page(
    ctl: EmulatorClient, tidepool: Tidepool, browser: Browser
) -> None:
    s = await seeded(ctl, tidepool)
    context = await browser.new_context(viewport={"width": 1300, "height": 900})
    page = await context.new_page()
    page.set_default_timeout(60_000)
    watched = Watched(page)

    link = await sign_in_link(ctl, s["owner"])
    assert link.startswith(tidepool.console_url)
    await page.goto(link)
    await page.click("#signin")
    rows = page.locator("#groups tbody tr")
    await expect(rows).to_have_count(2)
    await expect(page.locator("#groups")).to_contain_text(f"Course {HOSTILE}")  # as text
    await expect(page.locator("#groups img")).to_have_count(0)

    # The same link does not sign in twice.
    again = await context.new_page()
    await again.goto(link)
    await again.click("#signin")
    await expect(again.locator("#refused")).to_be_visible()
    await again.close()

    # A group's page draws its charts.
    await page.click(f"#groups tr[data-chat='{s['group']}'] a")
    await expect(page.locator("body")).to_have_attribute("data-charts", "drawn")
    await expect(page.locator("#chart-messages canvas")).to_have_count(1)

    # Its invites page, from the group's own navigation.
    await page.click("#group-pages >> text=Invites")
    await expect(page.locator("#invites-k")).to_be_visible()
    spring = page.locator("#campaigns tr[data-campaign='spring']")
    await expect(spring).to_have_attribute("data-status", "active")
    await expect(page.locator("#referrals")).to_contain_text("Nia")
    watched.confirming = True
    await spring.locator("[data-testid='revoke-campaign']").click()
    await expect(spring).to_have_attribute("data-status", "revoked")
    watched.confirming = False
    assert watched.confirmed == [
        "Revoke the link of campaign spring? Nobody can join through it afterwards,"
        " and this cannot be undone."
    ]
    assert tidepool.rows(
        "SELECT revoked_at IS NOT NULL FROM invite_links WHERE name = 'spring'"
    ) == [(1,)]

    # SOPs: the welcome switched off in the owner's group; the running bot obeys.
    await page.click("nav >> text=SOPs")
    await page.select_option("#group-select", str(s["group"]))
    await page.click("#sops-filter button")
    await page.wait_for_url(re.compile(f"group={s['group']}"))
    switch = page.locator(f"[data-testid='switch-welcome-{s['group']}']")
    await expect(switch).to_have_text("Switch off")
    await switch.click()
    await expect(switch).to_have_text("Switch on")
    assert tidepool.rows(
        f"SELECT enabled FROM sop_group_settings WHERE sop_id = 'welcome' AND chat_id = {s['group']}"
    ) == [(0,)]
    await expect(page.locator("#changes")).to_contain_text("welcome")

    # Broadcasts: a text to both groups, previewed as the first group gets it, then sent.
    await page.click("nav >> text=Broadcasts")
    await page.check("input[name=source][value=text]")
    await page.fill("#text", "Tea tasting <b>tonight</b> & a new course")
    await page.check(f"[data-testid='group-{s['group']}']")
    await page.check(f"[data-testid='group-{s['other']}']")
    await page.click("#preview-button")
    await expect(page.locator("#notice")).to_contain_text("write &amp;")  # Telegram would refuse
    await expect(page.locator("#confirm-button")).to_be_disabled()
    await page.fill("#text", "Tea tasting <b>tonight</b> &amp; a new course")
    await page.click("#preview-button")
    await expect(page.locator("#preview b")).to_have_text("tonight")
    await expect(page.locator("#preview")).to_contain_text("Tea tasting tonight & a new course")
    await page.click("#confirm-button")
    await expect(page.locator("#just-sent")).to_be_visible()
    for chat in (s["group"], s["other"]):
        await wait_until(partial(_said, ctl, chat, "Tea tasting"), 30, "the broadcast")
    await page.reload()
    await expect(page.locator("#broadcasts article").first).to_have_attribute("data-done", "true")

    # Members: found by a piece of the name, shown as text; a tag and points from the console.
    await page.click("nav >> text=Members")
    await page.fill("#member-search", "onerror")
    await page.click("[data-testid=members-filter]")
    found = page.locator("#members tbody tr")
    await expect(found).to_have_count(2)  # in both groups
    await expect(page.locator("#members img")).to_have_count(0)
    await page.locator(f"#members tbody tr:has(a[href*='/members/{s['group']}/']) a").first.click()
    await expect(page.locator("#member-name")).to_contain_text(HOSTILE)
    await page.fill("#new-tag", "vip")
    await page.click("[data-testid=add-tag]")
    await expect(page.locator("#member-tags")).to_contain_text("vip")
    await page.fill("#points-delta", "50")
    await page.fill("#points-reason", "helped a newcomer")
    await page.click("[data-testid=adjust-points]")
    await expect(page.locator("#member-points")).to_have_text("50")
    await expect(page.locator("main")).to_contain_text("helped a newcomer")

    for name, table in (("Lotteries", "#lotteries"), ("Orders", "#orders")):
        await page.click(f"nav >> text={name}")
        await expect(page.locator(table)).to_be_visible()

    assert watched.errors == []
    await context.close()


async def test_an_admin_on_a_phone_sees_only_their_group_in_chinese(
    ctl: EmulatorClient, tidepool: Tidepool, browser: Browser
) -> None:
    s = await seeded(ctl, tidepool)
    # Nobody's link: a stranger is told why not; in a group the bot points to the private chat.
    stranger = (await ctl.create_user("Sam"))["id"]
    await ctl.start(stranger)
    await ctl.send_message(stranger, stranger, "/console")
    await ctl.send_message(s["group"], s["ann"], "/console")
    await wait_until(
        lambda: _said(ctl, stranger, "owners and the admins"), 30, "the stranger's refusal"
    )
    await wait_until(lambda: _said(ctl, s["group"], "private chat"), 30, "the group's pointer")
    assert not LINK.search(str(await ctl.sent(s["group"])))

    context = await browser.new_context(
        viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True
    )
    page = await context.new_page()
    page.set_default_timeout(60_000)
    watched = Watched(page, expected=(401, 403))
    await page.goto(f"{await sign_in_link(ctl, s['ann'])}?lang=zh")
    await page.click("#signin")
    await expect(page.locator("#groups tbody tr")).to_have_count(1)
    await expect(page.locator("#groups")).to_contain_text(f"Course {HOSTILE}")
    await expect(page.locator("nav")).to_contain_text("群组")
    width = await page.evaluate("document.documentElement.scrollWidth")
    assert width <= 390, f"the page is {width}px wide on a 390px screen"

    refused = await page.goto(f"{tidepool.console_url}/groups/{s['group']}")
    assert refused is not None and refused.status == 403
    api = await page.request.get(f"{tidepool.console_url}/api/groups/{s['group']}/stats")
    assert api.status == 403

    await page.goto(tidepool.console_url)
    await page.click("text=退出登录")
    await expect(page.locator("h1")).to_have_text("登录控制台")
    assert (await page.request.get(f"{tidepool.console_url}/api/groups")).status == 401
    assert watched.errors == []
    await context.close()


async def _said(ctl: EmulatorClient, chat: int, needle: str) -> bool:
    return any(needle in (m.get("text") or "") for m in await ctl.sent(chat))
