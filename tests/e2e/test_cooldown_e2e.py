"""End to end: a keyword reply with `cooldown: 1d` answers a member once per local day, also
across a restart of the real process.

A message that gets no reply is known to be handled when a later keyword message of another
member in the same chat got its reply: updates of one chat are handled in order, and starts are
written in the order asked, so the refused start was decided before that reply's run existed.
"""

from __future__ import annotations

from datetime import datetime, time, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from bot.emulator import EmulatorClient
from tests.e2e.conftest import Tidepool, answer_to
from tests.e2e.test_sop_e2e import DAY, setup

SHANGHAI = ZoneInfo("Asia/Shanghai")  # the harness's TIMEZONE

PRICE = """\
schema_version: 1
id: price_reply
name: Price, once a day
groups: all
triggers:
  - type: message
    keywords: [price]
    cooldown: 1d
steps:
  - send:
      template: price.answer
      reply: true
texts:
  en:
    price:
      answer: |
        <b>Prices</b>
        1. Tea: 10 yuan a pot, refills free all afternoon.
        2. Cake: 15 yuan a slice, baked every morning.
        3. Ask us about the set menu.
  zh:
    price:
      answer: |
        <b>价格</b>
        1. 茶：10 元。
        2. 蛋糕：15 元。
        3. 套餐请问我们。
"""


def price_sops(folder: Path) -> Path:
    sops = folder / "sops"
    sops.mkdir()
    (sops / "price_reply.yaml").write_text(PRICE)
    return sops


async def replies_to(ctl: EmulatorClient, chat: int, said: dict[str, Any]) -> list[Any]:
    message_id = said["message"]["message_id"]
    return [m for m in await ctl.sent(chat) if m["reply_to_message_id"] == message_id]


async def test_a_keyword_reply_once_a_day_also_across_a_restart(
    ctl: EmulatorClient, tidepool: Tidepool
):
    s = await setup(ctl, tidepool, price_sops(tidepool.folder))
    group, clock = s["group"], s["clock"]
    # 10:00 in the group's time zone: the day's messages all fall on one local date.
    now = datetime.now(SHANGHAI)
    ten = datetime.combine(now.date() + timedelta(days=1), time(10), tzinfo=SHANGHAI)
    await clock.forward((ten - now).total_seconds())
    lin, ada, bo = [(await ctl.create_user(name))["id"] for name in ("Lin", "Ada", "Bo")]
    for member in (lin, ada, bo):
        await ctl.join(group, member)

    first = await ctl.send_message(group, lin, "What's the price?")
    await answer_to(ctl, group, first)
    second = await ctl.send_message(group, lin, "price again?")
    await answer_to(ctl, group, await ctl.send_message(group, ada, "price for me?"))
    assert await replies_to(ctl, group, second) == [], "the same day: no second reply"

    assert await tidepool.stop() == 0
    await tidepool.start(ctl)
    third = await ctl.send_message(group, lin, "price, please")
    await answer_to(ctl, group, await ctl.send_message(group, bo, "the price?"))
    assert await replies_to(ctl, group, third) == [], "a restart does not forget the day's start"

    await clock.forward(DAY)
    await answer_to(ctl, group, await ctl.send_message(group, lin, "price today?"))
    assert await tidepool.stop() == 0

    refused = f"price_reply not started for {lin}: cooldown 1d, started today at 10:0"
    assert tidepool.logs().count(refused) == 2, "each refused start is logged"
    replies = [m for m in await ctl.sent(group) if m["reply_to_message_id"] is not None]
    assert len(replies) == 4
