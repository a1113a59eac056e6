"""The push queue: messages the bot starts on its own, sent once each, when the group allows.

Broadcasts, live announcements and reminders, and SOP `broadcast` steps add rows to `pushes`
(a unique `key` each, so a broadcast reaches a group once however often it is added). One loop
on the bot's clock takes what is due, in order, and for each push decides in one transaction:

- the bot is no longer in the group: failed, without asking Telegram;
- past its `expires_at` (a reminder for a live that has started): dropped;
- the group's quiet hours (its time zone): postponed to their end, unless urgent;
- the group's daily cap of counted pushes reached: postponed to the next day, or dropped, per
  the push's `over_cap`; the owners are told once a day per broadcast or live;
- else claimed: status `sending`, then handed to the delivery service, which paces everything
  the bot sends to Telegram's limits (about 28/s overall, 20/min per group) and waits out 429s.

A claimed push is `queued` in the delivery service, which paces it; just before Telegram is
asked, it becomes `sending`. After a crash, `queued` pushes were never tried and go back to
pending; `sending` ones may have arrived and are marked failed ("interrupted"), never sent
again. So nothing is sent twice, and only the few messages on the wire at the moment of a
crash are in doubt. A clean stop finishes or puts back everything. At most `IN_FLIGHT` pushes
are claimed at a time (`PER_CHAT` per chat), so one group's backlog does not hold up others.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, tzinfo
from typing import Any, Protocol

from aiogram.types import InlineKeyboardMarkup
from loguru import logger
from sqlalchemy import Row, bindparam, func, select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from bot.clock import Clock
from bot.db import BOT_USERS, PUSHES, PushKind, PushStatus, insert_for, writing
from bot.delivery import GONE, Delivered
from bot.outbox import Before, Outbox
from bot.push.rules import QuietHours, day_start, next_day
from bot.registry import Registry
from bot.sop.facts import chunks

IN_FLIGHT = 40  # pushes claimed and not answered yet: keeps the delivery service busy
PER_CHAT = 2  # of those, in one chat (a group sends 20 a minute at most anyway)
CANDIDATES = 500  # due pushes read per look
POLL = 1.0  # seconds between looks when nothing is due sooner (`tidepool broadcast` adds rows)
INTERRUPTED = "the bot stopped while sending; it may have arrived, so it is not sent again"
BLOCKED = "has not started the bot or has blocked it"


class Sender(Protocol):
    """What the queue needs for live pushes (bot.push.lives.Lives)."""

    async def send(self, push: Row[Any], before: Before) -> Delivered | None:
        """Send a live push, awaiting `before` just before asking Telegram for its message;
        None when there is nothing to send any more (cancelled)."""

    async def fan_out(self, conn: AsyncConnection, push: Row[Any], now: datetime) -> None:
        """A group reminder is going: add its subscribers' private copies."""


Notify = Callable[..., Awaitable[None]]


def push_row(
    *,
    key: str,
    kind: PushKind,
    chat_id: int,
    source: str,
    due_at: datetime,
    now: datetime,
    group_id: int | None = None,
    broadcast_id: int | None = None,
    live_id: int | None = None,
    before: str | None = None,
    text: str | None = None,
    markup: InlineKeyboardMarkup | None = None,
    pin: bool = False,
    urgent: bool = False,
    over_cap: str = "postpone",
    counts: bool = True,
    expires_at: datetime | None = None,
) -> dict[str, Any]:
    """A complete row of `pushes` (every row of a bulk insert has the same keys)."""
    return {
        "key": key,
        "kind": kind.value,
        "chat_id": chat_id,
        "group_id": chat_id if group_id is None else group_id,
        "broadcast_id": broadcast_id,
        "live_id": live_id,
        "before": before,
        "text": text,
        "markup": markup.model_dump(mode="json", exclude_none=True) if markup else None,
        "pin": pin,
        "urgent": urgent,
        "over_cap": over_cap,
        "counts": counts,
        "source": source,
        "status": PushStatus.PENDING.value,
        "planned_at": due_at,
        "due_at": due_at,
        "expires_at": expires_at,
        "note": None,
        "attempts": 0,
        "message_id": None,
        "created_at": now,
        "claimed_at": None,
        "sent_at": None,
    }


async def add_pushes(conn: AsyncConnection, rows: Sequence[dict[str, Any]]) -> int:
    """Insert pushes, skipping any whose key is already there; return how many were new."""
    added = 0
    for start in range(0, len(rows), 400):
        stmt = insert_for(conn, PUSHES).values(list(rows[start : start + 400]))
        stmt = stmt.on_conflict_do_nothing(index_elements=["key"])
        result = await conn.execute(stmt)
        added += max(result.rowcount or 0, 0)
    return added


@dataclass(frozen=True, slots=True)
class GroupRules:
    zone: tzinfo
    quiet: QuietHours | None
    cap: int  # 0: none


@dataclass
class _Pass:
    """What one look at the queue decided."""

    claimed: list[Row[Any]]
    capped: list[tuple[Row[Any], str]]  # (push, "postponed" | "dropped")
    next_due: datetime | None


class Doorbell:
    """Rung by whoever adds pushes (lives, broadcasts, SOP steps), so the queue looks at once
    instead of at its next poll; made before the queue and the services that add pushes."""

    def __init__(self) -> None:
        self.rung = asyncio.Event()

    def wake(self) -> None:
        self.rung.set()


class PushQueue:
    """Sends due pushes within each group's quiet hours and daily cap; see the module."""

    def __init__(
        self,
        engine: AsyncEngine,
        registry: Registry,
        delivery: Outbox,
        clock: Clock,
        *,
        lives: Sender,
        doorbell: Doorbell,
        notify: Notify,
        default_zone: tzinfo,
        quiet_hours: str = "22:00-08:00",
        daily_cap: int = 6,
    ) -> None:
        self.engine = engine
        self.registry = registry
        self.delivery = delivery
        self.clock = clock
        self.default_zone = default_zone
        self.default_quiet = QuietHours.parse(quiet_hours)
        self.default_cap = daily_cap
        self.notify = notify
        self.lives = lives  # sends live pushes and fans group reminders out to subscribers
        self.sent = 0
        self.failed = 0
        self._in_flight: dict[int, asyncio.Task[None]] = {}  # push id -> its send
        self._chats: Counter[int] = Counter()  # pushes in flight per chat
        self._told: set[tuple[str, str, str]] = set()  # (what, action, day) owners were told of
        self._wake = doorbell.rung
        self._task: asyncio.Task[None] | None = None

    # -- rules --------------------------------------------------------------------------------

    def rules(self, group_id: int) -> GroupRules:
        """The group's time zone, quiet hours and daily cap (/group), else the defaults."""
        known = self.registry.groups.get(group_id)
        zone = self.registry.zone(group_id, self.default_zone)
        quiet = self.default_quiet
        cap = self.default_cap
        if known is not None:
            if known.quiet_hours:
                try:
                    quiet = QuietHours.parse(known.quiet_hours)
                except ValueError:
                    logger.bind(chat_id=group_id).warning(
                        "stored quiet hours {!r} are invalid; using the default", known.quiet_hours
                    )
            if known.daily_cap is not None:
                cap = known.daily_cap
        return GroupRules(zone, quiet, cap)

    # -- life cycle ---------------------------------------------------------------------------

    async def recover(self) -> int:
        """At start: pushes a crash left `sending` may have arrived, so they are marked and
        never sent again; those still `queued` were never tried and go back to pending.
        Return how many were in doubt."""
        async with writing(self.engine) as conn:
            await conn.execute(
                update(PUSHES)
                .where(PUSHES.c.status == PushStatus.QUEUED.value)
                .values(status=PushStatus.PENDING.value, claimed_at=None)
            )
            result = await conn.execute(
                update(PUSHES)
                .where(PUSHES.c.status == PushStatus.SENDING.value)
                .values(status=PushStatus.FAILED.value, note=INTERRUPTED, sent_at=None)
            )
        count = max(result.rowcount or 0, 0)
        if count:
            logger.warning("{} pushes were being sent when the bot stopped: {}", count, INTERRUPTED)
        return count

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="push-queue")

    def wake(self) -> None:
        """Pushes were added or changed: look again now."""
        self._wake.set()

    async def halt(self) -> None:
        """Stop claiming pushes; those in flight go on (close the delivery service next)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def close(self, grace: float = 10.0) -> None:
        """Stop claiming; wait up to `grace` s for the pushes in flight to be recorded.

        Close the delivery service first: what it never tried then goes back to pending."""
        await self.halt()
        if self._in_flight:
            await asyncio.wait(list(self._in_flight.values()), timeout=grace)
        for task in list(self._in_flight.values()):
            task.cancel()

    @property
    def busy(self) -> int:
        return len(self._in_flight)

    async def next_due(self) -> datetime | None:
        """When the earliest pending push is due (simulations move their clock to it)."""
        async with self.engine.connect() as conn:
            found = await conn.execute(
                select(func.min(PUSHES.c.due_at)).where(PUSHES.c.status == PushStatus.PENDING.value)
            )
            due: datetime | None = found.scalar()
        return due

    async def settle(self) -> None:
        """Wait until the pushes in flight are sent and recorded (tests, simulations)."""
        while self._in_flight:
            await asyncio.gather(*self._in_flight.values(), return_exceptions=True)

    async def _run(self) -> None:
        while True:
            self._wake.clear()
            try:
                wait = await self.run_due()
            except Exception:
                logger.exception("the push queue failed; looking again in 5 s")
                wait = 5.0
            wait = min(wait, POLL, self.clock.max_sleep)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), max(wait, 0.01))

    # -- one look -----------------------------------------------------------------------------

    async def run_due(self) -> float:
        """Decide and start what is due now; return the seconds until something might be."""
        now = self.clock.now()
        done = await self._decide(now)
        for push in done.claimed:
            self._chats[push.chat_id] += 1
            task = asyncio.create_task(self._send(push), name=f"push-{push.id}")
            self._in_flight[push.id] = task
        if done.capped:
            await self._tell_owners(done.capped, now)
        if done.next_due is None:
            return POLL
        return max((done.next_due - self.clock.now()).total_seconds(), 0.0)

    async def _decide(self, now: datetime) -> _Pass:
        room = IN_FLIGHT - len(self._in_flight)
        claimed: list[Row[Any]] = []
        capped: list[tuple[Row[Any], str]] = []
        async with writing(self.engine) as conn:
            due = list(
                await conn.execute(
                    select(PUSHES)
                    .where(PUSHES.c.status == PushStatus.PENDING.value, PUSHES.c.due_at <= now)
                    .order_by(PUSHES.c.due_at, PUSHES.c.id)
                    .limit(CANDIDATES)
                )
            )
            counted = await self._counted_today(conn, due, now)
            chats = Counter(self._chats)
            claims: list[int] = []
            skipped = False
            moves: list[dict[str, Any]] = []  # postponed: new due_at and note
            ends: list[dict[str, Any]] = []  # failed or dropped, with the note
            for push in due:
                group = push.group_id
                rules = self.rules(group)
                known = self.registry.groups.get(group)
                if known is not None and known.status in GONE:
                    note = f"not sent: the bot is no longer in this group ({known.status.value})"
                    ends.append(_end(push, PushStatus.FAILED, note))
                    continue
                if push.expires_at is not None and now >= push.expires_at:
                    ends.append(_end(push, PushStatus.DROPPED, "too late: its moment has passed"))
                    continue
                if not push.urgent and push.kind != PushKind.LIVE_UNPIN.value:
                    quiet_end = rules.quiet.until(now, rules.zone) if rules.quiet else None
                    if quiet_end is not None and push.kind != PushKind.LIVE_PRIVATE.value:
                        moves.append(_move(push, quiet_end, f"quiet hours ({rules.quiet})"))
                        continue
                    if push.counts and rules.cap and counted[group] >= rules.cap:
                        note = f"the group's daily cap of {rules.cap} was reached"
                        if push.over_cap == "drop":
                            ends.append(_end(push, PushStatus.DROPPED, note))
                            capped.append((push, "dropped"))
                            if push.kind == PushKind.LIVE_REMINDER:
                                await self.lives.fan_out(conn, push, now)
                        else:
                            moves.append(_move(push, next_day(now, rules.zone), note))
                            capped.append((push, "postponed"))
                        continue
                if room <= 0 or chats[push.chat_id] >= PER_CHAT:
                    skipped = True
                    continue
                room -= 1
                chats[push.chat_id] += 1
                if push.counts:
                    counted[group] += 1
                claims.append(push.id)
                claimed.append(push)
                if push.kind == PushKind.LIVE_REMINDER:
                    await self.lives.fan_out(conn, push, now)
            if claims:
                await conn.execute(
                    update(PUSHES)
                    .where(PUSHES.c.id == bindparam("push_id"))
                    .values(
                        status=PushStatus.QUEUED.value,
                        claimed_at=now,
                        attempts=PUSHES.c.attempts + 1,
                    ),
                    [{"push_id": push_id} for push_id in claims],
                )
            if moves:
                await conn.execute(
                    update(PUSHES)
                    .where(PUSHES.c.id == bindparam("push_id"))
                    .values(due_at=bindparam("due"), note=bindparam("why")),
                    moves,
                )
            if ends:
                await conn.execute(
                    update(PUSHES)
                    .where(PUSHES.c.id == bindparam("push_id"))
                    .values(status=bindparam("end"), note=bindparam("why")),
                    ends,
                )
            later = (
                await conn.execute(
                    select(func.min(PUSHES.c.due_at)).where(
                        PUSHES.c.status == PushStatus.PENDING.value, PUSHES.c.due_at > now
                    )
                )
            ).scalar()
        # More due than one look reads, all taken: look again at once. Pushes left for want of
        # room wait for a send to finish, which wakes the loop.
        next_due = now if len(due) == CANDIDATES and not skipped else later
        return _Pass(claimed, capped, next_due)

    async def _counted_today(
        self, conn: AsyncConnection, due: list[Row[Any]], now: datetime
    ) -> Counter[int]:
        """Counted pushes each group of `due` already claimed today, in its own time zone."""
        groups = {push.group_id for push in due if push.counts and not push.urgent}
        counted: Counter[int] = Counter()
        if not groups:
            return counted
        since = now - timedelta(days=2)
        for part in chunks(sorted(groups)):
            rows = await conn.execute(
                select(PUSHES.c.group_id, PUSHES.c.claimed_at).where(
                    PUSHES.c.group_id.in_(part),
                    PUSHES.c.counts.is_(True),
                    PUSHES.c.claimed_at >= since,
                    PUSHES.c.status.in_(
                        (PushStatus.QUEUED.value, PushStatus.SENDING.value, PushStatus.SENT.value)
                    ),
                )
            )
            starts = {group: day_start(now, self.rules(group).zone) for group in part}
            for group, claimed_at in rows:
                if claimed_at >= starts[group]:
                    counted[group] += 1
        return counted

    # -- sending ------------------------------------------------------------------------------

    async def _send(self, push: Row[Any]) -> None:
        delivered: Delivered | None
        try:
            delivered = await self._deliver(push)
        except Exception as exc:
            logger.bind(chat_id=push.chat_id).exception("push {} failed", push.key)
            delivered = Delivered(False, None, push.chat_id, f"{type(exc).__name__}: {exc}", 1)
        try:
            await self._record(push, delivered)
        except Exception:
            logger.bind(chat_id=push.chat_id).exception("could not record push {}", push.key)
        finally:
            self._in_flight.pop(push.id, None)
            self._chats[push.chat_id] -= 1
            if self._chats[push.chat_id] <= 0:
                del self._chats[push.chat_id]
            self._wake.set()

    async def _deliver(self, push: Row[Any]) -> Delivered | None:
        async def before() -> None:  # Telegram is about to be asked: it may arrive from now on
            async with writing(self.engine) as conn:
                await conn.execute(
                    update(PUSHES)
                    .where(PUSHES.c.id == push.id)
                    .values(status=PushStatus.SENDING.value)
                )

        if push.kind != PushKind.TEXT.value:
            return await self.lives.send(push, before)
        markup = InlineKeyboardMarkup.model_validate(push.markup) if push.markup else None
        delivered = await self.delivery.send_message(
            push.chat_id, push.text or "", source=push.source, reply_markup=markup, before=before
        )
        if delivered.ok and push.pin and delivered.message_id is not None:
            await self.delivery.pin(delivered.chat_id, delivered.message_id, source=push.source)
        return delivered

    async def _record(self, push: Row[Any], delivered: Delivered | None) -> None:
        now = self.clock.now()
        values: dict[str, Any]
        if delivered is None:
            values = {"status": PushStatus.CANCELLED.value, "note": "cancelled before it went"}
        elif delivered.ok:
            self.sent += 1
            values = {
                "status": PushStatus.SENT.value,
                "message_id": delivered.message_id,
                "sent_at": now,
                "note": None,
            }
        elif delivered.attempts == 0 and self.delivery.closing:
            # Never tried: the bot is stopping. It goes after the restart.
            values = {"status": PushStatus.PENDING.value, "claimed_at": None}
        else:
            self.failed += 1
            values = {"status": PushStatus.FAILED.value, "note": delivered.error}
        async with writing(self.engine) as conn:
            await conn.execute(update(PUSHES).where(PUSHES.c.id == push.id).values(**values))
            if delivered is not None and push.chat_id > 0 and BLOCKED in (delivered.error or ""):
                await conn.execute(
                    update(BOT_USERS)
                    .where(BOT_USERS.c.user_id == push.chat_id)
                    .values(blocked_at=now)
                )

    # -- telling the owners -------------------------------------------------------------------

    async def _tell_owners(self, capped: list[tuple[Row[Any], str]], now: datetime) -> None:
        groups: dict[tuple[str, str], set[int]] = defaultdict(set)
        for push, action in capped:
            what = (
                f"#{push.broadcast_id}"
                if push.broadcast_id is not None
                else f"live #{push.live_id}"
                if push.live_id is not None
                else push.source
            )
            groups[what, action].add(push.group_id)
        day = f"{now:%Y-%m-%d}"
        for (what, action), chats in groups.items():
            if (what, action, day) in self._told:
                continue
            self._told.add((what, action, day))
            titles = [
                self.registry.groups[g].title if g in self.registry.groups else str(g)
                for g in chats
            ]
            try:
                await self.notify(
                    "push.capped_owner",
                    what=what,
                    action=action,
                    count=len(chats),
                    groups=", ".join(sorted(titles)[:10]),
                )
            except Exception:
                logger.exception("could not tell the owners about capped pushes")


def _end(push: Row[Any], status: PushStatus, why: str) -> dict[str, Any]:
    return {"push_id": push.id, "end": status.value, "why": why}


def _move(push: Row[Any], due: datetime, why: str) -> dict[str, Any]:
    return {"push_id": push.id, "due": due, "why": f"postponed: {why}"}
