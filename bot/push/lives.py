"""Live-stream sessions: an announcement pinned until the end, reminders before, private ones.

A live is a row in `lives` plus its pushes: the announcement (due when the live is made), one
group reminder per offset (`1d`, `1h`, `10m`, `0s` = at the start), and the unpin at the end.
Reminders are timed on the wall clock of the live's time zone for whole days ("1 day before"
a 20:00 live is 20:00 the day before, across a daylight-saving change too) and carry the live's
revision in their key: moving the live cancels the pending ones and queues a fresh set.

Pushes are rendered when they go, from the live as it is then. When a group reminder goes, each
member who pressed "Remind me" gets a private copy. "Remind me" and "Watch" are callback
buttons, so both are recorded (`live_subscribed`, `live_clicked`); a member who has not started
the bot is sent to it through a deep link (`/start remind_<id>`, `/start watch_<id>`), which
starts it and does what they asked.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Any
from zoneinfo import ZoneInfo

from aiogram.types import InlineKeyboardButton, InlineKeyboardMarkup
from loguru import logger
from sqlalchemy import Row, Update, func, select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from bot.activity import ActivityLog, event_row
from bot.clock import Clock
from bot.db import (
    BOT_USERS,
    LIVE_SUBSCRIPTIONS,
    LIVES,
    PUSHES,
    EventType,
    LiveStatus,
    PushKind,
    PushStatus,
    insert_for,
    reachable,
    writing,
)
from bot.delivery import Delivered
from bot.outbox import Before, Outbox, Waker
from bot.push.rows import Courier, add_pushes, push_row
from bot.push.rules import before_text, parse_before, reminder_at
from bot.registry import Registry
from bot.texts import Texts

DEFAULT_REMINDERS = ("1d", "1h", "10m", "0s")
DEFAULT_LENGTH = timedelta(hours=2)
START_GRACE = timedelta(minutes=15)  # an at-start reminder may still go this late
TITLE_LIMIT = 200
REMIND = "live:remind:"
WATCH = "live:watch:"


class LiveError(Exception):
    """A live that cannot be made or changed as asked: the key of a text saying why."""

    def __init__(self, key: str, **values: Any) -> None:
        super().__init__(key)
        self.key = key
        self.values = values


@dataclass(frozen=True, slots=True)
class Reminder:
    before: str  # as stored: 1d, 1h, 10m, 0s
    at: datetime


def reminder_times(starts_at: datetime, zone: tzinfo, reminders: Sequence[str]) -> list[Reminder]:
    """Each reminder's time, earliest first."""
    times = [
        Reminder(before, reminder_at(starts_at, zone, parse_before(before))) for before in reminders
    ]
    return sorted(times, key=lambda reminder: reminder.at)


def normalize_reminders(values: Sequence[str]) -> list[str]:
    """`["1d", "start", "1h"]` → `["1d", "1h", "0s"]` (longest first, no repeats)."""
    deltas = sorted({parse_before(value) for value in values}, reverse=True)
    return [before_text(delta) for delta in deltas]


class Lives:
    """Makes, moves and cancels lives, and sends their pushes for the push queue."""

    def __init__(
        self,
        engine: AsyncEngine,
        registry: Registry,
        activity: ActivityLog,
        outbox: Outbox,
        texts: Texts,
        queue: Waker,
        clock: Clock,
        *,
        default_zone: tzinfo,
        bot_username: str = "",
    ) -> None:
        self.engine = engine
        self.registry = registry
        self.activity = activity
        self.outbox = outbox
        self.texts = texts
        self.queue = queue
        self.clock = clock
        self.default_zone = default_zone
        self.bot_username = bot_username
        self.courier = LiveCourier(self)  # how the push queue sends live pushes

    # -- small helpers ------------------------------------------------------------------------

    def zone(self, chat_id: int) -> tzinfo:
        return self.registry.zone(chat_id, self.default_zone)

    def language(self, chat_id: int) -> str | None:
        known = self.registry.groups.get(chat_id)
        return known.language if known is not None else None

    def when(self, chat_id: int, moment: datetime, zone_name: str | None = None) -> str:
        zone = _zone(zone_name) if zone_name else self.zone(chat_id)
        local = moment.astimezone(zone)
        return f"{local:%Y-%m-%d %H:%M} ({local.tzname()})"

    def deep_link(self, action: str, live_id: int) -> str:
        return f"https://t.me/{self.bot_username}?start={action}_{live_id}"

    async def get(self, live_id: int) -> Row[Any] | None:
        async with self.engine.connect() as conn:
            return (await conn.execute(select(LIVES).where(LIVES.c.id == live_id))).first()

    # -- making, moving, cancelling -----------------------------------------------------------

    async def create(self, chat_id: int, **plan: Any) -> Row[Any]:
        """Make a live and queue its announcement, reminders and unpin (see `create_in`)."""
        async with writing(self.engine) as conn:
            live_id = await self.create_in(conn, chat_id, **plan)
        self.queue.wake()
        live = await self.get(live_id)
        assert live is not None
        return live

    async def create_in(
        self,
        conn: AsyncConnection,
        chat_id: int,
        *,
        title: str,
        starts_at: datetime,
        url: str | None = None,
        host: str = "",
        reminders: Sequence[str] = DEFAULT_REMINDERS,
        length: timedelta = DEFAULT_LENGTH,
        pin: bool = True,
        source: str,
        created_by: int | None = None,
        key: str | None = None,
    ) -> int:
        """Make a live in the caller's transaction (an SOP step's); return its id.

        `reminders` are offsets before the start (`1d`, `1h`, `10m`, `0s`); the announcement
        is unpinned `length` after the start. With `key`, a live already made under that key is
        returned instead of a second one.
        """
        now = self.clock.now()
        title = title.strip()
        if not title or len(title) > TITLE_LIMIT:
            raise LiveError("live.bad_title", limit=TITLE_LIMIT)
        if url is not None and not url.startswith(("https://", "http://")):
            raise LiveError("live.bad_url", url=url)
        if starts_at <= now:
            raise LiveError("live.in_past", when=self.when(chat_id, starts_at))
        if key is not None:
            found = (await conn.execute(select(LIVES.c.id).where(LIVES.c.key == key))).scalar()
            if found is not None:
                return int(found)
        zone = self.zone(chat_id)
        zone_name = str(getattr(zone, "key", "UTC"))
        result = await conn.execute(
            LIVES.insert().values(
                key=key,
                chat_id=chat_id,
                title=title,
                host=host,
                url=url,
                timezone=zone_name,
                starts_at=starts_at,
                ends_at=starts_at + length,
                reminders=normalize_reminders(reminders),
                pin=pin,
                status=LiveStatus.SCHEDULED.value,
                revision=0,
                source=source,
                created_by=created_by,
                created_at=now,
            )
        )
        live_id = int(result.inserted_primary_key[0])  # type: ignore[index]
        live = (await conn.execute(select(LIVES).where(LIVES.c.id == live_id))).one()
        rows = [
            _push(live, PushKind.LIVE_ANNOUNCE, "announce", now, now, expires_at=starts_at),
            # unpinning is tidying up: no quiet hours, no cap
            _push(live, PushKind.LIVE_UNPIN, "unpin", live.ends_at, now, urgent=True, counts=False),
            *self._reminder_rows(live, now),
        ]
        await add_pushes(conn, rows)
        return live_id

    def _reminder_rows(self, live: Row[Any], now: datetime) -> list[dict[str, Any]]:
        """The group reminders of `live` still ahead of `now`."""
        rows = []
        for reminder in reminder_times(live.starts_at, _zone(live.timezone), live.reminders):
            if reminder.at <= now and reminder.before != "0s":
                continue  # its time has passed (a live made or moved at short notice)
            at_start = reminder.before == "0s"
            rows.append(
                _push(
                    live,
                    PushKind.LIVE_REMINDER,
                    f"r{live.revision}:{reminder.before}",
                    max(reminder.at, now),
                    now,
                    before=reminder.before,
                    over_cap="drop",
                    expires_at=live.starts_at + START_GRACE if at_start else live.starts_at,
                )
            )
        return rows

    async def _scheduled(self, conn: AsyncConnection, live_id: int, chat_id: int) -> Row[Any]:
        live = (
            await conn.execute(
                select(LIVES).where(LIVES.c.id == live_id, LIVES.c.chat_id == chat_id)
            )
        ).first()
        if live is None:
            raise LiveError("live.unknown", id=live_id)
        if live.status != LiveStatus.SCHEDULED or live.ends_at <= self.clock.now():
            raise LiveError("live.over", id=live_id)
        return live

    async def move(self, live_id: int, chat_id: int, starts_at: datetime) -> Row[Any]:
        """Move a live: every pending reminder is replaced by one at the new time."""
        now = self.clock.now()
        if starts_at <= now:
            raise LiveError("live.in_past", when=self.when(chat_id, starts_at))
        async with writing(self.engine) as conn:
            live = await self._scheduled(conn, live_id, chat_id)
            ends_at = starts_at + (live.ends_at - live.starts_at)
            await conn.execute(
                update(LIVES)
                .where(LIVES.c.id == live_id)
                .values(starts_at=starts_at, ends_at=ends_at, revision=LIVES.c.revision + 1)
            )
            cancelled = {"status": PushStatus.CANCELLED.value, "note": "the live moved"}
            await conn.execute(_pending(live_id, PushKind.LIVE_REMINDER).values(cancelled))
            await conn.execute(
                _pending(live_id, PushKind.LIVE_ANNOUNCE).values(expires_at=starts_at)
            )
            await conn.execute(
                _pending(live_id, PushKind.LIVE_UNPIN).values(due_at=ends_at, planned_at=ends_at)
            )
            moved = (await conn.execute(select(LIVES).where(LIVES.c.id == live_id))).one()
            await add_pushes(conn, self._reminder_rows(moved, now))
        self.queue.wake()
        await self._refresh_announcement(moved)
        return moved

    async def cancel(self, live_id: int, chat_id: int) -> Row[Any]:
        """Cancel a live: nothing more is sent for it, and its announcement is unpinned."""
        now = self.clock.now()
        async with writing(self.engine) as conn:
            await self._scheduled(conn, live_id, chat_id)
            await conn.execute(
                update(LIVES).where(LIVES.c.id == live_id).values(status=LiveStatus.CANCELLED.value)
            )
            await conn.execute(
                _pending(live_id)
                .where(PUSHES.c.kind != PushKind.LIVE_UNPIN.value)
                .values(status=PushStatus.CANCELLED.value, note="the live was cancelled")
            )
            await conn.execute(_pending(live_id, PushKind.LIVE_UNPIN).values(due_at=now))
            cancelled = (await conn.execute(select(LIVES).where(LIVES.c.id == live_id))).one()
        self.queue.wake()
        await self._refresh_announcement(cancelled)
        return cancelled

    async def upcoming(self, chat_id: int) -> list[tuple[Row[Any], int]]:
        """The group's lives not over yet, soonest first, with their subscriber counts."""
        now = self.clock.now()
        async with self.engine.connect() as conn:
            lives = list(
                await conn.execute(
                    select(LIVES)
                    .where(
                        LIVES.c.chat_id == chat_id,
                        LIVES.c.status == LiveStatus.SCHEDULED.value,
                        LIVES.c.ends_at > now,
                    )
                    .order_by(LIVES.c.starts_at)
                    .limit(20)
                )
            )
            subscribed = await conn.execute(
                select(LIVE_SUBSCRIPTIONS.c.live_id, func.count())
                .where(LIVE_SUBSCRIPTIONS.c.live_id.in_([live.id for live in lives]))
                .group_by(LIVE_SUBSCRIPTIONS.c.live_id)
            )
            counts = {live_id: count for live_id, count in subscribed}
        return [(live, counts.get(live.id, 0)) for live in lives]

    # -- members ------------------------------------------------------------------------------

    async def started(self, user_id: int) -> None:
        """The user started the bot in private: it may write to them."""
        now = self.clock.now()
        stmt = insert_for(self.engine, BOT_USERS).values(user_id=user_id, started_at=now)
        stmt = stmt.on_conflict_do_update(
            index_elements=["user_id"], set_={"started_at": now, "blocked_at": None}
        )
        async with writing(self.engine) as conn:
            await conn.execute(stmt)

    async def reachable(self, user_id: int) -> bool:
        """Whether the user started the bot and has not blocked it since."""
        async with self.engine.connect() as conn:
            return user_id in await reachable(conn, [user_id])

    async def subscribe(self, live_id: int, user_id: int) -> tuple[str, Row[Any] | None]:
        """Remind the member privately: (`subscribed` | `already` | `over` | `unknown`, live)."""
        live = await self.get(live_id)
        if live is None:
            return "unknown", None
        if live.status != LiveStatus.SCHEDULED or live.starts_at + START_GRACE <= self.clock.now():
            return "over", live
        stmt = insert_for(self.engine, LIVE_SUBSCRIPTIONS).values(
            live_id=live_id, user_id=user_id, at=self.clock.now()
        )
        async with writing(self.engine) as conn:
            result = await conn.execute(stmt.on_conflict_do_nothing())
        if not result.rowcount:
            return "already", live
        self._event(live, user_id, EventType.LIVE_SUBSCRIBED)
        return "subscribed", live

    def clicked(self, live: Row[Any], user_id: int) -> None:
        """The member asked for the live's link."""
        self._event(live, user_id, EventType.LIVE_CLICKED)

    def _event(self, live: Row[Any], user_id: int, kind: EventType) -> None:
        self.activity.add(
            event_row(
                chat_id=live.chat_id,
                user_id=user_id,
                at=self.clock.now(),
                type=kind,
                data={"live": live.id},
            )
        )

    # -- texts --------------------------------------------------------------------------------

    def context(self, live: Row[Any]) -> dict[str, Any]:
        return {
            "id": live.id,
            "title": live.title,
            "host": live.host,
            "url": live.url,
            "starts": self.when(live.chat_id, live.starts_at, live.timezone),
            "cancelled": live.status == LiveStatus.CANCELLED,
        }

    def soon(self, before: str, language: str | None) -> str:
        """`1d` → "in 1 day" / "1 天后"; `0s` → "now"."""
        delta = parse_before(before)
        if not delta:
            return self.texts("live.now", language)
        if delta % timedelta(days=1) == timedelta(0):
            return self.texts("live.in_days", language, n=delta.days)
        if delta % timedelta(hours=1) == timedelta(0):
            return self.texts("live.in_hours", language, n=int(delta.total_seconds() // 3600))
        return self.texts("live.in_minutes", language, n=int(delta.total_seconds() // 60))

    def buttons(self, live: Row[Any], language: str | None) -> InlineKeyboardMarkup:
        row = [
            InlineKeyboardButton(
                text=self.texts("live.remind_button", language), callback_data=f"{REMIND}{live.id}"
            )
        ]
        if live.url:
            row.append(
                InlineKeyboardButton(
                    text=self.texts("live.watch_button", language),
                    callback_data=f"{WATCH}{live.id}",
                )
            )
        return InlineKeyboardMarkup(inline_keyboard=[row])

    def link_button(self, live: Row[Any], language: str | None) -> InlineKeyboardMarkup | None:
        if not live.url:
            return None
        button = InlineKeyboardButton(text=self.texts("live.watch_button", language), url=live.url)
        return InlineKeyboardMarkup(inline_keyboard=[[button]])

    def announcement(self, live: Row[Any]) -> str:
        return self.texts("live.announce", self.language(live.chat_id), live=self.context(live))

    async def _refresh_announcement(self, live: Row[Any]) -> None:
        """Show a moved or cancelled live in its announcement (and unpin it if cancelled)."""
        if live.message_id is None:
            return
        language = self.language(live.chat_id)
        cancelled = live.status == LiveStatus.CANCELLED
        source = f"live:{live.id}"
        await self.outbox.edit_text(
            live.chat_id,
            live.message_id,
            self.announcement(live),
            source=source,
            reply_markup=None if cancelled else self.buttons(live, language),
        )

    # -- the push queue's side ----------------------------------------------------------------

    async def send(self, push: Row[Any], before: Before) -> Delivered | None:
        """Send a live's push as the live is now (awaiting `before` just before Telegram is
        asked for a message); None when the live was cancelled."""
        live = await self.get(push.live_id)
        if live is None:
            return None
        source = f"live:{live.id}"
        if push.kind == PushKind.LIVE_UNPIN:
            if live.message_id is None or not live.pin:
                return Delivered(True, None, live.chat_id)
            return await self.outbox.unpin(live.chat_id, live.message_id, source=source)
        if live.status == LiveStatus.CANCELLED:
            return None
        language = self.language(live.chat_id)
        context = self.context(live)
        if push.kind == PushKind.LIVE_ANNOUNCE:
            delivered = await self.outbox.send_message(
                live.chat_id,
                self.announcement(live),
                source=source,
                reply_markup=self.buttons(live, language),
                before=before,
            )
            if delivered.ok and delivered.message_id is not None:
                async with writing(self.engine) as conn:
                    await conn.execute(
                        update(LIVES)
                        .where(LIVES.c.id == live.id)
                        .values(message_id=delivered.message_id)
                    )
                if live.pin:
                    pinned = await self.outbox.pin(
                        delivered.chat_id, delivered.message_id, source=source
                    )
                    if not pinned.ok:
                        logger.bind(chat_id=live.chat_id).warning(
                            "could not pin live {}'s announcement: {}", live.id, pinned.error
                        )
            return delivered
        soon = self.soon(push.before or "0s", language)
        at_start = not parse_before(push.before or "0s")
        if push.kind == PushKind.LIVE_REMINDER:
            return await self.outbox.send_message(
                live.chat_id,
                self.texts("live.reminder", language, live=context, soon=soon, at_start=at_start),
                source=source,
                reply_markup=self.buttons(live, language),
                reply_to_message_id=live.message_id,
                before=before,
            )
        return await self.outbox.send_message(
            push.chat_id,
            self.texts(
                "live.private",
                language,
                live=context,
                soon=soon,
                at_start=at_start,
                group=self._title(live.chat_id),
            ),
            source=source,
            reply_markup=self.link_button(live, language),
            before=before,
        )

    def _title(self, chat_id: int) -> str:
        known = self.registry.groups.get(chat_id)
        return known.title if known is not None and known.title else str(chat_id)

    async def fan_out(self, conn: AsyncConnection, push: Row[Any], now: datetime) -> None:
        """Queue a private copy of a group reminder for each subscriber of its live."""
        users = (
            await conn.execute(
                select(LIVE_SUBSCRIPTIONS.c.user_id).where(
                    LIVE_SUBSCRIPTIONS.c.live_id == push.live_id
                )
            )
        ).scalars()
        rows = [
            push_row(
                key=f"{push.key}:u{user_id}",
                kind=PushKind.LIVE_PRIVATE,
                chat_id=user_id,
                group_id=push.group_id,
                source=push.source,
                due_at=now,
                now=now,
                live_id=push.live_id,
                before=push.before,
                urgent=True,  # a private reminder the member asked for: the group's rules
                counts=False,  # are for the group's feed
                expires_at=push.expires_at,
            )
            for user_id in users
        ]
        if rows:
            await add_pushes(conn, rows)


def _push(
    live: Row[Any], kind: PushKind, name: str, due_at: datetime, now: datetime, **options: Any
) -> dict[str, Any]:
    """A push of `live` to its group, keyed `live:<id>:<name>`."""
    return push_row(
        key=f"live:{live.id}:{name}",
        kind=kind,
        chat_id=live.chat_id,
        source=f"live:{live.id}",
        due_at=due_at,
        now=now,
        live_id=live.id,
        **options,
    )


def _pending(live_id: int, kind: PushKind | None = None) -> Update:
    """An update of the live's pushes still pending (of one kind, if given)."""
    stmt = update(PUSHES).where(
        PUSHES.c.live_id == live_id, PUSHES.c.status == PushStatus.PENDING.value
    )
    return stmt if kind is None else stmt.where(PUSHES.c.kind == kind.value)


def _zone(name: str) -> tzinfo:
    try:
        return ZoneInfo(name)
    except (ValueError, KeyError):  # ZoneInfoNotFoundError is a KeyError
        return UTC


LIVE_KINDS = (
    PushKind.LIVE_ANNOUNCE,
    PushKind.LIVE_REMINDER,
    PushKind.LIVE_PRIVATE,
    PushKind.LIVE_UNPIN,
)


class LiveCourier(Courier):
    """Sends live pushes as the live is now; a group reminder that goes (or is dropped over the
    cap) fans out to its subscribers' private copies."""

    def __init__(self, lives: Lives) -> None:
        super().__init__(lives.outbox)
        self.lives = lives

    async def send(self, push: Row[Any], before: Before) -> Delivered | None:
        return await self.lives.send(push, before)

    async def going(self, conn: AsyncConnection, push: Row[Any], now: datetime) -> None:
        if push.kind == PushKind.LIVE_REMINDER:
            await self.lives.fan_out(conn, push, now)
