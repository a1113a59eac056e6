"""Browser tests: the real `tidepool sandbox` process, driven through its page in Debian's Chromium.

Playwright for Python launches the system's `chromium` (never a browser of its own); a test that
fails leaves a screenshot of the page in `test-artifacts/`.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import signal
import socket
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Browser, Page, async_playwright, expect

# The end-to-end harness's fixtures (the emulator, `tidepool run`) serve the console's tests.
from tests.e2e.conftest import ctl, emulator, tidepool  # noqa: F401

# An expectation waits for what the page shows; on a busy machine the bot takes seconds to act.
expect.set_options(timeout=30_000)
ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts"
START_SECONDS = 120.0
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def chromium() -> str:
    found = (
        os.environ.get("CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    )
    if found is None:
        pytest.fail("the browser tests need Debian's chromium: .ci/chromium installs it")
    return found


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class SandboxProcess:
    """A running `tidepool sandbox` and where it keeps its files."""

    folder: Path
    port: int
    language: str
    process: asyncio.subprocess.Process | None = None
    output: list[str] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    def env(self) -> dict[str, str]:
        env = {
            key: value
            for key, value in os.environ.items()
            if not key.startswith(("BOT_", "TELEGRAM_", "DATABASE_", "CLOCK_"))
        }
        env.update(
            DATA_DIR=str(self.folder),
            SANDBOX_PORT=str(self.port),
            LANGUAGE=self.language,
            TIMEZONE="Asia/Shanghai",
            # The sandbox starts at the real time of day: without quiet hours, a nudge a day
            # after a join goes at once whatever the hour the suite runs at.
            QUIET_HOURS="off",
            SOPS_DIR=str(ROOT / "sops"),
            CONTENT_DIR=str(ROOT / "content"),
            LOG_LEVEL="DEBUG",
            PYTHONUNBUFFERED="1",
        )
        return env

    async def start(self, *args: str) -> None:
        """Start it and wait for the line with the page's address (the bot polls by then)."""
        self.output = []
        self.process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "bot",
            "sandbox",
            *args,
            cwd=self.folder,
            env=self.env(),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        assert self.process.stdout is not None

        async def address() -> None:
            assert self.process is not None and self.process.stdout is not None
            while True:
                line = (await self.process.stdout.readline()).decode()
                if not line:
                    raise AssertionError("the sandbox exited:\n" + "".join(self.output or []))
                self.output.append(line)  # type: ignore[union-attr]
                if self.url in line:
                    return

        await asyncio.wait_for(address(), START_SECONDS)

    async def stop(self, sig: int = signal.SIGINT) -> int:
        """Ctrl-C (SIGINT), and wait for it to exit; its exit code."""
        assert self.process is not None
        self.process.send_signal(sig)
        assert self.process.stdout is not None
        rest = await asyncio.wait_for(self.process.stdout.read(), 120)
        self.output.append(rest.decode())  # type: ignore[union-attr]
        code = await self.process.wait()
        self.process = None
        return code

    def processes(self) -> list[int]:
        """Processes still running with this sandbox's files (the bot has its clock file)."""
        marker = f"CLOCK_FILE={self.folder / 'sandbox.clock'}".encode()
        found = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                if marker in (entry / "environ").read_bytes():
                    found.append(int(entry.name))
            except OSError:
                continue
        return found

    def bot_log(self) -> str:
        try:
            return (self.folder / "sandbox-bot.log").read_text(errors="replace")
        except OSError:
            return ""


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[Any]) -> Any:
    report = yield
    setattr(item, f"report_{report.when}", report)
    return report


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(executable_path=chromium(), args=CHROMIUM_ARGS)
        yield launched
        await launched.close()


async def _sandbox(tmp_path: Path, language: str) -> AsyncIterator[SandboxProcess]:
    sandbox = SandboxProcess(tmp_path, free_port(), language)
    await sandbox.start()
    yield sandbox
    if sandbox.process is not None and sandbox.process.returncode is None:
        await sandbox.stop()


@pytest.fixture
async def sandbox(tmp_path: Path) -> AsyncIterator[SandboxProcess]:
    """A fresh sandbox in English (the labels and the bot's texts)."""
    async for running in _sandbox(tmp_path, "en"):
        yield running


@pytest.fixture
async def sandbox_zh(tmp_path: Path) -> AsyncIterator[SandboxProcess]:
    """A fresh sandbox in Chinese, the default language."""
    async for running in _sandbox(tmp_path, "zh"):
        yield running


@pytest.fixture
async def page(browser: Browser, request: pytest.FixtureRequest) -> AsyncIterator[Page]:
    context = await browser.new_context(viewport={"width": 1400, "height": 900})
    opened = await context.new_page()
    opened.set_default_timeout(60_000)
    yield opened
    report = getattr(request.node, "report_call", None)
    if report is not None and report.failed:
        ARTIFACTS.mkdir(exist_ok=True)
        name = re.sub(r"[^A-Za-z0-9_.-]", "_", request.node.nodeid)
        shot = ARTIFACTS / f"{name}.png"
        await opened.screenshot(path=str(shot), full_page=True)
        sys.stderr.write(f"\nscreenshot of the failing page: {shot}\n")
    await context.close()
