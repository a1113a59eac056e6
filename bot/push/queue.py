"""The push queue: the one outbound path for what the bot starts on its own, sent once each.

SOP `send` and `broadcast` steps, broadcasts, live announcements and reminders, and lottery
posts and announcements are rows of `pushes` (`bot.push.rows`), each added in the transaction
of what caused it. One loop on the bot's clock takes what is due, in order, and for each push
decides in one transaction:

- the bot is no longer in the group: failed, without asking Telegram;
- past its `expires_at` (a reminder for a live that has started): dropped;
- unless it is `urgent`: the group's quiet hours (its time zone) postpone it to their end, and
  when it `counts` and the group's daily cap is reached, it is postponed to the next day or
  dropped, per its `over_cap`; the owners are told once a day per broadcast, live or SOP;
- else claimed (`queued`) and handed to the delivery service, which paces everything the bot
  sends to Telegram's limits (about 28/s overall, 20/min per group) and waits out 429s.

Just before Telegram is asked, a push becomes `sending`; its answer is recorded with what its
owner keeps of it (the courier of its kind: `bot.push.rows.Courier`). Both writes are group
commits, so a burst of pushes costs a few transactions. The moment Telegram is asked, the
push is noted (`bot.push.wire`). After a crash, `queued` pushes were never tried and go back to
pending, and so do `sending` ones without a note (prepared, never asked); noted ones may have
arrived and are marked failed ("interrupted"), never sent again, and their owners are told.
So nothing is sent twice that Telegram had accepted, nothing is lost that was never tried, and
only the few messages on the wire at the moment of a crash are in doubt. A clean stop
finishes or puts back everything. At most `IN_FLIGHT` pushes are claimed at a time (`PER_CHAT`
per chat), so one group's backlog does not hold up others; texts that may share a message
(`combine`) are handed over together.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta, tzinfo
from typing import Any

from loguru import logger
from sqlalchemy import Row, bindparam, func, select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from bot.clock import Clock
from bot.db import BOT_USERS, PUSHES, PushStatus, writing
from bot.delivery import GONE, Delivered
from bot.outbox import Asking, Outbox
from bot.push._commit import GroupCommit
from bot.push.rows import INTERRUPTED, Courier, Doorbell, Ended, add_pushes, push_row
from bot.push.rules import QuietHours, day_start, next_day
from bot.push.wire import WireNotes
from bot.registry import Registry
from bot.sop.facts import chunks

__all__ = ["INTERRUPTED", "Doorbell", "PushQueue", "add_pushes", "push_row"]

IN_FLIGHT = 40  # pushes claimed and not answered yet: keeps the delivery service busy
PER_CHAT = 2  # of those, in one chat (a group sends 20 a minute at most anyway)
SHARED_IN_FLIGHT = 2000  # texts that may share a message: handed over together to combine
SHARED_PER_CHAT = 200
CANDIDATES = 500  # due pushes read per look
POLL = 1.0  # seconds between looks when nothing is due sooner (`tidepool broadcast` adds rows)
BLOCKED = "has not started the bot or has blocked it"

Notify = Callable[..., Awaitable[None]]


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
    postponed: list[Row[Any]]
    ended: list[Ended]
    next_due: datetime | None


class PushQueue:
    """Sends due pushes within each group's quiet hours and daily cap; see the module."""

    def __init__(
        self,
        engine: AsyncEngine,
        registry: Registry,
        delivery: Outbox,
        clock: Clock,
        *,
        couriers: Mapping[str, Courier],
        wire: WireNotes,
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
        self.couriers = couriers  # push kind -> who sends it and hears how it went
        self.wire = wire
        self.default_zone = default_zone
        self.default_quiet = QuietHours.parse(quiet_hours)
        self.default_cap = daily_cap
        self.notify = notify
        self.sent = 0
        self.failed = 0
        self._in_flight: dict[int, asyncio.Task[None]] = {}  # push id -> its send
        self._chats: Counter[tuple[int, bool]] = Counter()  # in flight per (chat, shared)
        self._shared = 0  # of those in flight, texts that may share a message
        self._told: set[tuple[str, str, str]] = set()  # (what, action, day) owners were told of
        self._wake = doorbell.rung
        self._task: asyncio.Task[None] | None = None
        self._sending = GroupCommit[int](self._mark_sending)
        self._ends = GroupCommit[Ended](self._record)

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
        never sent again (their owners are told); those still `queued` were never tried and go
        back to pending. Return how many were in doubt."""
        now = self.clock.now()
        asked = self.wire.asked()  # None: no notes to go by, every `sending` one is in doubt
        async with writing(self.engine) as conn:
            sending = list(
                await conn.execute(
                    select(PUSHES).where(PUSHES.c.status == PushStatus.SENDING.value)
                )
            )
            doubtful = [push for push in sending if asked is None or push.id in asked]
            untried = [push.id for push in sending if asked is not None and push.id not in asked]
            pending = {"status": PushStatus.PENDING.value, "claimed_at": None}
            await conn.execute(
                update(PUSHES).where(PUSHES.c.status == PushStatus.QUEUED.value).values(pending)
            )
            for part in chunks(untried):
                await conn.execute(update(PUSHES).where(PUSHES.c.id.in_(part)).values(pending))
            ended = [Ended(push, PushStatus.FAILED, note=INTERRUPTED) for push in doubtful]
            if ended:
                await self._write_ends(conn, ended, now)
        self.wire.clear()
        if untried:
            logger.info("{} pushes prepared but never asked for when the bot stopped", len(untried))
        if ended:
            logger.warning(
                "{} pushes were being sent when the bot stopped: {}", len(ended), INTERRUPTED
            )
            await self._tell(ended)
        return len(ended)

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
        if not self._in_flight:  # every push handed out is recorded: none is `sending`
            self.wire.clear()
        for task in list(self._in_flight.values()):
            task.cancel()
        self.wire.close()

    @property
    def busy(self) -> int:
        return len(self._in_flight)

    @property
    def idle(self) -> bool:
        """Nothing in flight and nobody rang since the last look (tests, simulations)."""
        return not self._in_flight and not self._wake.is_set()

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
            await self.clock.wait(self._wake, max(min(wait, POLL), 0.01))  # early if moved

    # -- one look -----------------------------------------------------------------------------

    async def run_due(self) -> float:
        """Decide and start what is due now; return the seconds until something might be."""
        now = self.clock.now()
        done = await self._decide(now)
        for push in done.claimed:
            shared = push.combine is not None
            self._chats[push.chat_id, shared] += 1
            self._shared += shared
            task = asyncio.create_task(self._send(push), name=f"push-{push.id}")
            self._in_flight[push.id] = task
        if done.ended:
            await self._tell(done.ended)
        for courier, pushes in _by_courier(self.couriers, done.postponed).items():
            await _quietly(courier.postponed(pushes), "postponed")
        if done.capped:
            await self._tell_owners(done.capped, now)
        if done.next_due is None:
            return POLL
        return max((done.next_due - self.clock.now()).total_seconds(), 0.0)

    async def _decide(self, now: datetime) -> _Pass:
        room = IN_FLIGHT - (len(self._in_flight) - self._shared)
        shared_room = SHARED_IN_FLIGHT - self._shared
        claimed: list[Row[Any]] = []
        capped: list[tuple[Row[Any], str]] = []
        postponed: list[Row[Any]] = []
        ended: list[Ended] = []
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
            for push in due:
                group = push.group_id
                rules = self.rules(group)
                known = self.registry.groups.get(group)
                if known is not None and known.status in GONE:
                    note = f"not sent: the bot is no longer in this group ({known.status.value})"
                    ended.append(Ended(push, PushStatus.FAILED, note=note))
                    continue
                if push.expires_at is not None and now >= push.expires_at:
                    note = "too late: its moment has passed"
                    ended.append(Ended(push, PushStatus.DROPPED, note=note))
                    continue
                if not push.urgent:
                    quiet_end = rules.quiet.until(now, rules.zone) if rules.quiet else None
                    if quiet_end is not None:
                        moves.append(_move(push, quiet_end, f"quiet hours ({rules.quiet})"))
                        postponed.append(push)
                        continue
                    if push.counts and rules.cap and counted[group] >= rules.cap:
                        note = f"the group's daily cap of {rules.cap} was reached"
                        if push.over_cap == "drop":
                            ended.append(Ended(push, PushStatus.DROPPED, note=note))
                            capped.append((push, "dropped"))
                            await self._courier(push).going(conn, push, now)
                        else:
                            moves.append(_move(push, next_day(now, rules.zone), note))
                            capped.append((push, "postponed"))
                            postponed.append(push)
                        continue
                shared = push.combine is not None
                if shared:
                    if shared_room <= 0 or chats[push.chat_id, True] >= SHARED_PER_CHAT:
                        skipped = True
                        continue
                    shared_room -= 1
                else:
                    if room <= 0 or chats[push.chat_id, False] >= PER_CHAT:
                        skipped = True
                        continue
                    room -= 1
                chats[push.chat_id, shared] += 1
                if push.counts:
                    counted[group] += 1
                claims.append(push.id)
                claimed.append(push)
                await self._courier(push).going(conn, push, now)
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
            if ended:
                await self._write_ends(conn, ended, now)
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
        return _Pass(claimed, capped, postponed, ended, next_due)

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

    def _courier(self, push: Row[Any]) -> Courier:
        return self.couriers[push.kind]

    async def _send(self, push: Row[Any]) -> None:
        try:
            ready = functools.partial(self._ready, push.id)
            delivered = await self._courier(push).send(push, ready)
        except Exception as exc:
            logger.bind(chat_id=push.chat_id).exception("push {} failed", push.key)
            delivered = Delivered(False, None, push.chat_id, f"{type(exc).__name__}: {exc}", 1)
        try:
            if delivered is None:
                ended = Ended(push, PushStatus.CANCELLED, note="cancelled before it went")
            elif delivered.ok:
                self.sent += 1
                ended = Ended(push, PushStatus.SENT, delivered)
            elif delivered.attempts == 0 and self.delivery.closing:
                # Never tried: the bot is stopping. It goes after the restart.
                ended = Ended(push, PushStatus.PENDING, delivered)
            else:
                self.failed += 1
                ended = Ended(push, PushStatus.FAILED, delivered, delivered.error)
            await self._ends.add(ended)  # its courier hears of it with the others written
        except Exception:
            logger.bind(chat_id=push.chat_id).exception("could not record push {}", push.key)
        finally:
            self._in_flight.pop(push.id, None)
            if not self._in_flight:  # every push handed out is recorded: none is `sending`
                self.wire.settled()
            shared = push.combine is not None
            self._chats[push.chat_id, shared] -= 1
            self._shared -= shared
            if self._chats[push.chat_id, shared] <= 0:
                del self._chats[push.chat_id, shared]
            self._wake.set()

    async def _ready(self, push_id: int) -> Asking:
        """Its turn has come: it is `sending` from now on, and noted as Telegram is asked."""
        await self._sending.add(push_id)
        return functools.partial(self.wire.note, (push_id,))

    async def _mark_sending(self, push_ids: list[int]) -> None:
        """Telegram is about to be asked for these: they may arrive from now on."""
        async with writing(self.engine) as conn:
            for part in chunks(push_ids):
                await conn.execute(
                    update(PUSHES)
                    .where(PUSHES.c.id.in_(part))
                    .values(status=PushStatus.SENDING.value)
                )

    async def _record(self, ended: list[Ended]) -> None:
        async with writing(self.engine) as conn:
            await self._write_ends(conn, ended, self.clock.now())
        await self._tell(ended)  # together: replies that shared a message move on at once

    async def _write_ends(self, conn: AsyncConnection, ended: list[Ended], now: datetime) -> None:
        """Store how pushes ended, with what their couriers keep of it, in one transaction."""
        rows, put_back, blocked = [], [], []
        for end in ended:
            delivered = end.delivered
            if end.status is PushStatus.PENDING:
                put_back.append({"push_id": end.push.id})
                continue
            rows.append(
                {
                    "push_id": end.push.id,
                    "status": end.status.value,
                    "note": end.note,
                    "message_id": delivered.message_id if delivered and end.sent else None,
                    "sent_at": now if end.sent else None,
                }
            )
            if (
                delivered is not None
                and end.push.chat_id > 0
                and BLOCKED in (delivered.error or "")
            ):
                blocked.append({"user": end.push.chat_id, "at": now})
        # Replies that shared one Telegram message ended alike: one statement for each such
        # message (a statement per row, under a busy event loop, waits for Python's lock row
        # after row in the driver's thread); pushes that ended on their own in one executemany.
        alike: dict[tuple[Any, ...], list[int]] = defaultdict(list)
        for row in rows:
            alike[_outcome(row)].append(row["push_id"])
        for outcome, ids in alike.items():
            if len(ids) > 1:
                values = dict(
                    zip(("status", "note", "message_id", "sent_at"), outcome, strict=True)
                )
                for part in chunks(ids):
                    await conn.execute(update(PUSHES).where(PUSHES.c.id.in_(part)).values(values))
        alone = [row for row in rows if len(alike[_outcome(row)]) == 1]
        if alone:
            await conn.execute(
                update(PUSHES)
                .where(PUSHES.c.id == bindparam("push_id"))
                .values(
                    status=bindparam("status"),
                    note=bindparam("note"),
                    message_id=bindparam("message_id"),
                    sent_at=bindparam("sent_at"),
                ),
                alone,
            )
        if put_back:  # never tried: the bot is stopping, it goes after the restart
            await conn.execute(
                update(PUSHES)
                .where(PUSHES.c.id == bindparam("push_id"))
                .values(status=PushStatus.PENDING.value, claimed_at=None),
                put_back,
            )
        if blocked:
            await conn.execute(
                update(BOT_USERS)
                .where(BOT_USERS.c.user_id == bindparam("user"))
                .values(blocked_at=bindparam("at")),
                blocked,
            )
        final = [end for end in ended if end.status is not PushStatus.PENDING]
        for courier, ends in _by_courier(self.couriers, final).items():
            await courier.recorded(conn, ends, now)

    async def _tell(self, ended: list[Ended]) -> None:
        """Their couriers hear how these ended (after the commit)."""
        final = [end for end in ended if end.status is not PushStatus.PENDING]
        for courier, ends in _by_courier(self.couriers, final).items():
            await _quietly(courier.done(ends), "done")

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
            titles = [self.registry.title(g) for g in chats]
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


def _by_courier(couriers: Mapping[str, Courier], items: list[Any]) -> dict[Courier, list[Any]]:
    """Pushes (or how they ended) grouped by the courier of their kind, in order."""
    grouped: dict[Courier, list[Any]] = {}
    for item in items:
        push = item.push if isinstance(item, Ended) else item
        grouped.setdefault(couriers[push.kind], []).append(item)
    return grouped


async def _quietly(work: Awaitable[None], what: str) -> None:
    try:
        await work
    except Exception:
        logger.exception("a push courier failed ({})", what)


def _outcome(row: dict[str, Any]) -> tuple[Any, ...]:
    """What a push ended with: pushes that shared a message ended alike."""
    return row["status"], row["note"], row["message_id"], row["sent_at"]


def _move(push: Row[Any], due: datetime, why: str) -> dict[str, Any]:
    return {"push_id": push.id, "due": due, "why": f"postponed: {why}"}
