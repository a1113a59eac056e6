"""Ingest benchmark: group messages through the real dispatcher (activity log, SOP engine with the
shipped SOPs), against a bare aiogram dispatcher with one trivial handler, in the same run.

    python bench/ingest.py [--updates 100000] [--groups 50] [--rounds 3]

Updates are fed in batches of 100 (what one getUpdates returns), yielding to the event loop
between batches as polling does, so the background writer runs while updates stream in. The
time of the real dispatcher includes writing every event to SQLite (the final flush too).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import resource
import statistics
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from aiogram import Bot, Dispatcher
from aiogram.types import Chat, Message, MessageEntity, PhotoSize, Update, User
from sqlalchemy import func, select

from bot.admins import Admins
from bot.app import Operations, Services, create_dispatcher, freeze_startup_heap, open_services
from bot.clock import SystemClock
from bot.db import EVENTS
from bot.delivery import Delivery
from bot.handlers import sops
from bot.rights import RightsCheck
from bot.settings import Settings
from bot.sop.engine import Engine
from bot.sop.library import Library

BATCH = 100
CONTENT = Path(__file__).resolve().parent.parent / "content"
SOPS = CONTENT.parent / "sops"
TOKEN = "123456:BENCH-token"


def make_updates(count: int, groups: int, bot: Bot) -> list[Update]:
    """Messages of several kinds from 40 members per group, one second apart.

    They are bound to `bot`, as updates from getUpdates are; otherwise aiogram would copy every
    update through a JSON round trip inside feed_update.
    """
    chats = [
        Chat(id=-1001000000000 - g, type="supergroup", title=f"Group {g}") for g in range(groups)
    ]
    users = [
        User(id=10_000 + u, is_bot=False, first_name=f"Member {u}") for u in range(groups * 40)
    ]
    photo = [PhotoSize(file_id="AgAC", file_unique_id="AQAD", width=800, height=600)]
    start = datetime(2026, 11, 1, tzinfo=UTC)
    updates = []
    for i in range(count):
        chat = chats[i % groups]
        sender = users[(i * 7919) % len(users)]
        when = start + timedelta(seconds=i)
        fields: dict[str, Any] = {"text": f"message number {i} in the group"}
        if i % 10 == 3:
            fields = {"photo": photo, "caption": "look at this"}
        elif i % 25 == 5:
            fields = {
                "text": "/checkin",
                "entities": [MessageEntity(type="bot_command", offset=0, length=8)],
            }
        message = Message(message_id=i + 1, date=when, chat=chat, from_user=sender, **fields)
        update = Update(update_id=i + 1, message=message)
        updates.append(Update.model_validate(update.model_dump(), context={"bot": bot}))
    return updates


async def feed(dispatcher: Dispatcher, bot: Bot, updates: list[Update]) -> None:
    for start in range(0, len(updates), BATCH):
        for update in updates[start : start + BATCH]:
            await dispatcher.feed_update(bot, update)
        await asyncio.sleep(0)


async def bare_round(updates: list[Update], bot: Bot) -> float:
    dispatcher = Dispatcher()

    @dispatcher.message()
    async def trivial(message: Message) -> None:
        return None

    began = time.perf_counter()
    await feed(dispatcher, bot, updates)
    return time.perf_counter() - began


async def real_dispatcher(bot: Bot, path: Path) -> tuple[Settings, Services, Engine, Dispatcher]:
    """The bot's dispatcher, its services and SOP engine (with the shipped SOPs) on `path`."""
    settings = Settings(
        bot_token=TOKEN, database_url=f"sqlite+aiosqlite:///{path}", content_dir=CONTENT
    )
    services = await open_services(settings)
    delivery = Delivery(bot, services.registry, services.engine)
    # The SOP engine with the shipped SOPs, as the bot runs it: each message is offered to it.
    engine = Engine(
        services.engine,
        Library(SOPS, CONTENT),
        services.registry,
        services.activity,
        delivery,
        SystemClock(),
        default_timezone=settings.tz,
        default_language=settings.language,
    )
    await engine.open()
    operations = Operations(
        engine,
        Admins(bot, []),
        sops.Say(delivery, services.texts, services.registry),
        "bench_bot",
    )
    dispatcher = create_dispatcher(
        services, RightsCheck(delivery, services.registry, services.texts, []), operations
    )
    return settings, services, engine, dispatcher


async def real_round(updates: list[Update], bot: Bot, folder: Path, round_no: int) -> float:
    _, services, engine, dispatcher = await real_dispatcher(bot, folder / f"bench-{round_no}.db")
    services.activity.start()
    engine.start()
    freeze_startup_heap()  # as the bot does once started
    began = time.perf_counter()
    await feed(dispatcher, bot, updates)
    await services.activity.close()
    elapsed = time.perf_counter() - began
    await engine.close()
    async with services.engine.connect() as conn:  # SOPs log events of their own (emitted)
        written = select(func.count()).where(EVENTS.c.type.in_(("message", "command")))
        stored = (await conn.execute(written)).scalar_one()
    if stored != len(updates):
        raise SystemExit(f"lost events: stored {stored} of {len(updates)}")
    await services.engine.dispose()
    return elapsed


async def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--updates", type=int, default=100_000)
    parser.add_argument("--groups", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    from bot.logs import setup_logging

    setup_logging("WARNING")
    bot = Bot(TOKEN)
    updates = make_updates(args.updates, args.groups, bot)
    # The prebuilt updates are a harness artefact (a bot holds one batch at a time): keep the
    # garbage collector from walking them again and again, in both rounds alike.
    gc.collect()
    gc.freeze()
    before_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    bare: list[float] = []
    real: list[float] = []
    with tempfile.TemporaryDirectory() as tmp:
        for round_no in range(args.rounds):  # alternate, so drift hits both alike
            gc.collect()
            bare.append(await bare_round(updates, bot))
            gc.collect()
            real.append(await real_round(updates, bot, Path(tmp), round_no))
    await bot.session.close()
    n = len(updates)
    bare_rate, real_rate = n / statistics.median(bare), n / statistics.median(real)
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        f"updates per round:            {n:,} in {args.groups} groups, "
        f"{args.rounds} rounds (median)"
    )
    print(f"bare aiogram dispatch:        {bare_rate:,.0f} updates/s")
    print(
        f"tidepool with activity log:   {real_rate:,.0f} updates/s (every event written to SQLite)"
    )
    print(f"cost ratio (tidepool / bare): {bare_rate / real_rate:.2f}x   (target <= 1.50x)")
    print(
        f"memory (peak RSS):            {peak_mib:,.0f} MiB, of which {before_mib:,.0f} MiB "
        f"held the {n:,} prebuilt updates before the rounds"
    )


if __name__ == "__main__":
    asyncio.run(main())
