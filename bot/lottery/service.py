"""Lotteries at work: the post with its Enter button, entries at press speed, the draw at the
deadline (kept in the database, so a restart loses none), the announcement, rerolls.

Presses are admitted in batches: each press waits a moment for others, the batch is checked
against the rules in a few bulk queries and written in one transaction (bot.lottery.store), so
thousands of presses a minute cost tens of transactions, not thousands. The post's entry count
is edited at most every EDIT_INTERVAL seconds, one edit at a time.

The draw loop wakes at the soonest deadline (read from the database, on the bot's clock), draws
what is due and queues the announcement. The post and the announcement are pushes of the one
outbox (bot.lottery.posting): each is sent once, never twice, and a draw whose announcement is
not queued yet (a stop right after the draw) gets it on the next pass or start.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from loguru import logger
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from bot.activity import ActivityLog, event_row
from bot.clock import Clock
from bot.db import MEMBERS, PRESENT, EventType, LotteryStatus, MemberStatus, writing
from bot.events import Bus, Happened
from bot.lottery.posting import LotteryCourier, announcement_row, post_row
from bot.lottery.rules import Eligibility, Refusal
from bot.lottery.store import (
    Drawn,
    Entered,
    Lottery,
    LotteryStore,
    Rerolled,
    Verification,
    open_lottery,
)
from bot.lottery.wording import LotteryWording, in_language
from bot.outbox import Outbox, Waker
from bot.push.rows import add_pushes
from bot.registry import Registry
from bot.sop.format import LotteryAction, LotteryRules
from bot.texts import Texts

BATCH = 500  # presses admitted in one transaction
GATHER = 0.02  # seconds a press waits for others to share its transaction
EDIT_INTERVAL = 6.0  # seconds between edits of a post's entry count: half the group's 20 a minute
ASKED_TTL = 60.0  # seconds Telegram's word on a presser's membership is reused
SOURCE = "lottery"

Outcome = Entered | Refusal


@dataclass(slots=True)
class _Press:
    user_id: int
    at: datetime
    answer: asyncio.Future[Outcome]


AskMember = Callable[[int, int], Awaitable[str | None]]  # a member's status, Telegram says


class Lotteries:
    """Opens, posts, admits, draws and announces lotteries in every group."""

    def __init__(
        self,
        engine: AsyncEngine,
        registry: Registry,
        activity: ActivityLog,
        delivery: Outbox,
        texts: Texts,
        clock: Clock,
        *,
        bus: Bus,
        pushes: Waker,
        ask_member: AskMember,
        default_timezone: ZoneInfo,
        edit_interval: float = EDIT_INTERVAL,
        batch: int = BATCH,
        gather: float = GATHER,
    ) -> None:
        self.engine = engine
        self.registry = registry
        self.activity = activity
        self.delivery = delivery
        self.texts = texts
        self.clock = clock
        self.default_timezone = default_timezone
        self.edit_interval = edit_interval
        self.batch, self.gather = batch, gather  # presses per transaction, wait for company
        self.store = LotteryStore(engine)
        self.eligibility = Eligibility(engine, activity)
        # Asks Telegram for a member's status in a group (getChatMember): None when it cannot
        # say. Presses by people the bot does not know as present members are checked with it.
        self.ask_member = ask_member
        self._asked: dict[tuple[int, int], tuple[float, str]] = {}
        self.wording = LotteryWording(texts, registry, default_timezone)
        self.bus = bus  # told of each draw's winners (the SOP engine's `lottery.won` event)
        self._presses: dict[int, list[_Press]] = {}
        self._admitting: dict[int, asyncio.Task[None]] = {}
        self._dirty: set[int] = set()
        self._editors: dict[int, asyncio.Task[None]] = {}
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._background: set[asyncio.Task[Any]] = set()
        self.pushes = pushes  # the push queue, rung when a post or announcement is queued
        self.courier = LotteryCourier(self)  # how the push queue sends posts and announcements

    # -- the group's language and time -------------------------------------------------------

    # -- what lotteries say (bot.lottery.wording) --------------------------------------------

    def say(self, chat_id: int, key: str, **values: Any) -> str:
        return self.wording.say(chat_id, key, **values)

    def when(self, chat_id: int, moment: datetime) -> str:
        return self.wording.when(chat_id, moment)

    def refusal_text(self, chat_id: int, refusal: Refusal) -> str:
        return self.wording.refusal_text(chat_id, refusal)

    # -- opening -----------------------------------------------------------------------------

    async def create(
        self,
        chat_id: int,
        *,
        prize: str,
        winners: int,
        duration: timedelta,
        rules: LotteryRules,
        by: int | None,
        reply_to: int | None = None,
    ) -> Lottery:
        """Open a lottery by an admin's command and post it in the group."""
        now = self.clock.now()
        async with writing(self.engine) as conn:
            lottery = await open_lottery(
                conn,
                chat_id,
                prize=prize,
                winners=winners,
                rules=rules,
                claim="",
                source=f"command:{by}" if by is not None else "command",
                created_by=by,
                now=now,
                draws_at=now + duration,
            )
            await add_pushes(conn, [post_row(lottery, now, reply_to)])
        self.wake()
        self.pushes.wake()
        return lottery

    async def open_in(
        self,
        conn: AsyncConnection,
        chat_id: int,
        action: LotteryAction,
        *,
        source: str,
        run_id: int | None,
        now: datetime,
    ) -> Lottery:
        """Open a lottery for an SOP step, in the transaction that moves its run on, with its
        post queued in the outbox (the step rings the push queue once that committed)."""
        language = self.wording.language(chat_id)
        lottery = await open_lottery(
            conn,
            chat_id,
            prize=in_language(action.prize, language),
            winners=action.winners,
            rules=action.rules,
            claim=in_language(action.claim, language) if action.claim is not None else "",
            source=source,
            created_by=None,
            now=now,
            draws_at=now + action.duration,
            run_id=run_id,
        )
        await add_pushes(conn, [post_row(lottery, now)])
        return lottery

    # -- entering ----------------------------------------------------------------------------

    async def enter(self, chat_id: int, lottery_id: int, user_id: int) -> Outcome:
        """A member pressed Enter: an entry, or why not (for a private popup)."""
        now = self.clock.now()
        loop = asyncio.get_running_loop()
        press = _Press(user_id, now, loop.create_future())
        self._presses.setdefault(lottery_id, []).append(press)
        if lottery_id not in self._admitting:
            self._admitting[lottery_id] = self._spawn(self._admit(chat_id, lottery_id))
        return await press.answer

    async def _admit(self, chat_id: int, lottery_id: int) -> None:
        try:
            while self._presses.get(lottery_id):
                await asyncio.sleep(self.gather)
                waiting = self._presses[lottery_id]
                batch, self._presses[lottery_id] = waiting[: self.batch], waiting[self.batch :]
                try:
                    outcomes = await self._admit_batch(chat_id, lottery_id, batch)
                except Exception as exc:
                    logger.bind(chat_id=chat_id).exception("lottery #{}: entering", lottery_id)
                    for press in batch:
                        if not press.answer.done():
                            press.answer.set_exception(exc)
                    continue
                answered: set[int] = set()
                for press in batch:
                    outcome = outcomes[press.user_id]
                    if press.user_id in answered and isinstance(outcome, Entered):
                        outcome = Refusal("entered")  # pressed twice in one batch
                    answered.add(press.user_id)
                    if not press.answer.done():
                        press.answer.set_result(outcome)
        finally:
            self._admitting.pop(lottery_id, None)
            self._presses.pop(lottery_id, None)

    async def _admit_batch(
        self, chat_id: int, lottery_id: int, batch: list[_Press]
    ) -> dict[int, Outcome]:
        lottery = await self.store.get(lottery_id)
        now = max(press.at for press in batch)
        if lottery is None or lottery.chat_id != chat_id:
            return {press.user_id: Refusal("unknown") for press in batch}
        if lottery.status != LotteryStatus.OPEN or now >= lottery.draws_at:
            return {press.user_id: Refusal("closed") for press in batch}
        users = sorted({press.user_id for press in batch})
        known = await self.eligibility.members(chat_id, users)
        outcomes: dict[int, Outcome] = {
            user_id: Refusal("not_member")
            for user_id in await self._not_members(chat_id, users, known)
        }
        users = [user_id for user_id in users if user_id not in outcomes]
        outcomes.update(await self.eligibility.refusals(chat_id, lottery.rules, users, now, known))
        eligible = [user for user in users if user not in outcomes]
        if eligible:
            outcomes.update(await self.store.admit(lottery_id, eligible, now))
        for user_id, outcome in outcomes.items():
            if isinstance(outcome, Entered):
                self.activity.add(
                    event_row(
                        chat_id=chat_id,
                        user_id=user_id,
                        at=now,
                        type=EventType.LOTTERY_ENTERED,
                        data={"lottery": lottery_id, "cost": outcome.cost},
                    )
                )
        if any(isinstance(outcome, Entered) for outcome in outcomes.values()):
            self._count_changed(lottery_id)
        return outcomes

    async def _not_members(
        self, chat_id: int, users: list[int], known: dict[int, dict[str, Any]]
    ) -> set[int]:
        """Of these pressers, those Telegram says are not in the group. Asked only about people
        the bot has not seen join as present members (a visitor of a public group can press too,
        and a rejoin may have been missed; a row without a join may be the press itself, which
        the activity log writes); what it says is stored, in the database and in `known`, and
        remembered for a minute."""
        seen = {u: known.get(u) or {} for u in users}
        doubtful = [
            u
            for u, row in seen.items()
            if row.get("status") not in PRESENT or not row.get("joined_at")
        ]
        answers = await asyncio.gather(*(self._status(chat_id, u) for u in doubtful))
        refused = set()
        for user_id, status in zip(doubtful, answers, strict=True):
            if status is None:  # Telegram could not say: trust the press
                continue
            row = known.setdefault(user_id, {"user_id": user_id, "joined_at": None, "tier": "new"})
            if row.get("status") != status:
                await self.registry.set_member_status(chat_id, user_id, MemberStatus(status))
                row["status"] = status
            if status not in PRESENT:
                refused.add(user_id)
        return refused

    async def _status(self, chat_id: int, user_id: int) -> str | None:
        tick = time.monotonic()
        cached = self._asked.get((chat_id, user_id))
        if cached is not None and tick - cached[0] < ASKED_TTL:
            return cached[1]
        status = await self.ask_member(chat_id, user_id)
        if status is not None:
            self._asked[chat_id, user_id] = (tick, status)
        return status

    def _count_changed(self, lottery_id: int) -> None:
        self._dirty.add(lottery_id)
        if lottery_id not in self._editors:
            self._editors[lottery_id] = self._spawn(self._edit_count(lottery_id))

    async def _edit_count(self, lottery_id: int) -> None:
        """Show the entry count on the post: at most every edit_interval, one edit at a time."""
        try:
            while lottery_id in self._dirty:
                self._dirty.discard(lottery_id)
                lottery = await self.store.get(lottery_id)
                if lottery is None or lottery.status != LotteryStatus.OPEN:
                    return
                if lottery.message_id is not None:
                    await self.delivery.edit_text(
                        lottery.chat_id,
                        lottery.message_id,
                        self.wording.post_text(lottery),
                        source=SOURCE,
                        reply_markup=self.wording.enter_button(lottery),
                    )
                await asyncio.sleep(self.edit_interval)
        finally:
            self._editors.pop(lottery_id, None)

    # -- drawing -----------------------------------------------------------------------------

    async def draw(self, lottery_id: int, by: int | None = None) -> Drawn | Refusal:
        """Draw now (at the deadline, or early by an admin) and announce the winners."""
        await self._settle_presses(lottery_id)
        drawn = await self.store.draw(lottery_id, self.clock.now(), by)
        if isinstance(drawn, Drawn):
            logger.bind(chat_id=drawn.lottery.chat_id).info(
                "lottery #{} drawn: {} winners of {} entrants",
                lottery_id,
                len(drawn.winners),
                drawn.lottery.entrants,
            )
            await self._queue(
                [announcement_row(lottery_id, drawn.lottery.chat_id, self.clock.now())]
            )
            self.wake()
        return drawn

    async def _settle_presses(self, lottery_id: int) -> None:
        """Let presses already being admitted finish before the draw closes the lottery."""
        task = self._admitting.get(lottery_id)
        if task is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(asyncio.shield(task), timeout=10)

    async def _queue(self, rows: list[dict[str, Any]]) -> None:
        """Add posts or announcements to the outbox (each once: a second add is skipped)."""
        async with writing(self.engine) as conn:
            await add_pushes(conn, rows)
        self.pushes.wake()

    def won(self, lottery: Lottery, winners: list[int]) -> None:
        """Tell the SOPs who won (`lottery.won`), once the draw is announced."""
        for place, user_id in enumerate(winners, start=1):
            data = {"lottery": lottery.id, "prize": lottery.prize, "place": place}
            self._spawn(self.bus.publish(Happened("lottery.won", lottery.chat_id, user_id, data)))

    async def close_post(self, lottery: Lottery) -> None:
        """The post shows the lottery closed (drawn or cancelled), without its button."""
        current = await self.store.get(lottery.id)
        if current is None or current.message_id is None:
            return
        await self.delivery.edit_text(
            current.chat_id,
            current.message_id,
            self.wording.post_text(current),
            source=SOURCE,
            reply_markup=None,
        )

    async def names(self, chat_id: int, user_ids: Iterable[int]) -> dict[int, str]:
        """Members' names as the bot knows them (for mentions)."""
        ids = list(user_ids)
        if not ids:
            return {}
        async with self.engine.connect() as conn:
            rows = await conn.execute(
                select(MEMBERS.c.user_id, MEMBERS.c.first_name, MEMBERS.c.last_name).where(
                    MEMBERS.c.chat_id == chat_id, MEMBERS.c.user_id.in_(ids)
                )
            )
            return {
                row.user_id: " ".join(filter(None, [row.first_name, row.last_name]))
                or str(row.user_id)
                for row in rows
            }

    async def cancel(self, lottery_id: int, by: int | None) -> Lottery | Refusal:
        """Cancel an open lottery: entry costs are refunded and the post says so."""
        await self._settle_presses(lottery_id)
        cancelled = await self.store.cancel(lottery_id, self.clock.now(), by)
        if isinstance(cancelled, Lottery):
            await self.close_post(cancelled)
            self.wake()
        return cancelled

    async def reroll(
        self, lottery_id: int, user_id: int, reason: str, by: int | None
    ) -> Rerolled | Refusal:
        """Replace a winner with the next pick and show the new winners on the announcement."""
        rerolled = await self.store.reroll(lottery_id, user_id, reason, self.clock.now(), by)
        if isinstance(rerolled, Rerolled):
            winners = await self.store.winners(lottery_id)
            data = {
                "lottery": lottery_id,
                "prize": rerolled.lottery.prize,
                "place": winners.index(rerolled.winner) + 1,
            }
            won = Happened("lottery.won", rerolled.lottery.chat_id, rerolled.winner, data)
            self._spawn(self.bus.publish(won))
            lottery = await self.store.get(lottery_id)
            if lottery is not None and lottery.announcement_id is not None:
                winners = await self.store.winners(lottery_id)
                await self.delivery.edit_text(
                    lottery.chat_id,
                    lottery.announcement_id,
                    self.wording.announcement_text(
                        lottery, winners, await self.names(lottery.chat_id, winners)
                    ),
                    source=SOURCE,
                )
        return rerolled

    async def verify(self, lottery_id: int) -> Verification | Refusal:
        return await self.store.verify(lottery_id)

    # -- the draw loop -----------------------------------------------------------------------

    def wake(self) -> None:
        self._wake.set()

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="lotteries")

    async def close(self) -> None:
        """Stop the draw loop and background work (call after polling has drained: presses
        still waiting then are answered with an error rather than left hanging)."""
        for presses in self._presses.values():
            for press in presses:
                if not press.answer.done():
                    press.answer.set_exception(RuntimeError("the bot is stopping"))
        for task in [self._task, *self._background]:
            if task is not None:
                task.cancel()
        for task in [self._task, *self._background]:
            if task is not None:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        self._task = None

    async def recover(self) -> None:
        """Queue the post of open lotteries that have none yet, and the announcement of draws
        that have none (a stop right after the draw, or a lottery from before the outbox);
        what is queued already is not queued again."""
        now = self.clock.now()
        rows = []
        for lottery_id in await self.store.unposted(now):
            lottery = await self.store.get(lottery_id)
            if lottery is not None:
                rows.append(post_row(lottery, now))
        for lottery_id in await self.store.unannounced():
            lottery = await self.store.get(lottery_id)
            if lottery is not None:
                rows.append(announcement_row(lottery_id, lottery.chat_id, now))
        if rows:
            await self._queue(rows)

    async def draw_due(self) -> int:
        """Draw every lottery whose deadline has passed; how many draws failed."""
        failed = 0
        for lottery_id in await self.store.due(self.clock.now()):
            try:
                await self.draw(lottery_id)
            except Exception:
                failed += 1
                logger.exception("lottery #{}: the draw failed; trying again in 10s", lottery_id)
        return failed

    async def _run(self) -> None:
        while True:
            self._wake.clear()
            timeout = math.inf  # the clock's wait ends early if it is moved
            try:
                failed = await self.draw_due()
                await self.recover()
                due = await self.store.next_due()
                if failed:  # a draw to try again
                    timeout = min(timeout, 10.0)
                if due is not None and not failed:
                    timeout = min(timeout, max((due - self.clock.now()).total_seconds(), 0.01))
            except Exception:
                logger.exception("the lottery draw loop failed; trying again in 10s")
                timeout = 10.0
            await self.clock.wait(self._wake, None if math.isinf(timeout) else timeout)

    def _spawn(self, work: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        task = asyncio.create_task(work)
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        return task
