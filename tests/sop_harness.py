"""A running SOP engine for unit tests: real database, fake clock, an outbox that records."""

from __future__ import annotations

import asyncio
import itertools
import shutil
import time
import weakref
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from aiogram.types import Chat, User

from bot.activity import ActivityLog
from bot.clock import ManualClock
from bot.db import PushKind
from bot.delivery import Delivered
from bot.lottery.service import Lotteries
from bot.push.lives import LIVE_KINDS, Lives
from bot.push.queue import PushQueue
from bot.push.rows import Courier, Doorbell
from bot.registry import Registry
from bot.sop.engine import Engine
from bot.sop.library import Library
from bot.texts import Texts

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

    async def send_message(
        self,
        chat_id: int,
        text: str,
        *,
        source: str,
        reply_markup: Any = None,
        reply_to_message_id: int | None = None,
        combine: str | None = None,
        before: Callable[[], Awaitable[None]] | None = None,
    ) -> Delivered:
        if before is not None and chat_id not in self.refuse:
            await before()
        await self._stall()
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
        before: Callable[[], Awaitable[None]] | None = None,
    ) -> Delivered:
        if before is not None and chat_id not in self.refuse:
            await before()
        await self._stall()
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
    """A SOPS_DIR holding these files from tests/fixtures/sops/engine (or `source`)."""
    folder = tmp / "sops"
    folder.mkdir(exist_ok=True)
    for name in names:
        shutil.copy((source or ROOT / "tests/fixtures/sops/engine") / name, folder / name)
    return folder


async def nobody_asked(_chat_id: int, _user_id: int) -> str | None:
    """Telegram, asked for a member's status, cannot say (every press is trusted)."""
    return None


@dataclass
class Notices:
    """The owners' notices, recorded: (text key, values)."""

    told: list[tuple[str, dict[str, Any]]] = field(default_factory=list)

    async def __call__(self, key: str, **values: Any) -> None:
        self.told.append((key, values))


def push_queue(
    db: Any,
    registry: Registry,
    outbox: Any,
    clock: ManualClock,
    *,
    notify: Notices | None = None,
    **options: Any,
) -> PushQueue:
    """The push queue with its lives, wired as `bot.factory` wires them (loop not started)."""
    doorbell = Doorbell()
    texts = Texts.load(ROOT / "content", "en")
    zone = ZoneInfo("Asia/Shanghai")
    lives = Lives(
        db, registry, registry.activity, outbox, texts, doorbell, clock, default_zone=zone
    )
    return PushQueue(
        db,
        registry,
        outbox,
        clock,
        couriers={
            PushKind.TEXT: Courier(outbox, ROOT / "content"),
            **dict.fromkeys(LIVE_KINDS, lives.courier),
        },
        doorbell=doorbell,
        notify=notify or Notices(),
        default_zone=zone,
        **options,
    )


# The push queue of each engine `make_engine` made: `settle` waits for it too.
QUEUES: weakref.WeakKeyDictionary[Engine, PushQueue] = weakref.WeakKeyDictionary()


async def make_engine(
    db: Any,
    registry: Registry,
    activity: ActivityLog,
    sops_dir: Path,
    *,
    content: Path | None = None,
    quiet_hours: str = "22:00-08:00",
    ask_member: Callable[[int, int], Awaitable[str | None]] = nobody_asked,
) -> tuple[Engine, RecordingOutbox, ManualClock]:
    """The SOP engine with its real collaborators (lotteries, lives, the push queue) wired as
    `bot.factory` wires them, over a recording outbox and a manual clock. The push queue runs
    (SOP messages go through it); `queue_of(engine)` is it."""
    clock = ManualClock(START)
    outbox = RecordingOutbox(clock)
    content = content or ROOT / "tests/fixtures/sops/engine/content"
    texts = Texts.load(ROOT / "content", "en")  # the features' own texts
    zone = ZoneInfo("Asia/Shanghai")
    notify = Notices()
    doorbell = Doorbell()
    lotteries = Lotteries(
        db,
        registry,
        activity,
        outbox,
        texts,
        clock,
        bus=registry.bus,
        pushes=doorbell,
        ask_member=ask_member,
        default_timezone=zone,
    )
    lives = Lives(db, registry, activity, outbox, texts, doorbell, clock, default_zone=zone)
    engine = Engine(
        db,
        Library(sops_dir, content),
        registry,
        activity,
        outbox,
        clock,
        bus=registry.bus,
        lotteries=lotteries,
        lives=lives,
        pushes=doorbell,
        deletions=Doorbell(),
        notify=notify,
        default_timezone=zone,
        default_language="en",
    )
    pushes = PushQueue(
        db,
        registry,
        outbox,
        clock,
        couriers={
            PushKind.TEXT: Courier(outbox, content),
            PushKind.SOP: engine.courier,
            PushKind.LOTTERY_POST: lotteries.courier,
            PushKind.LOTTERY_ANNOUNCE: lotteries.courier,
            **dict.fromkeys(LIVE_KINDS, lives.courier),
        },
        doorbell=doorbell,
        notify=notify,
        default_zone=zone,
        quiet_hours=quiet_hours,
    )
    await engine.open()
    await pushes.recover()
    pushes.start()
    QUEUES[engine] = pushes
    return engine, outbox, clock


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
    check: Callable[[], Any], seconds: float = 5.0, what: str = "condition"
) -> None:
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
