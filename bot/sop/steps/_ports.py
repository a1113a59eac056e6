"""The bot's services as the step types use them: sending, lotteries, lives, the queues to wake.

Protocols only, so that `tidepool check` (which looks step types up too) never loads aiogram.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from aiogram.types import FSInputFile, InlineKeyboardMarkup
    from sqlalchemy.ext.asyncio import AsyncConnection

    from bot.delivery import Delivered
    from bot.sop.format import LotteryAction


class Outbox(Protocol):
    """The delivery service as the engine uses it (`bot.delivery.Delivery`)."""

    async def send_message(
        self,
        chat_id: int,
        text: str,
        *,
        source: str,
        reply_markup: InlineKeyboardMarkup | None = None,
        reply_to_message_id: int | None = None,
        combine: str | None = None,
    ) -> Delivered: ...

    async def send_photo(
        self,
        chat_id: int,
        photo: str | FSInputFile,
        *,
        caption: str | None = None,
        source: str,
        reply_markup: InlineKeyboardMarkup | None = None,
        reply_to_message_id: int | None = None,
    ) -> Delivered: ...

    async def pin(self, chat_id: int, message_id: int, *, source: str) -> Delivered: ...


class LotteryOpener(Protocol):
    """What a `lottery` step needs of bot.lottery.service.Lotteries."""

    async def open_in(
        self,
        conn: AsyncConnection,
        chat_id: int,
        action: LotteryAction,
        *,
        source: str,
        run_id: int | None,
        now: datetime,
    ) -> Any: ...

    async def post(self, lottery_id: int, *, reply_to: int | None = None) -> None: ...

    def when(self, chat_id: int, moment: datetime) -> str: ...

    def wake(self) -> None: ...


class LiveMaker(Protocol):
    """What a `live` step needs of bot.push.lives.Lives."""

    async def create_in(
        self,
        conn: AsyncConnection,
        chat_id: int,
        *,
        title: str,
        starts_at: datetime,
        url: str | None = None,
        host: str = "",
        reminders: Sequence[str] = (),
        length: timedelta = ...,
        pin: bool = True,
        source: str,
        created_by: int | None = None,
        key: str | None = None,
    ) -> int: ...


class Waker(Protocol):
    """A queue told that work was added for it (the push queue, scheduled deletions)."""

    def wake(self) -> None: ...
