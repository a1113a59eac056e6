"""The one outbound path: everything the bot sends, paced to Telegram's limits and recorded.

Telegram allows about 30 messages a second in total, one a second in a chat and 20 a minute in
a group; beyond that it answers 429 with `retry_after`. `Delivery` keeps one queue per chat and
starts the next message of whichever chat may send now, in turns, so a busy group never holds
up the others:

- a global token bucket refills at `per_second` (bursts of at most `BURST` messages);
- a chat (private ones too) sends one message at a time, in the order asked, and waits
  `1 / per_chat_second` after the previous one came back; Telegram counted that one before
  answering, so latency can only add margin;
- a group (negative id) also keeps a 60 s window of `per_group_minute` sends, again counted
  when Telegram answered.

Sends, photos and edits are paced: Telegram answers rapid edits with 429 as well, and the
emulator counts `send*` and `edit*` calls alike. Deletions, pins and unpins are not: the
published limits are about messages. They still wait their turn in the chat's queue, so a pin
never overtakes the message it pins, and they honour a chat's 429 pause.

Callers await a `Delivered`; nothing here raises for Telegram's errors. A 429 pauses the chat
(everything, when several chats get one at once) and the request is tried again, at most
`MAX_ATTEMPTS` times in all; a 403 marks a group kicked and fails what was queued for it; a
migration moves the group's queue to the new id; network errors and 5xx are retried with
backoff (a message whose answer was lost may then arrive twice: Telegram has no idempotency
key). Every delivery is recorded in the `deliveries` table, in batches, once it is over.

Texts sent with a `combine` key may share a message. When one of them is due to go, every
other text still queued in its chat with the same key, parse mode, notification setting and
buttons goes with it, even from further back in the queue: one message with their texts on
separate lines, in the order asked, up to Telegram's `TEXT_LIMIT` (the rest wait for the next
message). So 10,000 check-in replies in a group do not need 10,000 of its 20 a minute. This
happens only under backlog: a text that may go at once goes alone, as asked, and nothing waits
on purpose to gather more. A combined message is not a reply to anyone; it is sent, retried
and recorded as one request, and every caller gets the same `Delivered`, with `combined`
saying how many requests it answered; each request still has its own record.
"""

from __future__ import annotations

import asyncio
import contextlib
import html
import math
import re
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from aiogram import Bot
from aiogram.exceptions import (
    TelegramAPIError,
    TelegramForbiddenError,
    TelegramMigrateToChat,
    TelegramNetworkError,
    TelegramRetryAfter,
    TelegramServerError,
)
from aiogram.types import (
    Chat,
    InlineKeyboardMarkup,
    InputFile,
    Message,
    ReplyMarkupUnion,
    ReplyParameters,
)
from loguru import logger
from sqlalchemy import insert
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.db import DELIVERIES, DeliveryStatus, GroupStatus, utcnow, writing
from bot.registry import Registry

MAX_ATTEMPTS = 5
GROUP_WINDOW = 60.0  # seconds over which `per_group_minute` counts
BURST = 1.5  # global tokens: absorbs a late wake-up, never more than per_second + 1 in a second
# Telegram's 429 does not say which limit was hit. Our own pacing keeps every chat within its
# limits, so 429s in this many different chats this close together mean the bot as a whole
# is over (another process on the same token, or a stricter limit): then everything waits.
FLOOD_CHATS = 2
FLOOD_SPAN = 1.0
BACKOFF = 1.0  # first wait after a network error or 5xx; doubles, up to BACKOFF_MAX
BACKOFF_MAX = 10.0
# The scheduler re-reads the clock at least this often while messages wait, so an injected
# clock that runs faster than real time (in tests) works too.
TICK = 0.05
SWEEP_EVERY = 60.0  # seconds between forgetting chats that have nothing queued or pending
TEXT_LIMIT = 4096  # Telegram's limit of a message's text, counted after parsing its markup
_TAG = re.compile(r"<[^>]*>")
_ENTITY = re.compile(r"&(?:lt|gt|amp|quot|#[0-9]+|#x[0-9a-f]+);", re.IGNORECASE)  # as Telegram's
GONE = frozenset({GroupStatus.KICKED, GroupStatus.LEFT})

Request = Callable[[int], Awaitable[object]]


@dataclass(frozen=True, slots=True)
class Delivered:
    """How a delivery ended: `chat_id` is where it went (the new id after a migration).

    `combined` is how many requests the message answered: more than one when texts sent with
    the same `combine` key went out together (see the module's docstring).
    """

    ok: bool
    message_id: int | None
    chat_id: int
    error: str | None = None
    attempts: int = 0
    combined: int = 1


@dataclass(frozen=True, slots=True)
class _Text:
    """A text sent with a `combine` key: what it says and what must match to share a message."""

    combine: str
    text: str
    parse_mode: str | None
    disable_notification: bool
    reply_markup: ReplyMarkupUnion | None

    def alike(self, other: _Text) -> bool:
        return (
            self.combine == other.combine
            and self.parse_mode == other.parse_mode
            and self.disable_notification == other.disable_notification
            and self.reply_markup == other.reply_markup
        )


@dataclass(eq=False, slots=True)
class _Job:
    """One request waiting in a chat's queue; `request(chat_id)` makes the API call."""

    method: str
    requested_chat_id: int
    chat_id: int  # where it goes now: differs after a migration
    source: str
    request: Request
    paced: bool
    future: asyncio.Future[Delivered]
    queued_at: datetime
    message_id: int | None = None
    attempts: int = 0
    text: _Text | None = None  # set when it may be combined with texts alike
    parts: list[_Job] = field(default_factory=list)  # the requests a combined message answers

    @property
    def answers(self) -> list[_Job]:
        """The requests this call answers: its parts when combined, else itself."""
        return self.parts or [self]

    @property
    def given_up(self) -> bool:
        """Every caller stopped waiting: the call can be dropped."""
        return all(job.future.done() for job in self.answers)


@dataclass(eq=False, slots=True)
class _Lane:
    """A chat's queue and the timing of what was sent there (clock seconds)."""

    chat_id: int
    jobs: deque[_Job] = field(default_factory=deque)
    busy: bool = False
    queued: bool = False  # in the scheduler's ring: idle, with jobs
    paused_until: float = -math.inf
    next_send_at: float = -math.inf
    window: deque[float] | None = None  # answer times of recent sends, groups only

    def settled(self, now: float) -> bool:
        """Nothing queued or sent recently: the lane can be forgotten."""
        last = self.window[-1] + GROUP_WINDOW if self.window else -math.inf
        return (
            not self.jobs
            and not self.busy
            and now >= max(self.paused_until, self.next_send_at, last)
        )


class Delivery:
    """Sends messages for the whole bot within Telegram's limits, fairly across chats.

    Call `start()` once the event loop runs and `close()` before stopping; `close` waits for
    queued messages up to a timeout and records what could not be sent.
    """

    def __init__(
        self,
        bot: Bot,
        registry: Registry,
        engine: AsyncEngine,
        *,
        per_second: float = 28,
        per_group_minute: int = 20,
        per_chat_second: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
        record_interval: float = 0.5,
        max_buffered: int = 100_000,
    ) -> None:
        self.bot = bot
        self.registry = registry
        self.engine = engine
        self.per_second = per_second
        self.per_group_minute = per_group_minute
        self.chat_gap = 1.0 / per_chat_second
        self.clock = clock
        self.record_interval = record_interval
        self.max_buffered = max_buffered
        self.sent = 0
        self.failed = 0
        self.recorded = 0
        self._lanes: dict[int, _Lane] = {}
        self._ring: deque[_Lane] = deque()  # idle lanes with jobs, in turn order
        self._moved: dict[int, int] = {}  # groups that became supergroups: old id -> new id
        self._tokens = BURST
        self._refilled = clock()
        self._paused_until = -math.inf  # everything, after a global flood
        self._floods: deque[tuple[float, int]] = deque()
        self._swept = clock()
        self._in_flight: dict[asyncio.Task[None], _Job] = {}
        self._records: list[dict[str, Any]] = []
        self._record_lock = asyncio.Lock()
        self._wake = asyncio.Event()
        self._scheduler: asyncio.Task[None] | None = None
        self._writer: asyncio.Task[None] | None = None
        self._closing = False
        self._closed = False

    # -- what callers use ---------------------------------------------------------------------

    async def send_message(
        self,
        chat_id: int,
        text: str,
        *,
        source: str,
        reply_markup: ReplyMarkupUnion | None = None,
        reply_to_message_id: int | None = None,
        disable_notification: bool = False,
        parse_mode: str | None = "HTML",
        combine: str | None = None,
        before: Callable[[], Awaitable[None]] | None = None,
    ) -> Delivered:
        """Send a text message; a reply whose original is gone is sent as a plain message.

        With `combine`, the text may go out in one message with other texts of the same key
        that are queued at the same time; that message is not a reply. `before` is awaited
        each time just before Telegram is asked (the push queue notes that a message may now
        arrive); a text with `before` is never combined.
        """
        reply = _reply_to(reply_to_message_id)

        async def request(target: int) -> Message:
            if before is not None:
                await before()
            return await self.bot.send_message(
                target,
                text,
                parse_mode=parse_mode,
                reply_markup=reply_markup,
                reply_parameters=reply,
                disable_notification=disable_notification,
            )

        combinable = None
        if combine is not None and before is None:
            combinable = _Text(combine, text, parse_mode, disable_notification, reply_markup)
        return await self._deliver(
            "sendMessage", chat_id, source, request, paced=True, text=combinable
        )

    async def send_photo(
        self,
        chat_id: int,
        photo: str | InputFile,
        *,
        caption: str | None = None,
        source: str,
        reply_markup: ReplyMarkupUnion | None = None,
        reply_to_message_id: int | None = None,
        disable_notification: bool = False,
        parse_mode: str | None = "HTML",
    ) -> Delivered:
        """Send a photo (a file id, a URL or an `InputFile`) with an optional caption."""
        reply = _reply_to(reply_to_message_id)

        async def request(target: int) -> Message:
            return await self.bot.send_photo(
                target,
                photo,
                caption=caption,
                parse_mode=parse_mode,
                reply_markup=reply_markup,
                reply_parameters=reply,
                disable_notification=disable_notification,
            )

        return await self._deliver("sendPhoto", chat_id, source, request, paced=True)

    async def edit_text(
        self,
        chat_id: int,
        message_id: int,
        text: str,
        *,
        source: str,
        reply_markup: InlineKeyboardMarkup | None = None,
        parse_mode: str | None = "HTML",
    ) -> Delivered:
        """Replace the text (and buttons) of a message the bot sent."""

        async def request(target: int) -> Message | bool:
            return await self.bot.edit_message_text(
                text=text,
                chat_id=target,
                message_id=message_id,
                parse_mode=parse_mode,
                reply_markup=reply_markup,
            )

        return await self._deliver(
            "editMessageText", chat_id, source, request, paced=True, message_id=message_id
        )

    async def delete(self, chat_id: int, message_id: int, *, source: str) -> Delivered:
        """Delete a message."""

        async def request(target: int) -> bool:
            return await self.bot.delete_message(target, message_id)

        return await self._deliver(
            "deleteMessage", chat_id, source, request, paced=False, message_id=message_id
        )

    async def pin(
        self, chat_id: int, message_id: int, *, source: str, disable_notification: bool = True
    ) -> Delivered:
        """Pin a message, silently unless asked otherwise."""

        async def request(target: int) -> bool:
            return await self.bot.pin_chat_message(
                target, message_id, disable_notification=disable_notification
            )

        return await self._deliver(
            "pinChatMessage", chat_id, source, request, paced=False, message_id=message_id
        )

    async def unpin(self, chat_id: int, message_id: int | None = None, *, source: str) -> Delivered:
        """Unpin a message, or the most recent pinned one when `message_id` is None."""

        async def request(target: int) -> bool:
            return await self.bot.unpin_chat_message(target, message_id=message_id)

        return await self._deliver(
            "unpinChatMessage", chat_id, source, request, paced=False, message_id=message_id
        )

    @property
    def closing(self) -> bool:
        """Stopping: new requests are refused, and those never tried are failed unattempted."""
        return self._closing

    @property
    def pending(self) -> int:
        """Requests queued or in flight."""
        queued = sum(len(job.answers) for lane in self._lanes.values() for job in lane.jobs)
        return queued + sum(len(job.answers) for job in self._in_flight.values())

    # -- life cycle ---------------------------------------------------------------------------

    def start(self) -> None:
        """Start the scheduler and the writer of records."""
        if self._scheduler is None and not self._closing:
            self._scheduler = asyncio.create_task(self._schedule(), name="delivery-scheduler")
            self._writer = asyncio.create_task(self._write_records(), name="delivery-records")

    async def close(self, grace: float = 10.0) -> None:
        """Refuse new requests, wait up to `grace` s for queued ones, fail and record the rest."""
        self._closing = True
        waiting = [job.future for lane in self._lanes.values() for job in lane.jobs]
        waiting += [job.future for job in self._in_flight.values()]
        if waiting and self._scheduler is not None:
            logger.info("delivering {} queued messages before stopping", len(waiting))
            await asyncio.wait(waiting, timeout=grace)
        interrupted = dict(self._in_flight)
        tasks = [task for task in (self._scheduler, *interrupted) if task is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._scheduler = None
        for job in interrupted.values():
            self._finish(job, error="the bot stopped while sending it; it may have arrived")
        left = 0
        for lane in self._lanes.values():
            while lane.jobs:
                self._finish(lane.jobs.popleft(), error="not sent: the bot stopped first")
                left += 1
        self._ring.clear()
        if left:
            logger.warning("{} queued messages were not sent before stopping", left)
        if self._writer is not None:
            self._writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._writer
            self._writer = None
        for attempt in range(5):
            try:
                await self.flush()
                self._closed = True
                return
            except Exception:
                logger.exception("final write of deliveries failed (attempt {})", attempt + 1)
                await asyncio.sleep(0.5 * (attempt + 1))
        logger.error("{} delivery records could not be written before stopping", len(self._records))

    # -- queueing -----------------------------------------------------------------------------

    async def _deliver(
        self,
        method: str,
        chat_id: int,
        source: str,
        request: Request,
        *,
        paced: bool,
        message_id: int | None = None,
        text: _Text | None = None,
    ) -> Delivered:
        job = _Job(
            method,
            chat_id,
            self._moved.get(chat_id, chat_id),
            source,
            request,
            paced,
            asyncio.get_running_loop().create_future(),
            utcnow(),
            message_id,
            text=text,
        )
        refusal = "not sent: the bot is stopping" if self._closing else self._refusal(job.chat_id)
        if refusal is not None:
            self._finish(job, error=refusal)
        else:
            self.start()
            self._enqueue(self._lane(job.chat_id), job)
        return await job.future

    def _refusal(self, chat_id: int) -> str | None:
        """Why nothing may be sent to `chat_id` now, without asking Telegram."""
        known = self.registry.groups.get(chat_id)
        if known is not None and known.status in GONE:
            return f"not sent: the bot is no longer in this group ({known.status.value})"
        return None

    def _lane(self, chat_id: int) -> _Lane:
        lane = self._lanes.get(chat_id)
        if lane is None:
            lane = self._lanes[chat_id] = _Lane(chat_id, window=deque() if chat_id < 0 else None)
        return lane

    def _enqueue(self, lane: _Lane, job: _Job) -> None:
        lane.jobs.append(job)
        self._take_turn(lane)

    def _take_turn(self, lane: _Lane) -> None:
        """Put an idle lane with jobs at the back of the ring."""
        if lane.jobs and not lane.busy and not lane.queued:
            lane.queued = True
            self._ring.append(lane)
            self._wake.set()

    def _leave_ring(self, lane: _Lane) -> None:
        if lane.queued:
            lane.queued = False
            self._ring.remove(lane)

    # -- scheduling ---------------------------------------------------------------------------

    async def _schedule(self) -> None:
        while True:
            self._wake.clear()
            try:
                wait = self._dispatch()
            except Exception:  # a bug here must not stop every message of the bot
                logger.exception("the delivery scheduler failed; going on")
                wait = 1.0
            timeout = None if wait is None else min(max(wait, 0.0), TICK)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout)

    def _dispatch(self) -> float | None:
        """Start every request that may go now; return the clock seconds until one might."""
        now = self.clock()
        self._tokens = min(BURST, self._tokens + (now - self._refilled) * self.per_second)
        self._refilled = now
        if now - self._swept >= SWEEP_EVERY:
            self._sweep(now)
        if not self._ring:
            return None
        if now < self._paused_until:
            return self._paused_until - now
        wait = math.inf
        while True:
            chosen = None
            for lane in self._ring:
                job = lane.jobs[0]
                if job.given_up:  # the caller gave up waiting: drop it without a call
                    chosen = lane
                    break
                ready = self._ready_at(lane, job, now)
                if ready > now:
                    wait = min(wait, ready - now)
                elif job.paced and self._tokens < 1:
                    wait = min(wait, (1 - self._tokens) / self.per_second)
                else:
                    chosen = lane
                    break
            if chosen is None:
                return None if wait == math.inf else wait
            self._leave_ring(chosen)
            self._start(chosen)

    def _ready_at(self, lane: _Lane, job: _Job, now: float) -> float:
        ready = lane.paused_until
        if not job.paced:
            return ready
        ready = max(ready, lane.next_send_at)
        window = lane.window
        if window is not None:
            while window and now - window[0] >= GROUP_WINDOW:
                window.popleft()
            if len(window) >= self.per_group_minute:
                ready = max(ready, window[-self.per_group_minute] + GROUP_WINDOW)
        return ready

    def _start(self, lane: _Lane) -> None:
        job = lane.jobs.popleft()
        if job.given_up:
            logger.bind(chat_id=lane.chat_id).debug(
                "dropped {} ({}): cancelled", job.method, job.source
            )
            self._take_turn(lane)
            return
        refusal = self._refusal(lane.chat_id)
        if refusal is not None:
            self._fail_lane(lane, job, refusal)
            return
        if job.text is not None:
            job = self._combine(lane, job, job.text)
        if job.paced:
            self._tokens -= 1
        job.attempts += 1
        lane.busy = True
        task = asyncio.create_task(self._attempt(lane, job), name=f"deliver-{lane.chat_id}")
        self._in_flight[task] = job
        task.add_done_callback(self._in_flight.pop)

    def _combine(self, lane: _Lane, job: _Job, first: _Text) -> _Job:
        """`job`, or one message for it and the texts alike queued behind it that fit."""
        parts, texts = [job], [first.text]
        length = _length(first.text, first.parse_mode)
        for other in lane.jobs:
            if other.text is None or other.given_up or not other.text.alike(first):
                continue
            length += 1 + _length(other.text.text, first.parse_mode)
            if length > TEXT_LIMIT:
                break
            parts.append(other)
            texts.append(other.text.text)
        if len(parts) == 1:
            return job
        taken = set(parts)
        lane.jobs = deque(other for other in lane.jobs if other not in taken)
        text = "\n".join(texts)

        async def request(target: int) -> Message:
            return await self.bot.send_message(
                target,
                text,
                parse_mode=first.parse_mode,
                reply_markup=first.reply_markup,
                disable_notification=first.disable_notification,
            )

        return _Job(
            job.method,
            job.requested_chat_id,
            job.chat_id,
            f"{len(parts)} combined as {first.combine}",
            request,
            job.paced,
            asyncio.get_running_loop().create_future(),
            job.queued_at,
            parts=parts,
        )

    def _sweep(self, now: float) -> None:
        self._swept = now
        for chat_id in [chat_id for chat_id, lane in self._lanes.items() if lane.settled(now)]:
            del self._lanes[chat_id]

    # -- one attempt and its outcome ----------------------------------------------------------

    async def _attempt(self, lane: _Lane, job: _Job) -> None:
        log = logger.bind(chat_id=lane.chat_id)
        try:
            result = await job.request(lane.chat_id)
        except TelegramRetryAfter as exc:
            self._flood(lane, job, exc)
        except TelegramMigrateToChat as exc:
            await self._migrated(lane, job, exc.migrate_to_chat_id)
        except TelegramForbiddenError as exc:
            await self._forbidden(lane, job, exc.message)
        except (TelegramNetworkError, TelegramServerError) as exc:
            delay = min(BACKOFF * 2 ** (job.attempts - 1), BACKOFF_MAX)
            log.warning("{} failed ({}); retrying in {:.0f}s", job.method, exc, delay)
            lane.paused_until = max(lane.paused_until, self.clock() + delay)
            self._retry(lane, job, str(exc))
        except TelegramAPIError as exc:
            self._finish(job, error=exc.message)
        except Exception as exc:
            log.opt(exception=exc).error("{} ({}) failed unexpectedly", job.method, job.source)
            self._finish(job, error=f"{type(exc).__name__}: {exc}")
        else:
            message_id = result.message_id if isinstance(result, Message) else job.message_id
            self._finish(job, message_id=message_id)
            if job.paced and lane.window is not None:
                lane.window.append(self.clock())
        finally:
            if job.paced:
                lane.next_send_at = self.clock() + self.chat_gap
            lane.busy = False
            self._take_turn(lane)
            self._wake.set()

    def _retry(self, lane: _Lane, job: _Job, error: str) -> None:
        if job.attempts >= MAX_ATTEMPTS:
            self._finish(job, error=f"gave up after {job.attempts} attempts: {error}")
        else:
            lane.jobs.appendleft(job)

    def _flood(self, lane: _Lane, job: _Job, exc: TelegramRetryAfter) -> None:
        """429: pause the chat (everything, when several chats are hit) and try again."""
        now = self.clock()
        until = now + exc.retry_after
        lane.paused_until = max(lane.paused_until, until)
        log = logger.bind(chat_id=lane.chat_id)
        log.info("Telegram asks to wait {}s before sending here again", exc.retry_after)
        floods = self._floods
        floods.append((now, lane.chat_id))
        while floods and now - floods[0][0] > FLOOD_SPAN:
            floods.popleft()
        if len({chat_id for _, chat_id in floods}) >= FLOOD_CHATS and until > self._paused_until:
            self._paused_until = until
            log.warning("flood limit hit in several chats: all sending waits {}s", exc.retry_after)
        self._retry(lane, job, "Telegram kept asking to wait (429 Too Many Requests)")

    async def _migrated(self, lane: _Lane, job: _Job, new_id: int) -> None:
        """The group became a supergroup: move it in the registry and its queue to the new id."""
        old_id = lane.chat_id
        try:
            await self.registry.migrate(old_id, Chat(id=new_id, type="supergroup"), utcnow())
        except Exception:
            logger.bind(chat_id=old_id).exception("could not record the migration to {}", new_id)
        self._moved[old_id] = new_id
        for old, new in self._moved.items():
            if new == old_id:
                self._moved[old] = new_id
        jobs = [job, *lane.jobs]
        lane.jobs.clear()
        self._leave_ring(lane)
        for moved in jobs:
            moved.chat_id = new_id
        if job.attempts >= MAX_ATTEMPTS:
            self._finish(jobs.pop(0), error=f"gave up after {job.attempts} attempts: chat moved")
        target = self._lane(new_id)
        target.jobs.extendleft(reversed(jobs))
        self._take_turn(target)

    async def _forbidden(self, lane: _Lane, job: _Job, message: str) -> None:
        """403: in a group the bot was removed; in private the user never started or blocked it."""
        if lane.chat_id < 0:
            try:
                await self.registry.bot_removed(lane.chat_id, GroupStatus.KICKED, message)
            except Exception:
                logger.bind(chat_id=lane.chat_id).exception("could not mark the group as kicked")
            reason = f"the bot was removed from this group: {message}"
        else:
            reason = f"the user has not started the bot or has blocked it: {message}"
        self._fail_lane(lane, job, reason)

    def _fail_lane(self, lane: _Lane, job: _Job, reason: str) -> None:
        """Fail `job` and everything queued behind it in the chat, without calling Telegram."""
        self._finish(job, error=reason)
        self._leave_ring(lane)
        while lane.jobs:
            self._finish(lane.jobs.popleft(), error=reason)

    def _finish(
        self, job: _Job, *, message_id: int | None = None, error: str | None = None
    ) -> None:
        ok = error is None
        now = utcnow()
        answers = job.answers
        if not self._closed:  # after the final write, a refusal is only logged
            self._records.extend(
                {
                    "chat_id": job.chat_id,
                    "requested_chat_id": answered.requested_chat_id,
                    "method": job.method,
                    "source": answered.source,
                    "status": (DeliveryStatus.SENT if ok else DeliveryStatus.FAILED).value,
                    "error": error,
                    "message_id": message_id,
                    "attempts": job.attempts,
                    "queued_at": answered.queued_at,
                    "sent_at": now if ok else None,
                }
                for answered in answers
            )
        log = logger.bind(chat_id=job.chat_id)
        if ok:
            self.sent += len(answers)
            log.debug("{} ({}) done after {} attempts", job.method, job.source, job.attempts)
        else:
            self.failed += len(answers)
            log.info("could not deliver {} ({}): {}", job.method, job.source, error)
        delivered = Delivered(
            ok=ok,
            message_id=message_id,
            chat_id=job.chat_id,
            error=error,
            attempts=job.attempts,
            combined=len(answers),
        )
        for waiting in (job, *job.parts):
            if not waiting.future.done():
                waiting.future.set_result(delivered)

    # -- records ------------------------------------------------------------------------------

    async def flush(self) -> int:
        """Write the records of finished deliveries; return how many were written."""
        async with self._record_lock:
            rows, self._records = self._records, []
            if not rows:
                return 0
            try:
                async with writing(self.engine) as conn:
                    await conn.execute(insert(DELIVERIES), rows)
            except BaseException:
                self._records[:0] = rows
                overflow = len(self._records) - self.max_buffered
                if overflow > 0:
                    del self._records[:overflow]
                    logger.error("delivery records buffer full: dropped the {} oldest", overflow)
                raise
            self.recorded += len(rows)
            return len(rows)

    async def _write_records(self) -> None:
        delay = self.record_interval
        while True:
            await asyncio.sleep(delay)
            try:
                await self.flush()
                delay = self.record_interval
            except Exception:
                delay = min(max(delay * 2, 1.0), 30.0)
                logger.exception("writing deliveries failed; retrying in {:.0f}s", delay)


def _length(text: str, parse_mode: str | None) -> int:
    """The length Telegram limits, in UTF-16 units: in HTML, without tags, entities decoded.

    Other markup is counted as written, which can only overestimate.
    """
    if parse_mode is not None and parse_mode.upper() == "HTML":
        text = _ENTITY.sub(lambda entity: html.unescape(entity.group()), _TAG.sub("", text))
    return len(text.encode("utf-16-le")) // 2


def _reply_to(message_id: int | None) -> ReplyParameters | None:
    if message_id is None:
        return None
    return ReplyParameters(message_id=message_id, allow_sending_without_reply=True)
