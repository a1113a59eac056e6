"""The sandbox page in a real browser, against the real `tidepool sandbox` process."""

from __future__ import annotations

import asyncio
import re
import sys
from pathlib import Path

from playwright.async_api import Page, expect

from tests.browser.conftest import ROOT, SandboxProcess

RULES = "three simple rules"  # content/texts/en.yaml welcome.rules
NUDGE = "how are you settling in?"  # welcome.nudge


def bot_messages(page: Page, text: str):
    return page.locator("#transcript li.message.bot", has_text=text)


async def join(page: Page, name: str) -> None:
    await page.fill("#newname", name)
    await page.click("#newperson button")
    await expect(page.locator("#transcript li.service", has_text=f"{name} joined")).to_be_visible()


async def test_a_member_joins_is_greeted_and_reads_the_rules(
    page: Page, sandbox: SandboxProcess
) -> None:
    await page.goto(sandbox.url)
    await expect(page.locator("#chat-title")).to_have_text("Tidepool demo group")
    await expect(page.locator("#people")).to_contain_text("Mei Li")

    await join(page, "Zoe")
    greeting = bot_messages(page, "Welcome to Tidepool demo group").filter(has_text="Zoe")
    await expect(greeting).to_be_visible()
    await expect(page.locator("#runs")).to_contain_text("welcome")

    await greeting.get_by_role("button", name="Group rules").click()
    rules = bot_messages(page, RULES)
    await expect(rules).to_be_visible()
    await expect(rules.locator("b")).to_contain_text(RULES)  # Telegram's HTML, rendered

    # The console of the sandbox's bot, signed in as its owner with one press.
    async with page.context.expect_page() as opened:
        await page.click("#open-console")
    console = await opened.value
    await expect(console.locator("#groups")).to_contain_text("Tidepool demo group")
    await expect(console.locator(".me")).to_contain_text("owner")


async def test_a_day_later_the_silent_newcomer_is_nudged(
    page: Page, sandbox: SandboxProcess
) -> None:
    await page.goto(sandbox.url)
    await join(page, "Yan")
    await expect(bot_messages(page, "Welcome to Tidepool demo group")).to_have_count(1)
    await expect(bot_messages(page, NUDGE)).to_have_count(0)

    await page.click("[data-move='1d']")
    await expect(bot_messages(page, NUDGE).filter(has_text="Yan")).to_be_visible()
    await expect(page.locator("#runs")).to_contain_text("done")


async def test_writing_a_command_and_moving_to_the_next_due_step(
    page: Page, sandbox: SandboxProcess
) -> None:
    await page.goto(sandbox.url)
    await page.locator("#people input[type=radio]").nth(2).check()  # Lin, a member
    await page.fill("#text", "/checkin")
    await page.click("#send")
    await expect(page.locator("#transcript li.message.mine", has_text="/checkin")).to_be_visible()
    await expect(page.locator("[data-testid=points]")).not_to_have_text("0")

    ann = page.locator("#people li.person", has_text="Ann")
    await ann.get_by_role("button", name="Make admin").click()
    await expect(ann.locator(".role")).to_have_text("admin")

    before = await page.locator("#now").text_content()
    due = page.locator("[data-move='next']")
    await expect(due).to_be_enabled()
    await due.click()
    await expect(page.locator("#now")).not_to_have_text(before or "")


async def test_chinese_labels_and_a_phone_sized_screen(
    page: Page, sandbox_zh: SandboxProcess
) -> None:
    await page.set_viewport_size({"width": 390, "height": 844})
    await page.goto(sandbox_zh.url)
    await expect(page.locator("#chat-title")).to_have_text("Tidepool 演示群")
    await expect(page.locator("#send")).to_have_text("发送")
    composer = await page.locator("#composer").bounding_box()
    assert composer is not None and composer["x"] >= 0 and composer["width"] <= 390
    await page.click("#lang")
    await expect(page.locator("#send")).to_have_text("Send")


async def test_history_survives_a_restart_and_ctrl_c_leaves_nothing_behind(
    page: Page, sandbox: SandboxProcess
) -> None:
    await page.goto(sandbox.url)
    await join(page, "Uma")
    await expect(bot_messages(page, "Welcome to Tidepool demo group")).to_be_visible()

    assert await sandbox.stop() == 0
    assert sandbox.processes() == []
    await sandbox.start()
    await page.goto(sandbox.url)
    await expect(
        bot_messages(page, "Welcome to Tidepool demo group").filter(has_text="Uma")
    ).to_be_visible()

    assert await sandbox.stop() == 0
    await sandbox.start("--reset")
    await page.goto(sandbox.url)
    await expect(page.locator("#people")).not_to_contain_text("Uma")


async def test_a_saved_transcript_replays(page: Page, sandbox: SandboxProcess) -> None:
    await page.goto(sandbox.url)
    await join(page, "Ivy")
    greeting = bot_messages(page, "Welcome to Tidepool demo group").filter(has_text="Ivy")
    await greeting.get_by_role("button", name="Group rules").click()
    await expect(bot_messages(page, RULES)).to_be_visible()

    async with page.expect_download() as download:
        await page.click("#save-transcript")
    saved = Path(await (await download.value).path())
    text = await asyncio.to_thread(saved.read_text)
    assert "join: Tidepool demo group" in text and "press: Group rules" in text
    await expect(page.locator("#notice")).to_contain_text("transcripts")

    code, output = await replay(saved, sandbox)
    assert code == 0, output
    assert re.search(r"\d+ steps, the bot answered the same", output)


async def replay(path: Path, sandbox: SandboxProcess) -> tuple[int, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bot",
        "replay",
        str(path),
        cwd=ROOT,
        env={**sandbox.env(), "DATA_DIR": str(sandbox.folder / "replay")},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await process.communicate()
    assert process.returncode is not None
    return process.returncode, out.decode()
