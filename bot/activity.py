"""The activity log: group messages, presses and membership changes, written in batches."""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from aiogram.enums import ContentType
from aiogram.types import CallbackQuery, Message, User
from loguru import logger
from sqlalchemy import case, func, insert
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.sql.dml import Insert

from bot.db import EVENTS, MEMBERS, EventType, insert_for, writing
from bot.db.bulk import Bulk

MEMBER_ACTIVITY = (
    "chat_id",
    "user_id",
    "first_name",
    "last_name",
    "username",
    "is_bot",
    "status",
    "first_activity_at",
    "last_activity_at",
    "message_count",
)

# Content types that Telegram uses for service messages; everything else a person sent.
SERVICE_CONTENT = frozenset(
    {
        "new_chat_members",
        "left_chat_member",
        "new_chat_title",
        "new_chat_photo",
        "delete_chat_photo",
        "group_chat_created",
        "supergroup_chat_created",
        "channel_chat_created",
        "message_auto_delete_timer_changed",
        "migrate_to_chat_id",
        "migrate_from_chat_id",
        "pinned_message",
        "boost_added",
        "chat_background_set",
        "chat_shared",
        "users_shared",
        "connected_website",
        "write_access_allowed",
        "proximity_alert_triggered",
        "forum_topic_created",
        "forum_topic_edited",
        "forum_topic_closed",
        "forum_topic_reopened",
        "general_forum_topic_hidden",
        "general_forum_topic_unhidden",
        "giveaway_created",
        "giveaway_completed",
        "video_chat_scheduled",
        "video_chat_started",
        "video_chat_ended",
        "video_chat_participants_invited",
    }
)


_KIND: dict[str, str] = {kind: kind.value for kind in ContentType}
# The event types of messages, as stored (an enum's `.value` costs more than the rest of a row).
_MESSAGE, _COMMAND, _BOT_MESSAGE = (
    EventType.MESSAGE.value,
    EventType.COMMAND.value,
    EventType.BOT_MESSAGE.value,
)

EVENT_COLUMNS = (
    "chat_id",
    "user_id",
    "at",
    "type",
    "kind",
    "message_id",
    "text_length",
    "is_reply",
    "is_forward",
    "text",
    "data",
)
EventRow = tuple[
    int,
    int | None,
    datetime,
    str,
    str | None,
    int | None,
    int | None,
    bool,
    bool,
    str | None,
    dict[str, Any] | None,
]


def event_row(
    *,
    chat_id: int,
    at: datetime,
    type: EventType,
    user_id: int | None = None,
    kind: str | None = None,
    message_id: int | None = None,
    text_length: int | None = None,
    is_reply: bool = False,
    is_forward: bool = False,
    text: str | None = None,
    data: dict[str, Any] | None = None,
) -> EventRow:
    """One row of the events table, its values in the order of EVENT_COLUMNS."""
    return (
        chat_id,
        user_id,
        at,
        type.value,
        kind,
        message_id,
        text_length,
        is_reply,
        is_forward,
        text,
        data,
    )


@dataclass(slots=True)
class _Activity:
    """What one member did in one group since the last flush."""

    first_name: str
    last_name: str | None
    username: str | None
    is_bot: bool
    first_at: datetime
    last_at: datetime
    messages: int


class ActivityLog:
    """Buffers events and member activity, and writes them with one transaction per batch.

    A batch is written when it reaches `batch_size` rows or `interval` seconds after the last
    write, whichever comes first (a write's fixed cost, its turn at the writer queue and the
    driver's round trips, is then spread over up to a thousand rows of a busy stream).
    `close()` writes what is left, so a clean stop loses nothing.
    A failed write keeps the rows and is retried; nothing is dropped unless the buffer passes
    `max_buffered` rows (a database that has been down for a long time).

    Updates that find `high_water` rows waiting wait until the writer takes them (`make_room`).
    The writer runs in the driver's thread, which needs Python's lock for every statement; while
    the event loop is never idle it gets that lock only now and then, and without this the
    buffer (what a crash would lose, and what the garbage collector walks) grows for as long as
    the stream lasts.
    """

    def __init__(
        self,
        engine: AsyncEngine,
        *,
        store_text: bool = False,
        batch_size: int = 1000,
        interval: float = 0.5,
        max_buffered: int = 1_000_000,
        high_water: int = 5_000,
    ) -> None:
        self.engine = engine
        self.store_text = store_text
        self.batch_size = batch_size
        self.interval = interval
        self.max_buffered = max_buffered
        self.high_water = high_water
        self._failing = False  # the last background write failed: don't hold updates up
        self._room = asyncio.Event()  # set when a write takes the buffer
        self.written = 0
        self._events: list[EventRow] = []
        self._activity: dict[tuple[int, int], _Activity] = {}
        self._remap: dict[int, int] = {}
        self._full = asyncio.Event()
        self._write_lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self._insert_events: Bulk | None = None
        self._upsert_members: Bulk | None = None

    # -- recording (synchronous, on the hot path) -------------------------------------------

    def add(self, row: EventRow) -> None:
        """Append one event row (see `event_row`)."""
        self._events.append(row)
        if len(self._events) >= self.batch_size:
            self._full.set()

    def touch(self, chat_id: int, user: User, at: datetime, messages: int = 0) -> None:
        """Note that `user` was active in `chat_id` at `at`, having sent `messages` messages."""
        key = (chat_id, user.id)
        seen = self._activity.get(key)
        if seen is None:
            self._activity[key] = _Activity(
                user.first_name, user.last_name, user.username, user.is_bot, at, at, messages
            )
            return
        seen.first_name, seen.last_name, seen.username = (
            user.first_name,
            user.last_name,
            user.username,
        )
        if at > seen.last_at:  # in order, as nearly always: one comparison
            seen.last_at = at
        elif at < seen.first_at:
            seen.first_at = at
        seen.messages += messages

    def message(self, message: Message) -> None:
        """Record a message sent in a group."""
        content = message.content_type
        if content in SERVICE_CONTENT:
            return
        user = message.from_user
        text = message.text
        body = text if text is not None else message.caption
        data: dict[str, Any] | None = None
        event_type = _MESSAGE
        if message.sender_chat is not None:
            data = {"sender_chat_id": message.sender_chat.id}
            user = None
        elif user is not None and user.is_bot:
            event_type = _BOT_MESSAGE
        if text is not None and text.startswith("/") and len(text) > 1:
            command = text[1:].split(maxsplit=1)[0].split("@", 1)[0].lower()
            data = {**(data or {}), "command": command}
            if event_type is _MESSAGE:
                event_type = _COMMAND
        # In UTC's own tzinfo (aiogram's is pydantic's): compared, hashed and stored at a
        # fraction of the cost, on every message.
        at = message.date.astimezone(UTC)
        self.add(
            (
                message.chat.id,
                None if user is None else user.id,
                at,
                event_type,
                _KIND.get(content, content),  # plain str: rows of plain values are not GC-tracked
                message.message_id,
                0 if body is None else len(body),
                message.reply_to_message is not None and not message.is_topic_message,
                message.forward_origin is not None,
                body if self.store_text else None,
                data,
            )
        )
        if user is not None and event_type is not _BOT_MESSAGE:
            self.touch(message.chat.id, user, at, 1)

    def callback(self, query: CallbackQuery, at: datetime) -> None:
        """Record a button press on a message in a group."""
        message = query.message
        if message is None:
            return
        self.add(
            event_row(
                chat_id=message.chat.id,
                user_id=query.from_user.id,
                at=at,
                type=EventType.CALLBACK,
                message_id=message.message_id,
                data={"data": query.data} if query.data is not None else None,
            )
        )
        if not query.from_user.is_bot:
            self.touch(message.chat.id, query.from_user, at)

    async def make_room(self) -> None:
        """On the hot path, after recording: past `high_water` rows waiting, wait until the
        background writer takes them (while it writes them, new rows gather again)."""
        if len(self._events) < self.high_water or self._failing or self._task is None:
            return
        self._room.clear()
        self._full.set()
        await self._room.wait()

    @property
    def pending(self) -> int:
        """Rows waiting to be written."""
        return len(self._events) + len(self._activity)

    # -- writing ------------------------------------------------------------------------------

    def start(self) -> None:
        """Start writing in the background."""
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="activity-log-writer")

    async def close(self) -> None:
        """Stop the background writer after its current write, then write everything left."""
        self._closing = True
        self._full.set()
        self._room.set()
        if self._task is not None:
            await self._task
            self._task = None
        for attempt in range(5):
            try:
                await self.flush()
                return
            except Exception:
                logger.exception("final write of the activity log failed (attempt {})", attempt + 1)
                await asyncio.sleep(0.5 * (attempt + 1))
        logger.error("{} activity rows could not be written before stopping", self.pending)

    def remap_chat(self, old_id: int, new_id: int) -> None:
        """Store rows of `old_id` (a group that became a supergroup) under `new_id` from now on."""
        self._remap[old_id] = new_id

    async def flush(self) -> int:
        """Write all buffered rows in one transaction; return how many events were written."""
        async with self._write_lock:
            events, self._events = self._events, []
            activity, self._activity = self._activity, {}
            self._full.clear()
            self._room.set()
            if not events and not activity:
                return 0
            try:
                await self._write(events, activity)
            except BaseException:
                self._restore(events, activity)
                raise
            self.written += len(events)
            return len(events)

    async def _write(
        self, events: list[EventRow], activity: dict[tuple[int, int], _Activity]
    ) -> None:
        remap = self._remap
        if remap:
            events = [(remap.get(row[0], row[0]), *row[1:]) for row in events]
        members = [
            (
                remap.get(chat_id, chat_id),
                user_id,
                seen.first_name,
                seen.last_name,
                seen.username,
                seen.is_bot,
                "member",
                seen.first_at,
                seen.last_at,
                seen.messages,
            )
            for (chat_id, user_id), seen in activity.items()
        ]
        if self._insert_events is None or self._upsert_members is None:
            dialect = self.engine.dialect
            self._insert_events = Bulk(
                insert(EVENTS).values(dict.fromkeys(EVENT_COLUMNS)), dialect, EVENT_COLUMNS
            )
            self._upsert_members = Bulk(self._member_upsert(), dialect, MEMBER_ACTIVITY)
        # Prepared before this writer's turn, so that other writers do not wait on it.
        insert_events = await self._insert_events.prepare(events)
        upsert_members = await self._upsert_members.prepare(members)
        async with writing(self.engine) as conn:
            await Bulk.run(conn, insert_events)
            await Bulk.run(conn, upsert_members)

    def _restore(self, events: list[EventRow], activity: dict[tuple[int, int], _Activity]) -> None:
        """Put rows of a failed write back in front of newer ones."""
        self._events[:0] = events
        for key, seen in activity.items():
            newer = self._activity.get(key)
            if newer is not None:
                seen.first_at = min(seen.first_at, newer.first_at)
                seen.last_at = max(seen.last_at, newer.last_at)
                seen.messages += newer.messages
            self._activity[key] = seen
        overflow = len(self._events) - self.max_buffered
        if overflow > 0:
            del self._events[:overflow]
            logger.error("activity log buffer full: dropped the {} oldest events", overflow)

    def _member_upsert(self) -> Insert:
        stmt = insert_for(self.engine, MEMBERS).values(dict.fromkeys(MEMBER_ACTIVITY))
        new = stmt.excluded
        return stmt.on_conflict_do_update(
            index_elements=["chat_id", "user_id"],
            set_={
                "first_name": new.first_name,
                "last_name": new.last_name,
                "username": new.username,
                "message_count": MEMBERS.c.message_count + new.message_count,
                "first_activity_at": func.coalesce(
                    MEMBERS.c.first_activity_at, new.first_activity_at
                ),
                "last_activity_at": case(
                    (MEMBERS.c.last_activity_at.is_(None), new.last_activity_at),
                    (MEMBERS.c.last_activity_at < new.last_activity_at, new.last_activity_at),
                    else_=MEMBERS.c.last_activity_at,
                ),
            },
        )

    async def _run(self) -> None:
        delay = self.interval
        while not self._closing:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._full.wait(), timeout=delay)
            if self._closing:
                return
            try:
                await self.flush()
                delay, self._failing = self.interval, False
            except Exception:
                self._failing = True
                self._room.set()
                delay = min(max(delay * 2, 1.0), 30.0)
                logger.exception("writing the activity log failed; retrying in {:.0f}s", delay)
