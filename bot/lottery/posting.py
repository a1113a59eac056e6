"""A lottery's post and announcement as pushes of the one outbox: added in the transaction that
opens or draws the lottery, sent once by the push queue, and kept on the lottery once they went.

The post goes at once (its deadline is already running); the announcement is rendered when it
goes, with the winners and their names as they are then. A stop while Telegram is asked for the
announcement leaves it `interrupted`: it is never sent twice, and the winners are still told
(`lottery.won`), since the draw stands.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from datetime import datetime
from typing import TYPE_CHECKING, Any

from loguru import logger
from sqlalchemy import Row, update
from sqlalchemy.ext.asyncio import AsyncConnection

from bot.db import LOTTERIES, LotteryStatus, PushKind
from bot.lottery.store import Lottery, LotteryStore
from bot.lottery.wording import LotteryWording
from bot.outbox import Before, Outbox
from bot.push.rows import Courier, Ended, push_row

if TYPE_CHECKING:
    from bot.delivery import Delivered

SOURCE = "lottery"


def post_row(lottery: Lottery, now: datetime, reply_to: int | None = None) -> dict[str, Any]:
    """The push of a lottery's post."""
    return push_row(
        key=f"lottery:{lottery.id}:post",
        kind=PushKind.LOTTERY_POST,
        chat_id=lottery.chat_id,
        source=SOURCE,
        due_at=now,
        now=now,
        reply_to=reply_to,
        urgent=True,
        ref={"lottery": lottery.id},
    )


def announcement_row(lottery_id: int, chat_id: int, now: datetime) -> dict[str, Any]:
    """The push of a drawn lottery's announcement."""
    return push_row(
        key=f"lottery:{lottery_id}:announce",
        kind=PushKind.LOTTERY_ANNOUNCE,
        chat_id=chat_id,
        source=SOURCE,
        due_at=now,
        now=now,
        urgent=True,
        ref={"lottery": lottery_id},
    )


Names = Callable[[int, Iterable[int]], Awaitable[dict[int, str]]]
Won = Callable[[Lottery, list[int]], None]  # tell the SOPs who won
Closed = Callable[[Lottery], Awaitable[None]]  # the post shows the lottery closed


class LotteryCourier(Courier):
    """Sends lottery posts and announcements; keeps their message ids on the lottery."""

    def __init__(
        self,
        outbox: Outbox,
        store: LotteryStore,
        wording: LotteryWording,
        *,
        names: Names,
        won: Won,
        close_post: Closed,
        posted: Callable[[int], None],
    ) -> None:
        super().__init__(outbox)
        self.store = store
        self.wording = wording
        self.names = names
        self.won = won
        self.close_post = close_post
        self.posted = posted  # the entry count may be shown now

    async def send(self, push: Row[Any], before: Before) -> Delivered | None:
        lottery = await self.store.get(int((push.ref or {})["lottery"]))
        if lottery is None:
            return None
        if push.kind == PushKind.LOTTERY_POST:
            if lottery.status == LotteryStatus.CANCELLED or lottery.message_id is not None:
                return None
            return await self.outbox.send_message(
                lottery.chat_id,
                self.wording.post_text(lottery),
                source=SOURCE,
                reply_markup=self.wording.enter_button(lottery),
                reply_to_message_id=push.reply_to,
                before=before,
            )
        if lottery.announcement_id is not None:
            return None
        winners = await self.store.winners(lottery.id)
        return await self.outbox.send_message(
            lottery.chat_id,
            self.wording.announcement_text(
                lottery, winners, await self.names(lottery.chat_id, winners)
            ),
            source=SOURCE,
            reply_to_message_id=lottery.message_id,
            before=before,
        )

    async def recorded(self, conn: AsyncConnection, ended: list[Ended], now: datetime) -> None:
        for end in ended:
            delivered = end.delivered
            if not end.sent or delivered is None or delivered.message_id is None:
                continue
            lottery_id = int((end.push.ref or {})["lottery"])
            column = "message_id" if end.push.kind == PushKind.LOTTERY_POST else "announcement_id"
            values: dict[str, Any] = {column: delivered.message_id}
            if delivered.chat_id != end.push.chat_id:  # the group became a supergroup meanwhile
                values["chat_id"] = delivered.chat_id
            await conn.execute(update(LOTTERIES).where(LOTTERIES.c.id == lottery_id).values(values))

    async def done(self, ended: list[Ended]) -> None:
        for end in ended:
            lottery_id = int((end.push.ref or {})["lottery"])
            what = "post" if end.push.kind == PushKind.LOTTERY_POST else "announcement"
            if not end.sent and not end.interrupted:
                logger.bind(chat_id=end.push.chat_id).error(
                    "lottery #{}: the {} could not be sent: {}", lottery_id, what, end.note
                )
            if end.push.kind == PushKind.LOTTERY_POST:
                if end.sent:
                    self.posted(lottery_id)
                continue
            lottery = await self.store.get(lottery_id)
            if lottery is None or not (end.sent or end.interrupted):
                continue
            await self.close_post(lottery)
            self.won(lottery, await self.store.winners(lottery_id))
