"""The bot for unit tests, assembled by `bot.factory`: real database, manual clock, an outbox that
records what it was asked to send, and a Telegram that never answers."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import shutil
import tempfile
import time
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml
from aiogram import Bot
from aiogram.types import Chat, User
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.clock import ManualClock
from bot.delivery import Delivered
from bot.factory import Tidepool, assemble
from bot.outbox import Before
from bot.push.queue import PushQueue
from bot.settings import Settings
from bot.sop.engine import Engine
from bot.sop.simulate import unreachable_bot

ROOT = Path(__file__).resolve().parent.parent
START = datetime(2026, 11, 2, 1, 0, tzinfo=UTC)  # 09:00 in Shanghai


@dataclass
class Sent:
    chat_id: int
    text: str
    message_id: int
    method: str = "sendMessage"
    markup: Any = None
    reply_to: int | None = None
    at: datetime | None = None


@dataclass
class RecordingOutbox:
    """Answers like the delivery service and remembers everything asked of it."""

    clock: ManualClock
    sent: list[Sent] = field(default_factory=list)
    pinned: list[tuple[int, int]] = field(default_factory=list)
    deleted: list[tuple[int, int]] = field(default_factory=list)
    edited: list[Sent] = field(default_factory=list)
    unpinned: list[tuple[int, int | None]] = field(default_factory=list)
    # (method, chat, user, what): restrictChatMember's permissions, ban/unban's until
    moderated: list[tuple[str, int, int, Any]] = field(default_factory=list)
    unrestrictable: set[int] = field(default_factory=set)  # chats where the bot may not restrict
    refuse: set[int] = field(default_factory=set)  # chats that answer 403
    stall: bool = False  # sends are asked and never answered: the bot dies while sending
    stalled: int = 0
    ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1000))

    def _record(
        self, method: str, chat_id: int, text: str, markup: Any, reply: int | None
    ) -> Delivered:
        if chat_id in self.refuse:
            return Delivered(False, None, chat_id, "Forbidden: bot was kicked", 1)
        message_id = next(self.ids)
        self.sent.append(Sent(chat_id, text, message_id, method, markup, reply, self.clock.now()))
        return Delivered(True, message_id, chat_id, None, 1)

    async def _ready(self, chat_id: int, before: Before | None) -> None:
        """As the delivery service: `before` once it is the message's turn, what it returned
        as Telegram is asked (the stall stands for the time on the wire)."""
        if before is not None and chat_id not in self.refuse:
            asking = await before()
            if asking is not None:
                asking()
        await self._stall()

    async def send_message(
        self,
        chat_id: int,
        text: str,
        *,
        source: str,
        reply_markup: Any = None,
        reply_to_message_id: int | None = None,
        combine: str | None = None,
        before: Before | None = None,
    ) -> Delivered:
        await self._ready(chat_id, before)
        return self._record("sendMessage", chat_id, text, reply_markup, reply_to_message_id)

    async def send_photo(
        self,
        chat_id: int,
        photo: Any,
        *,
        caption: str | None = None,
        source: str,
        reply_markup: Any = None,
        reply_to_message_id: int | None = None,
        before: Before | None = None,
    ) -> Delivered:
        await self._ready(chat_id, before)
        return self._record("sendPhoto", chat_id, caption or "", reply_markup, reply_to_message_id)

    async def edit_text(
        self,
        chat_id: int,
        message_id: int,
        text: str,
        *,
        source: str,
        reply_markup: Any = None,
    ) -> Delivered:
        if chat_id in self.refuse:
            return Delivered(False, None, chat_id, "Forbidden: bot was kicked", 1)
        self.edited.append(Sent(chat_id, text, message_id, "editMessageText", reply_markup))
        return Delivered(True, message_id, chat_id, None, 1)

    async def pin(self, chat_id: int, message_id: int, *, source: str) -> Delivered:
        self.pinned.append((chat_id, message_id))
        return Delivered(True, message_id, chat_id, None, 1)

    async def delete(self, chat_id: int, message_id: int, *, source: str) -> Delivered:
        self.deleted.append((chat_id, message_id))
        return Delivered(True, message_id, chat_id, None, 1)

    async def unpin(self, chat_id: int, message_id: int | None = None, *, source: str) -> Delivered:
        self.unpinned.append((chat_id, message_id))
        return Delivered(True, message_id, chat_id, None, 1)

    def _moderate(self, method: str, chat_id: int, user_id: int, what: Any) -> Delivered:
        if chat_id in self.unrestrictable:
            error = "Bad Request: not enough rights to restrict/unrestrict chat member"
            return Delivered(False, None, chat_id, error, 1)
        self.moderated.append((method, chat_id, user_id, what))
        return Delivered(True, None, chat_id, None, 1)

    async def restrict(
        self,
        chat_id: int,
        user_id: int,
        permissions: Any,
        *,
        source: str,
        until: datetime | None = None,
    ) -> Delivered:
        return self._moderate("restrictChatMember", chat_id, user_id, (permissions, until))

    async def ban(
        self, chat_id: int, user_id: int, *, source: str, until: datetime | None = None
    ) -> Delivered:
        return self._moderate("banChatMember", chat_id, user_id, until)

    async def unban(self, chat_id: int, user_id: int, *, source: str) -> Delivered:
        return self._moderate("unbanChatMember", chat_id, user_id, None)

    async def _stall(self) -> None:
        if self.stall:
            self.stalled += 1
            await asyncio.Event().wait()

    @property
    def closing(self) -> bool:
        return False

    def texts(self, chat_id: int | None = None) -> list[str]:
        return [s.text for s in self.sent if chat_id is None or s.chat_id == chat_id]


def copy_sops(tmp: Path, *names: str, source: Path | None = None) -> Path:
    """A SOPS_DIR holding these files from tests/fixtures/sops/engine (or `source`), each with
    its texts file (`<name>.texts.yaml`) when it has one."""
    folder = tmp / "sops"
    folder.mkdir(exist_ok=True)
    for name in names:
        origin = (source or ROOT / "tests/fixtures/sops/engine") / name
        shutil.copy(origin, folder / name)
        texts = origin.with_name(f"{origin.stem}.texts.yaml")
        if texts.is_file():
            shutil.copy(texts, folder / texts.name)
    return folder


async def nobody_asked(_chat_id: int, _user_id: int) -> str | None:
    """Telegram, asked for a member's status, cannot say (every press is trusted)."""
    return None


OWNER = 900001  # the deployment's owner (OWNER_IDS): owners' notices are private messages


def content_with(tests: Path, folder: Path) -> Path:
    """A CONTENT_DIR in `folder`: the shipped content, with the texts in `tests`'s
    `texts/<lang>.yaml` added to the shipped texts of each language."""
    shutil.copytree(ROOT / "content", folder, dirs_exist_ok=True)
    for language in ("en", "zh"):
        texts = yaml.safe_load((ROOT / "content/texts" / f"{language}.yaml").read_text())
        texts.update(yaml.safe_load((tests / "texts" / f"{language}.yaml").read_text()))
        (folder / "texts" / f"{language}.yaml").write_text(
            yaml.safe_dump(texts, allow_unicode=True)
        )
    return folder


DATA_DIR = Path(tempfile.gettempdir()) / "tidepool-tests"


@contextlib.asynccontextmanager
async def assembled(
    db: AsyncEngine,
    sops_dir: Path,
    *,
    content: Path = ROOT / "content",
    clock: ManualClock | None = None,
    outbox: Any = None,
    bot: tuple[Bot, User] | None = None,
    **settings: Any,
) -> AsyncIterator[tuple[Tidepool, Any, ManualClock]]:
    """The bot assembled by `bot.factory` as `tidepool run` assembles it, on the database `db`
    (migrated, kept by the caller) with the SOPs in `sops_dir` and the CONTENT_DIR `content`,
    in English, Shanghai time, OWNER as its owner, and `settings` (quiet_hours, daily_cap, …).
    Telegram is replaced: sends go to a recording outbox (or `outbox`), and questions to
    Telegram go unanswered (a lottery press is trusted), or to `bot` (a Bot whose session
    answers them, and the bot's own user as getMe gives it). The clock is manual (START unless
    given) and no loop runs: a test starts the engine's timer (`app.engine.start()`) or runs
    what is due itself (`app.pushes.run_due()`). Yields the app, the outbox and the clock."""
    clock = clock or ManualClock(START)
    outbox = outbox if outbox is not None else RecordingOutbox(clock)
    chosen = Settings(
        _env_file=None,
        database_url=db.url.render_as_string(hide_password=False),
        data_dir=DATA_DIR,  # wire notes of a PostgreSQL database: a clean stop clears them
        sops_dir=sops_dir,
        content_dir=content,
        language="en",
        timezone="Asia/Shanghai",
        owner_ids=[OWNER],
        **settings,
    )
    telegram, me = bot or unreachable_bot("tidepool_bot")
    async with assemble(chosen, telegram, clock, me, db=db, outbox=outbox, loops=False) as app:
        yield app, outbox, clock


@contextlib.asynccontextmanager
async def make_engine(
    db: AsyncEngine,
    sops_dir: Path,
    *,
    content: Path | None = None,
    quiet_hours: str = "22:00-08:00",
    outbox: Any = None,
) -> AsyncIterator[tuple[Engine, Any, ManualClock]]:
    """The assembled bot (`assembled`) for SOP tests, its push queue running (SOP messages go
    through it; `queue_of(engine)` is it): yields its engine (whose collaborators are the
    assembled ones: `engine.registry`, `engine.lotteries`, …), the outbox and the clock.
    `content` is a CONTENT_DIR; by default the shipped content plus the engine tests' texts."""
    if content is None:
        tests = ROOT / "tests/fixtures/sops/engine/content"
        content = content_with(tests, sops_dir.parent / "content")
    async with assembled(db, sops_dir, content=content, outbox=outbox, quiet_hours=quiet_hours) as (
        app,
        outbox,
        clock,
    ):
        app.pushes.start()
        QUEUES[app.engine] = app.pushes
        yield app.engine, outbox, clock


Started = tuple[Engine, Any, ManualClock]


@contextlib.asynccontextmanager
async def engines(
    db: AsyncEngine, sops_dir: Path
) -> AsyncIterator[Callable[[], Awaitable[Started]]]:
    """start(): the engine `make_engine` assembles over `sops_dir` (every file loads), its timer
    started; each call assembles the bot again, as a restart does; all stop at the end."""
    async with contextlib.AsyncExitStack() as made:

        async def start() -> Started:
            sop, outbox, clock = await made.enter_async_context(make_engine(db, sops_dir))
            assert not sop.library.broken, [b.summary() for b in sop.library.broken.values()]
            sop.start()
            return sop, outbox, clock

        yield start


# The push queue of each engine `make_engine` made: `settle` waits for it too.
QUEUES: weakref.WeakKeyDictionary[Engine, PushQueue] = weakref.WeakKeyDictionary()


def queue_of(engine: Engine) -> PushQueue:
    return QUEUES[engine]


async def drain(queue: PushQueue) -> None:
    """Send every push due now, and what their sending set off, until nothing is due."""
    while True:
        wait = await queue.run_due()
        await queue.settle()
        await asyncio.sleep(0)
        if wait > 0 and queue.busy == 0:
            return


async def eventually(
    check: Callable[[], Any], seconds: float = 30.0, what: str = "condition"
) -> None:
    """Wait until `check` holds. The deadline only stops a test that would hang: with the
    suite in two processes beside bot processes and browsers, a step can take seconds."""
    deadline = time.monotonic() + seconds
    while True:
        result = check()
        if isinstance(result, Awaitable):
            result = await result
        if result:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


async def settle(engine: Engine, rounds: int = 3) -> None:
    """Let spawned work finish (the engine's tasks, its messages in the push queue, and the
    timer's next look)."""
    queue = QUEUES.get(engine)
    for _ in range(rounds):
        await asyncio.sleep(0.03)
        while engine.tasks or (queue is not None and not queue.idle):
            if engine.tasks:
                await asyncio.wait(engine.tasks, timeout=5)
            if queue is not None:
                await asyncio.sleep(0.01)
                await queue.settle()
        await asyncio.sleep(0.03)


GROUP = Chat(id=-1001, type="supergroup", title="Tea <lovers>")


def user(user_id: int, name: str) -> User:
    return User(id=user_id, is_bot=False, first_name=name)
