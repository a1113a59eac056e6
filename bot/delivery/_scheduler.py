"""Per-chat queues taken in turns within Telegram's limits, retried, and recorded."""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections import deque
from collections.abc import Callable
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
from aiogram.types import Chat, Message
from loguru import logger
from sqlalchemy import insert
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.db import DELIVERIES, DeliveryStatus, GroupStatus, utcnow, writing
from bot.db.bulk import BulkStatements
from bot.outbox import Before
from bot.registry import Registry

from ._combine import combine_texts
from ._jobs import GROUP_WINDOW, Delivered, Request, _Job, _Lane, _Text

MAX_ATTEMPTS = 5
RECORD_COLUMNS = (
    "chat_id",
    "requested_chat_id",
    "method",
    "source",
    "status",
    "error",
    "message_id",
    "attempts",
    "queued_at",
    "sent_at",
)
_RECORD = insert(DELIVERIES).values(dict.fromkeys(RECORD_COLUMNS))  # the rows of `_records`
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
# Messages whose `before` runs at once (each is about to go: its chat and the overall pace allow
# it). Their `before` runs before they are paced, so a slow database never bunches messages on
# the wire (which Telegram answers with 429s); six keep up with the pace while each `before` is a
# database write, and only these few can be noted as about to go when a crash (SIGKILL) comes
# before they went: they are then marked interrupted, never sent twice.
PREPARE_AHEAD = 6
SWEEP_EVERY = 60.0  # seconds between forgetting chats that have nothing queued or pending
GONE = frozenset({GroupStatus.KICKED, GroupStatus.LEFT})


class _Scheduler:
    """The machinery under `Delivery`: one queue per chat, taken in turns within the limits.

    It starts each request when its chat, its group's window and the global token bucket
    allow, handles what Telegram answers (429, 403, a migration, network errors and 5xx) and
    records every delivery once it is over. `Delivery` adds the calls that make requests.
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
        self._preparing: set[asyncio.Task[None]] = set()  # jobs whose `before` runs
        self._ahead = 0  # jobs whose `before` runs or ran, not started yet (PREPARE_AHEAD)
        self._records: list[dict[str, Any]] = []
        self._bulk = BulkStatements()
        self._record_lock = asyncio.Lock()
        self._wake = asyncio.Event()
        self._scheduler: asyncio.Task[None] | None = None
        self._writer: asyncio.Task[None] | None = None
        self._closing = False
        self._closed = False

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
        before: Before | None = None,
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
            before=before,
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
                elif job.unprepared and self._ahead >= PREPARE_AHEAD:
                    continue  # its turn comes when a `before` in progress is done
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
        self._let_go(job)
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
            job = combine_texts(self.bot, lane, job, job.text)
        unprepared = job.unprepared
        if unprepared:  # its `before` runs first, so that it is paced as it goes out
            lane.jobs.appendleft(job)
            lane.busy = True
            job.ahead = True
            self._ahead += 1
            task = asyncio.create_task(self._prepare(lane, job, unprepared))
            self._preparing.add(task)
            task.add_done_callback(self._preparing.discard)
            return
        if job.paced:
            self._tokens -= 1
        job.attempts += 1
        lane.busy = True
        task = asyncio.create_task(self._attempt(lane, job), name=f"deliver-{lane.chat_id}")
        self._in_flight[task] = job
        task.add_done_callback(self._in_flight.pop)

    async def _prepare(self, lane: _Lane, job: _Job, parts: list[_Job]) -> None:
        """Await the `before` of each request `job` answers, then give it its turn again."""
        try:
            asking = await asyncio.gather(*(part.before() for part in parts if part.before))
        except Exception as exc:
            logger.bind(chat_id=lane.chat_id).opt(exception=exc).error(
                "{} ({}) not sent: what had to happen before failed", job.method, job.source
            )
            lane.jobs.remove(job)
            self._finish(job, error=f"not sent: {type(exc).__name__}: {exc}")
        else:
            for part, ask in zip(parts, asking, strict=True):  # each has a `before`
                part.prepared, part.asking = True, ask
        finally:
            lane.busy = False
            self._take_turn(lane)
            self._wake.set()

    def _sweep(self, now: float) -> None:
        self._swept = now
        for chat_id in [chat_id for chat_id, lane in self._lanes.items() if lane.settled(now)]:
            del self._lanes[chat_id]

    # -- one attempt and its outcome ----------------------------------------------------------

    async def _attempt(self, lane: _Lane, job: _Job) -> None:
        log = logger.bind(chat_id=lane.chat_id)
        try:
            for part in job.answers:
                if part.asking is not None:
                    part.asking()  # a failure here fails it unsent
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

    def _let_go(self, job: _Job) -> None:
        """`job` leaves the few prepared ahead (it goes, or fails)."""
        if job.ahead:
            job.ahead = False
            self._ahead -= 1

    def _finish(
        self, job: _Job, *, message_id: int | None = None, error: str | None = None
    ) -> None:
        self._let_go(job)
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
                    records = self._bulk.get("records", conn, lambda: _RECORD, RECORD_COLUMNS)
                    await records.execute(conn, records.rows(rows))
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
