"""Delivery benchmark: many messages to many groups through `Delivery`, against the emulator with
Telegram's flood limits on, compared with the most those limits allow.

    python bench/delivery.py [--groups 100] [--messages 1000]

The messages are spread evenly over the groups and all asked for at once. The best possible
rate is min(per_second, groups × 20 / 60) messages a second; a good run comes close to it with
no 429 at all. The run stops by itself after a generous deadline.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path

from aiogram import Bot
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.telegram import TelegramAPIServer
from aiogram.types import Chat

from bot.activity import ActivityLog
from bot.db import GroupStatus, create_engine, upgrade
from bot.delivery import Delivered, Delivery
from bot.emulator import EmulatorServer
from bot.events import Bus
from bot.registry import Registry

TOKEN = "123456:BENCH-token"


async def run(groups: int, messages: int, per_second: float, folder: Path) -> None:
    engine = create_engine(f"sqlite+aiosqlite:///{folder / 'bench.db'}")
    await upgrade(engine)
    activity = ActivityLog(engine)
    registry = Registry(engine, activity, Bus())
    async with EmulatorServer(token=TOKEN) as server:
        ctl = server.client
        chat_ids = []
        for n in range(groups):
            chat = await ctl.create_chat(f"Group {n}")
            await ctl.set_bot_status(chat["id"], "member")
            await registry.save_group(
                Chat(id=chat["id"], type="supergroup", title=f"Group {n}"),
                status=GroupStatus.ACTIVE,
            )
            chat_ids.append(chat["id"])
        await ctl.set_rate_limits(True)
        bot = Bot(TOKEN, session=AiohttpSession(api=TelegramAPIServer.from_base(server.base_url)))
        delivery = Delivery(bot, registry, engine, per_second=per_second)
        limit = min(per_second, groups * delivery.per_group_minute / 60)
        deadline = messages / limit * 2 + 60
        delivery.start()
        began = time.perf_counter()
        sends = [
            asyncio.ensure_future(
                delivery.send_message(chat_ids[i % groups], f"message {i}", source="bench")
            )
            for i in range(messages)
        ]
        done, late = await asyncio.wait(sends, timeout=deadline)
        elapsed = time.perf_counter() - began
        await delivery.close(grace=0)
        results: list[Delivered] = [task.result() for task in (*done, *late)]
        calls = await ctl.calls(method="sendMessage")
        await bot.session.close()
    await activity.close()
    await engine.dispose()

    sent = sum(r.ok for r in results)
    retried = sum(r.attempts > 1 for r in results)
    rejected = sum(call.get("error_code") == 429 for call in calls)
    rate = sent / elapsed
    print(f"load:             {messages:,} messages to {groups} groups, emulator limits on")
    print(
        f"sent:             {sent:,} in {elapsed:.1f}s ({len(late)} still queued at the deadline)"
    )
    print(f"achieved:         {rate:.1f} messages/s")
    print(f"limit:            {limit:.1f} messages/s = min({per_second:g}/s, {groups} × 20/min)")
    print(f"ratio:            {rate / limit:.2f} of the limit")
    print(f"429 answers:      {rejected} ({retried} messages needed more than one attempt)")
    print(f"recorded:         {delivery.recorded:,} deliveries")


async def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--groups", type=int, default=100)
    parser.add_argument("--messages", type=int, default=1000)
    parser.add_argument("--per-second", type=float, default=28)
    args = parser.parse_args()

    from bot.logs import setup_logging

    setup_logging("WARNING")
    with tempfile.TemporaryDirectory() as tmp:
        await run(args.groups, args.messages, args.per_second, Path(tmp))


if __name__ == "__main__":
    asyncio.run(main())
