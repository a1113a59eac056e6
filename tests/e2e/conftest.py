"""End-to-end harness: the Telegram emulator in the test, the real `tidepool` process beside it."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import sqlite3
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from bot.emulator import EmulatorClient, EmulatorServer

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "123456:TEST-token"
BOT_ID = 123456
STARTUP_SECONDS = 90.0


async def wait_until(
    check: Callable[[], Awaitable[bool]], seconds: float = 15.0, what: str = "condition"
) -> None:
    """Poll `check` until it holds; fail with `what` after `seconds`."""
    deadline = time.monotonic() + seconds
    while True:
        if await check():
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class Tidepool:
    """Runs `tidepool` commands against one database and one emulator."""

    base_url: str
    folder: Path
    extra_env: dict[str, str] = field(default_factory=dict)
    process: asyncio.subprocess.Process | None = None
    runs: int = 0
    console_port: int = field(default_factory=lambda: free_port())

    @property
    def console_url(self) -> str:
        return f"http://127.0.0.1:{self.console_port}"

    @property
    def database_url(self) -> str:
        return f"sqlite+aiosqlite:///{self.folder / 'tidepool.db'}"

    @property
    def log(self) -> Path:
        return self.folder / f"bot-{self.runs}.log"

    def env(self, **overrides: str) -> dict[str, str]:
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("BOT_", "TELEGRAM_", "CONSOLE_"))
        }
        env.update(
            BOT_TOKEN=TOKEN,
            TELEGRAM_API_BASE=self.base_url,
            DATABASE_URL=self.database_url,
            CONTENT_DIR=str(ROOT / "content"),
            SOPS_DIR=str(ROOT / "sops"),
            TIMEZONE="Asia/Shanghai",
            # The tests run at any hour of the real day and move the clock by days: a scheduled
            # message (a nudge a day after a join) would otherwise wait out the night's quiet
            # hours when the suite runs in the evening. Quiet hours have unit tests of their own.
            QUIET_HOURS="off",
            LOG_LEVEL="DEBUG",
            PYTHONUNBUFFERED="1",
            # Each bot serves its console on a port of its own (tests may run side by side).
            CONSOLE_LISTEN=f"127.0.0.1:{self.console_port}",
        )
        env.update(self.extra_env)
        env.update(overrides)
        return env

    async def start(self, ctl: EmulatorClient) -> None:
        """Start `tidepool run` and wait until it polls for updates."""
        assert self.process is None, "already running"
        self.runs += 1
        before = len(await ctl.calls(method="getUpdates"))
        with self.log.open("wb") as log:
            self.process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "bot",
                "run",
                cwd=self.folder,
                env=self.env(),
                stdout=log,
                stderr=log,
            )

        async def polling() -> bool:
            if self.process is not None and self.process.returncode is not None:
                raise AssertionError(f"the bot exited early:\n{self.log.read_text()}")
            return len(await ctl.calls(method="getUpdates")) > before

        # Start-up (imports, migrations) takes 2-3 s alone and over 20 s on a busy 2-core machine;
        # an early exit still fails at once.
        await wait_until(polling, STARTUP_SECONDS, "the bot to poll")

    async def stop(self, sig: int = signal.SIGTERM) -> int:
        """Send `sig` and wait for the process to exit; return its exit code."""
        assert self.process is not None
        self.process.send_signal(sig)
        try:
            code = await asyncio.wait_for(self.process.wait(), 30)
        finally:
            self.process = None
        return code

    def rows(self, query: str) -> list[tuple[Any, ...]]:
        """The rows of a query on the bot's SQLite database."""
        with sqlite3.connect(self.folder / "tidepool.db") as db:
            return [tuple(row) for row in db.execute(query)]

    def alive(self) -> bool:
        return self.process is not None and self.process.returncode is None

    def logs(self) -> str:
        return "\n".join(
            (self.folder / f"bot-{n}.log").read_text(errors="replace")
            for n in range(1, self.runs + 1)
        )

    async def command(self, *args: str, **env: str) -> tuple[int, str, str]:
        """Run `tidepool ARGS`; return (exit code, stdout, stderr)."""
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "bot",
            *args,
            cwd=self.folder,
            env=self.env(**env),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await process.communicate()
        assert process.returncode is not None
        return process.returncode, out.decode(), err.decode()

    async def messages(self) -> list[tuple[int, int]]:
        """(chat id, message id) of every stored message event, in the order stored."""
        events = await self.export("events")
        return [(e["chat_id"], e["message_id"]) for e in events if e["type"] == "message"]

    async def export(self, table: str, *args: str) -> list[dict[str, Any]]:
        """Rows of `tidepool export TABLE --format jsonl ARGS`."""
        code, out, err = await self.command("export", table, "--format", "jsonl", *args)
        assert code == 0, err
        return [json.loads(line) for line in out.splitlines()]


@pytest.fixture
async def emulator() -> AsyncIterator[EmulatorServer]:
    async with EmulatorServer(token=TOKEN) as server:
        yield server


@pytest.fixture
def ctl(emulator: EmulatorServer) -> EmulatorClient:
    return emulator.client


@pytest.fixture
async def tidepool(emulator: EmulatorServer, tmp_path: Path) -> AsyncIterator[Tidepool]:
    app = Tidepool(emulator.base_url, tmp_path)
    yield app
    if app.process is not None and app.process.returncode is None:
        app.process.kill()
        await app.process.wait()


async def all_confirmed(ctl: EmulatorClient) -> bool:
    """Every update the emulator produced was fetched and confirmed by the bot."""
    stats = await ctl.stats()
    return bool(stats["pending"] == 0 and stats["delivered"] == stats["confirmed"])


async def answer_to(
    ctl: EmulatorClient, chat: int, said: dict[str, Any], seconds: float = 15.0
) -> dict[str, Any]:
    """The bot's first message in `chat` replying to the message `said` (what
    `ctl.send_message` returned), once it came."""
    message_id = said["message"]["message_id"]
    found: list[dict[str, Any]] = []

    async def answered() -> bool:
        found[:] = [m for m in await ctl.sent(chat) if m["reply_to_message_id"] == message_id]
        return bool(found)

    await wait_until(answered, seconds, what=f"the bot's answer to message {message_id}")
    return found[0]


SENDING_METHODS = ("sendMessage", "sendPhoto")


async def deliveries_recorded(tidepool: Tidepool, ctl: EmulatorClient, chat: int) -> bool:
    """Every message the emulator accepted from the bot in `chat` is in the bot's `deliveries`
    records (written once a delivery is over): its delivery there has nothing in hand. Only
    meaningful once something was sent (wait for that first), and without injected faults."""
    accepted = 0
    for method in SENDING_METHODS:
        accepted += sum(1 for call in await ctl.calls(method=method, chat_id=chat) if call["ok"])
    methods = ", ".join(f"'{method}'" for method in SENDING_METHODS)
    recorded = tidepool.rows(
        f"SELECT count(*) FROM deliveries WHERE chat_id = {chat} AND status = 'sent'"
        f" AND method IN ({methods})"
    )
    return bool(accepted and recorded[0][0] >= accepted)
