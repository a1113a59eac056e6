"""The sandbox: the emulator, the real `tidepool run` process against it, and the page in front.

`tidepool sandbox` (and `make run` without a token) runs three things:

- the Telegram Bot API emulator, in this process, with the demo group on first start;
- the bot, as the unchanged `tidepool run` in a process of its own, with its own database
  (`sandbox.db` in DATA_DIR, never the production one) and the shipped SOPs and content;
- the page (`bot.sandbox._web`), which reads the emulator's chats and the bot's database and acts
  as the operator's people.

Everything the sandbox keeps is in DATA_DIR: the emulator's world (`sandbox.world.json`, written
at every stop and a few seconds after changes), the clock shift and the journal of what happened.
The next start carries on from there; `--reset` starts afresh.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import json
import os
import shutil
import signal
import socket
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from loguru import logger
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.db import create_engine
from bot.emulator import EmulatorServer
from bot.sandbox._demo import seed
from bot.sandbox._journal import Journal
from bot.sandbox._mind import Mind
from bot.sandbox._operator import Operator
from bot.sandbox._time import SandboxClock, TimeMachine
from bot.settings import Settings

TOKEN = "777000:SANDBOX-token"  # the emulator's bot; nothing in the sandbox reaches Telegram
BOT_USERNAME = "tidepool_sandbox_bot"
START_SECONDS = 120.0  # the bot's start-up (imports, migrations) on a busy machine, at most
STOP_SECONDS = 70.0  # the bot's own stop has deadlines under a minute in all
SAVE_EVERY = 3.0  # seconds between saves of the world while it changes


class SandboxError(Exception):
    """The sandbox cannot start or went wrong; the message says what to do."""


@dataclass(frozen=True)
class SandboxFiles:
    """Where a sandbox keeps its state (all in one folder)."""

    folder: Path

    @property
    def database(self) -> Path:
        return self.folder / "sandbox.db"

    @property
    def schedules(self) -> Path:
        return self.folder / "sandbox.schedules.db"

    @property
    def world(self) -> Path:
        return self.folder / "sandbox.world.json"

    @property
    def clock(self) -> Path:
        return self.folder / "sandbox.clock"

    @property
    def meta(self) -> Path:
        return self.folder / "sandbox.json"

    @property
    def journal(self) -> Path:
        return self.folder / "sandbox.journal.jsonl"

    @property
    def log(self) -> Path:
        return self.folder / "sandbox-bot.log"

    @property
    def transcripts(self) -> Path:
        return self.folder / "transcripts"

    def all(self) -> Iterator[Path]:
        """Every file of the sandbox (the database with its WAL and the wire notes too)."""
        for pattern in ("sandbox.*", "sandbox-bot.log"):
            yield from self.folder.glob(pattern)

    def reset(self) -> None:
        for path in self.all():
            path.unlink(missing_ok=True)


@dataclass(frozen=True)
class Meta:
    """What the sandbox remembers of itself: the demo group, its owner, its language."""

    chat_id: int
    owner_id: int
    language: str


class BotProcess:
    """`tidepool run` in a process of its own, pointed at the emulator and the sandbox's files."""

    def __init__(
        self, settings: Settings, files: SandboxFiles, api_base: str, owner: int, console: str
    ) -> None:
        self.settings = settings
        self.files = files
        self.api_base = api_base
        self.owner = owner
        self.console = console  # CONSOLE_LISTEN of the bot: the console, as in production
        self.process: asyncio.subprocess.Process | None = None

    def env(self) -> dict[str, str]:
        env = {
            key: value
            for key, value in os.environ.items()
            if not key.startswith(
                ("BOT_", "TELEGRAM_", "DATABASE_", "CLOCK_", "DATA_DIR", "CONSOLE_")
            )
        }
        owners = {self.owner, *self.settings.owner_ids}
        env.update(
            BOT_TOKEN=TOKEN,
            TELEGRAM_API_BASE=self.api_base,
            DATABASE_URL=f"sqlite+aiosqlite:///{self.files.database.resolve()}",
            DATA_DIR=str(self.files.folder.resolve()),
            CLOCK_FILE=str(self.files.clock.resolve()),
            SOPS_DIR=str(self.settings.sops_dir.resolve()),
            CONTENT_DIR=str(self.settings.content_dir.resolve()),
            OWNER_IDS=",".join(str(owner) for owner in sorted(owners)),
            CONSOLE_LISTEN=self.console,
            LANGUAGE=self.settings.language,
            TIMEZONE=self.settings.timezone,
            PYTHONUNBUFFERED="1",
        )
        return env

    async def start(self) -> None:
        with self.files.log.open("ab") as log:
            self.process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "bot",
                "run",
                env=self.env(),
                stdout=log,
                stderr=log,
                stdin=asyncio.subprocess.DEVNULL,
                start_new_session=True,  # Ctrl-C reaches the sandbox, which stops the bot
                preexec_fn=_die_with_parent,
            )

    @property
    def exited(self) -> int | None:
        return None if self.process is None else self.process.returncode

    async def wait(self) -> int:
        assert self.process is not None
        return await self.process.wait()

    async def stop(self) -> int | None:
        """SIGTERM, as a service manager would; SIGKILL if the stop overruns its deadlines."""
        process = self.process
        if process is None or process.returncode is not None:
            return None if process is None else process.returncode
        process.send_signal(signal.SIGTERM)
        try:
            return await asyncio.wait_for(process.wait(), STOP_SECONDS)
        except TimeoutError:
            logger.error("sandbox: the bot did not stop within {:.0f}s; killing it", STOP_SECONDS)
            process.kill()
            return await process.wait()

    def log_tail(self, lines: int = 20) -> str:
        try:
            text = self.files.log.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])


def free_port() -> int:
    """A port nothing listens on now (for the bot's console)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _die_with_parent() -> None:
    """In the bot's process before exec: SIGTERM it if the sandbox dies (Linux)."""
    with contextlib.suppress(Exception):
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


class Sandbox:
    """The emulator, the bot process and what the page needs, started and stopped together."""

    def __init__(
        self,
        settings: Settings,
        folder: Path,
        *,
        reset: bool = False,
        start_at: datetime | None = None,
    ) -> None:
        self.settings = settings
        self.files = SandboxFiles(folder)
        self.reset = reset
        self.start_at = start_at  # a fresh sandbox's time (a replay starts where its recording did)
        self.server = EmulatorServer(token=TOKEN, bot_username=BOT_USERNAME)
        self.world = self.server.emulator.world
        self.engine: AsyncEngine | None = None
        self.meta: Meta | None = None
        self.bot: BotProcess | None = None
        self.console_url = ""  # the bot's console, on a free port of its own
        self.clock = SandboxClock(self.files.clock, self._move_emulator)
        self.journal = Journal(self.files.journal)
        self._mind: Mind | None = None
        self._time: TimeMachine | None = None
        self._operator: Operator | None = None
        self._saver: asyncio.Task[None] | None = None

    @property
    def mind(self) -> Mind:
        assert self._mind is not None, "the sandbox is not started"
        return self._mind

    @property
    def time(self) -> TimeMachine:
        assert self._time is not None, "the sandbox is not started"
        return self._time

    @property
    def operator(self) -> Operator:
        assert self._operator is not None, "the sandbox is not started"
        return self._operator

    async def start(self) -> None:
        """Restore or create the world, start the emulator and the bot, wait until it polls."""
        self._prepare_folder()
        fresh = self._restore()
        if fresh:
            start = self.start_at or datetime.now(UTC)
            self.clock.set_shift((start - datetime.now(UTC)).total_seconds())
        await self.server.start()
        self.world.clock.real()
        self.world.clock.advance(self.clock.shift)
        if fresh:
            demo = await seed(self.server.client, self.settings.language)
            self.meta = Meta(demo.chat_id, demo.owner_id, self.settings.language)
            self.files.meta.write_text(json.dumps(self.meta.__dict__) + "\n")
            self.journal.clear()
            began = self.clock.now().astimezone(self.settings.tz)
            self.journal.add({"do": "begin", "at": began.isoformat(timespec="seconds"), "calls": 0})
            self.save()
        self.engine = create_engine(f"sqlite+aiosqlite:///{self.files.database.resolve()}")
        self._mind = Mind(self.engine, self.files.schedules)
        self._time = TimeMachine(
            self.clock,
            self._mind,
            pending_updates=lambda: len(self.world.pending()),
            version=lambda: self.world.version,
        )
        self._operator = Operator(
            self.world, self.server.client, self.journal, self.clock, self._time, self.settings.tz
        )
        assert self.meta is not None
        self.console_url = f"http://127.0.0.1:{free_port()}"
        self.bot = BotProcess(
            self.settings,
            self.files,
            self.server.base_url,
            self.meta.owner_id,
            self.console_url.removeprefix("http://"),
        )
        await self.bot.start()
        await self._until_polling()
        self._saver = asyncio.create_task(self._save_changes())

    async def stop(self) -> None:
        """Stop the bot (as on SIGTERM), save the world, close everything."""
        code = await self.bot.stop() if self.bot is not None else None
        if code not in (None, 0):
            logger.warning("sandbox: the bot exited with code {}", code)
        if self._saver is not None:
            self._saver.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._saver
        if self.meta is not None:
            self.save()
        await self.server.stop()
        if self.engine is not None:
            await self.engine.dispose()

    def save(self) -> None:
        """Write the emulator's world (whole, then renamed: a stop mid-write keeps the last)."""
        self._write_world(self.world.snapshot())

    def _write_world(self, data: bytes) -> None:
        scratch = self.files.world.with_suffix(".tmp")
        scratch.write_bytes(data)
        os.replace(scratch, self.files.world)

    def _prepare_folder(self) -> None:
        try:
            self.files.folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise SandboxError(f"cannot create the folder {self.files.folder}: {exc}") from None
        if self.reset:
            self.files.reset()
            shutil.rmtree(self.files.folder / "sandbox.schedules", ignore_errors=True)

    def _restore(self) -> bool:
        """Load the saved world and meta; True when the sandbox starts afresh."""
        if not self.files.world.exists() or not self.files.meta.exists():
            if self.files.database.exists():  # a half-made sandbox: start it clean
                self.files.reset()
            return True
        try:
            self.world.restore(self.files.world.read_bytes())
            self.meta = Meta(**json.loads(self.files.meta.read_text()))
            self.journal.load()
        except (OSError, ValueError, TypeError) as exc:
            raise SandboxError(
                f"the saved sandbox in {self.files.folder} cannot be read ({exc}); "
                "start afresh with: tidepool sandbox --reset"
            ) from None
        return False

    async def _move_emulator(self, seconds: float) -> None:
        self.world.clock.advance(seconds)
        self.world.notify()

    async def _until_polling(self) -> None:
        assert self.bot is not None
        before = sum(1 for call in self.world.calls if call.method == "getUpdates")
        deadline = asyncio.get_running_loop().time() + START_SECONDS
        while True:
            if self.bot.exited is not None:
                raise SandboxError(
                    f"the bot exited on start (code {self.bot.exited}); its log "
                    f"({self.files.log}) ends with:\n{self.bot.log_tail()}"
                )
            if sum(1 for call in self.world.calls if call.method == "getUpdates") > before:
                return
            if asyncio.get_running_loop().time() > deadline:
                raise SandboxError(f"the bot did not start within {START_SECONDS:.0f}s")
            await asyncio.sleep(0.1)

    async def _save_changes(self) -> None:
        saved = self.world.version
        while True:
            version = await self.world.changed(saved, timeout=3600)
            if version == saved:
                continue
            await asyncio.sleep(SAVE_EVERY)  # changes come in bursts: one save per burst
            saved = self.world.version
            try:
                await asyncio.to_thread(self._write_world, self.world.snapshot())
            except OSError as exc:
                logger.error("sandbox: cannot save the emulator's world: {}", exc)
