"""The bot's services as the step types use them: lotteries and lives (sending and the queues to
wake are `bot.outbox`'s).

Protocols only, so that `tidepool check` (which looks step types up too) never loads aiogram.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Protocol

from bot.outbox import Outbox, Waker

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncConnection

    from bot.sop.format import LotteryAction


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


__all__ = ["LiveMaker", "LotteryOpener", "Outbox", "Waker"]
