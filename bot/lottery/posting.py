"""A lottery's post and announcement as pushes of the one outbox: added in the transaction that
opens or draws the lottery, sent once by the push queue, and kept on the lottery once they went.

The post goes at once (its deadline is already running); the announcement is rendered when it
goes, with the winners and their names as they are then. A stop while Telegram is asked for the
announcement leaves it `interrupted`: it is never sent twice, and the winners are still told
(`lottery.won`), since the draw stands.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

from loguru import logger
from sqlalchemy import Row, update
from sqlalchemy.ext.asyncio import AsyncConnection

from bot.db import LOTTERIES, LotteryStatus, PushKind
from bot.lottery.store import Lottery, LotteryStore
from bot.lottery.wording import LotteryWording
from bot.outbox import Before
from bot.push.rows import Courier, Ended, push_row

if TYPE_CHECKING:
    from bot.delivery import Delivered
    from bot.lottery.service import Lotteries

SOURCE = "lottery"


def post_row(lottery: Lottery, now: datetime, reply_to: int | None = None) -> dict[str, Any]:
    """The push of a lottery's post."""
    return _row(PushKind.LOTTERY_POST, lottery.id, lottery.chat_id, now, reply_to)


def announcement_row(lottery_id: int, chat_id: int, now: datetime) -> dict[str, Any]:
    """The push of a drawn lottery's announcement."""
    return _row(PushKind.LOTTERY_ANNOUNCE, lottery_id, chat_id, now)


def _row(
    kind: PushKind, lottery_id: int, chat_id: int, now: datetime, reply_to: int | None = None
) -> dict[str, Any]:
    what = "post" if kind is PushKind.LOTTERY_POST else "announce"
    return push_row(
        key=f"lottery:{lottery_id}:{what}",
        kind=kind,
        chat_id=chat_id,
        source=SOURCE,
        due_at=now,
        now=now,
        reply_to=reply_to,
        urgent=True,  # the deadline runs from the opening; the winners wait for the draw
        ref={"lottery": lottery_id},
    )


class LotteryCourier(Courier):
    """Sends lottery posts and announcements; keeps their message ids on the lottery."""

    def __init__(self, lotteries: Lotteries) -> None:
        super().__init__(lotteries.delivery)
        self.lotteries = lotteries
        self.store: LotteryStore = lotteries.store
        self.wording: LotteryWording = lotteries.wording

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
                lottery, winners, await self.lotteries.names(lottery.chat_id, winners)
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
                continue
            lottery = await self.store.get(lottery_id)
            if lottery is None or not (end.sent or end.interrupted):
                continue
            await self.lotteries.close_post(lottery)
            self.lotteries.won(lottery, await self.store.winners(lottery_id))
