"""Rows of the one outbox (`pushes`), and the couriers that send each kind and hear how it went.

Everything the bot starts on its own is a row of `pushes`, added in the transaction of what
caused it (an SOP step claimed, a broadcast confirmed, a lottery opened or drawn, a live made),
so it is never lost and never added twice (its unique `key`). The push queue
(`bot.push.queue`) sends it when the group allows, through the courier of its kind:

- `send` makes the message (the stored text, or rendered as things are when it goes);
- `going` runs in the transaction that claims or drops it (a live reminder fans out);
- `recorded` runs in the transaction that records how it ended (a lottery keeps its post's
  message id), and `done` after that commit (an SOP's runs move on);
- `postponed` hears that quiet hours or the daily cap hold it for later.

Whether quiet hours and the cap apply is the entry's own: `urgent` goes at once, `counts` counts
toward the group's daily cap. No kind is a special case of the queue.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import Row
from sqlalchemy.ext.asyncio import AsyncConnection

from bot.db import PUSHES, PushKind, PushStatus, insert_for
from bot.outbox import Before, Outbox

if TYPE_CHECKING:
    from aiogram.types import InlineKeyboardMarkup

    from bot.delivery import Delivered

INTERRUPTED = "the bot stopped while sending; it may have arrived, so it is not sent again"


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
    photo: str | None = None,
    reply_to: int | None = None,
    combine: str | None = None,
    ref: dict[str, Any] | None = None,
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
        "photo": photo,
        "reply_to": reply_to,
        "combine": combine,
        "ref": ref,
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


async def add_pushes(conn: AsyncConnection, rows: Sequence[dict[str, Any]]) -> None:
    """Insert pushes, skipping any whose key is already there (one statement for all: a
    multi-row VALUES would be compiled anew for every call)."""
    if rows:
        stmt = insert_for(conn, PUSHES).on_conflict_do_nothing(index_elements=["key"])
        await conn.execute(stmt, list(rows))


class Doorbell:
    """Rung by whoever adds pushes (lives, broadcasts, SOP steps, lotteries), so the queue looks
    at once instead of at its next poll; made before the queue and the services that add."""

    def __init__(self) -> None:
        self.rung = asyncio.Event()

    def wake(self) -> None:
        self.rung.set()


@dataclass(frozen=True, slots=True)
class Ended:
    """How a push ended: its row as claimed, its new status, and Telegram's answer when asked
    (None when it was not: cancelled, dropped, failed before sending, or interrupted)."""

    push: Row[Any]
    status: PushStatus
    delivered: Delivered | None = None
    note: str | None = None

    @property
    def sent(self) -> bool:
        return self.status is PushStatus.SENT

    @property
    def interrupted(self) -> bool:
        """The bot stopped while Telegram was asked: it may have arrived."""
        return self.note == INTERRUPTED


class Courier:
    """Sends pushes of some kinds; this one sends the stored message as it is (broadcasts, SOP
    `broadcast` steps). Kinds with owners to tell subclass it and override the hooks."""

    def __init__(self, outbox: Outbox, content_dir: Path | None = None) -> None:
        self.outbox = outbox
        self.content_dir = content_dir  # where photos named by a relative path are

    async def send(self, push: Row[Any], before: Before) -> Delivered | None:
        """Send the stored text (or photo with its caption); pin it if asked."""
        from aiogram.types import FSInputFile, InlineKeyboardMarkup  # `tidepool check`: no aiogram

        markup = InlineKeyboardMarkup.model_validate(push.markup) if push.markup else None
        if push.photo is not None:
            photo = (
                push.photo
                if push.photo.startswith("https://")
                else FSInputFile((self.content_dir or Path()) / push.photo)
            )
            delivered = await self.outbox.send_photo(
                push.chat_id,
                photo,
                caption=push.text,
                source=push.source,
                reply_markup=markup,
                reply_to_message_id=push.reply_to,
                before=before,
            )
        else:
            delivered = await self.outbox.send_message(
                push.chat_id,
                push.text or "",
                source=push.source,
                reply_markup=markup,
                reply_to_message_id=push.reply_to,
                combine=push.combine,
                before=before,
            )
        if delivered.ok and push.pin and delivered.message_id is not None:
            await self.outbox.pin(delivered.chat_id, delivered.message_id, source=push.source)
        return delivered

    async def going(self, conn: AsyncConnection, push: Row[Any], now: datetime) -> None:
        """It is claimed, or dropped over the cap (in that transaction)."""

    async def postponed(self, pushes: list[Row[Any]]) -> None:
        """Quiet hours or the daily cap hold these for later (after the commit)."""

    async def recorded(self, conn: AsyncConnection, ended: list[Ended], now: datetime) -> None:
        """These ended (in the transaction that records it)."""

    async def done(self, ended: list[Ended]) -> None:
        """These ended (after the commit)."""
