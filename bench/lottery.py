"""Lottery benchmark: 20,000 members press Enter within 30 s; then the draw.

    python -m bench.lottery [--members 20000] [--span 30] [--repeat 0.05] [--no-baseline]

(Run it from the repository root with `-m`: it imports bench/sop.py.) The whole path a press
takes in the bot runs here: the emulator (Telegram's limits on) queues each press as a
callback query, the bot's own Poller fetches them with getUpdates, the real dispatcher (activity
middleware, the lottery handler) admits them through `Lotteries` and answers each press with
answerCallbackQuery. The lottery has the shipped weekly lottery's kind of rules (a day in the
group, a message in the last 7 days), so every press is checked against them. A share of the
members (`--repeat`) press twice, as double taps do.

Two rounds on fresh databases, same presses: batched admission (as the bot runs) and, as the
baseline, one transaction per press. Reported against the issue's targets: every member entered
exactly once and every press answered; how long recording took; the draw's compute time (the
pure draw over the entrant list, and the whole draw transaction).
Figures are printed with PASS or MISS; nothing here is a test.
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from aiogram import Bot
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.telegram import TelegramAPIServer
from sqlalchemy import func, select

from bench.sop import ROOT, TOKEN, Verdicts, group_chat, on_schedule, until
from bot.admins import Admins
from bot.app import Operations, allowed_updates, create_dispatcher, open_services
from bot.clock import SystemClock
from bot.db import EVENTS, LOTTERY_ENTRIES, MEMBERS, EventType, GroupStatus, writing
from bot.delivery import Delivery
from bot.emulator import EmulatorServer
from bot.emulator import _events as emulator_events
from bot.handlers import sops
from bot.lottery import draw as drawing
from bot.lottery.service import BATCH, GATHER, Lotteries
from bot.polling import Poller
from bot.rights import RightsCheck
from bot.settings import Settings
from bot.sop.engine import Engine
from bot.sop.format import LotteryRules
from bot.sop.library import Library

FIRST_USER = 300_000
RULES = LotteryRules.model_validate(
    {"min_tenure": "1d", "min_messages": {"count": 1, "window": "7d"}}
)


@dataclass
class Round:
    pressed_in: float = 0.0
    recorded_in: float = 0.0
    answered_in: float = 0.0
    entries: int = 0
    distinct: int = 0
    entry_count: int = 0
    events: int = 0
    answers: int = 0
    presses: int = 0
    entered: int = 0
    already: int = 0
    draw_compute: float = 0.0
    draw_total: float = 0.0
    winners: int = 0


async def seed(db: object, chat_id: int, members: int) -> None:
    """Members who joined a month ago and wrote yesterday: all eligible."""
    now = datetime.now(UTC)
    async with writing(db) as conn:  # type: ignore[arg-type]
        for start in range(0, members, 5000):
            ids = range(FIRST_USER + start, FIRST_USER + min(start + 5000, members))
            await conn.execute(
                MEMBERS.insert(),
                [
                    {
                        "chat_id": chat_id,
                        "user_id": u,
                        "first_name": f"M{u}",
                        "status": "member",
                        "joined_at": now - timedelta(days=30),
                        "message_count": 1,
                    }
                    for u in ids
                ],
            )
            await conn.execute(
                EVENTS.insert(),
                [
                    {
                        "chat_id": chat_id,
                        "user_id": u,
                        "at": now - timedelta(days=1),
                        "type": EventType.MESSAGE.value,
                    }
                    for u in ids
                ],
            )


async def one_round(
    folder: Path, members: int, span: float, repeat: float, *, batched: bool
) -> Round:
    result = Round()
    async with EmulatorServer(token=TOKEN) as server:
        ctl = server.client
        world = server.emulator.world
        owner = (await ctl.create_user("Owner"))["id"]
        chat = await ctl.create_chat("Lottery group")
        chat_id = int(chat["id"])
        await ctl.set_member(chat_id, owner, "creator")
        await ctl.set_bot_status(chat_id, "administrator", by=owner)
        users = [FIRST_USER + i for i in range(members)]
        for user_id in users:
            world.add_user({"id": user_id, "first_name": f"M{user_id}"})
        await ctl.set_rate_limits(True)
        settings = Settings(
            bot_token=TOKEN,
            database_url=f"sqlite+aiosqlite:///{folder / ('batched' if batched else 'single')}.db",
            content_dir=ROOT / "content",
            language="en",
        )
        services = await open_services(settings)
        await services.registry.save_group(
            group_chat(chat_id, 0), status=GroupStatus.ACTIVE, bot_status="administrator"
        )
        await seed(services.engine, chat_id, members)
        session = AiohttpSession(api=TelegramAPIServer.from_base(server.base_url))
        bot = Bot(TOKEN, session=session)
        delivery = Delivery(bot, services.registry, services.engine)
        clock = SystemClock()
        engine = Engine(
            services.engine,
            Library(ROOT / "sops", ROOT / "content"),
            services.registry,
            services.activity,
            delivery,
            clock,
            default_timezone=settings.tz,
            default_language="en",
        )
        await engine.open()
        lotteries = Lotteries(
            services.engine,
            services.registry,
            services.activity,
            delivery,
            services.texts,
            clock,
            default_timezone=ZoneInfo("Asia/Shanghai"),
            batch=BATCH if batched else 1,
            gather=GATHER if batched else 0.0,
        )
        operations = Operations(
            engine,
            Admins(bot, []),
            sops.Say(delivery, services.texts, services.registry),
            "bench_bot",
            None,
            lotteries,
        )
        dispatcher = create_dispatcher(
            services, RightsCheck(delivery, services.registry, services.texts, []), operations
        )
        services.activity.start()
        delivery.start()
        lottery = await lotteries.create(
            chat_id,
            prize="Bench prize",
            winners=10,
            duration=timedelta(hours=1),
            rules=RULES,
            by=owner,
        )
        stored = await lotteries.store.get(lottery.id)
        assert stored is not None and stored.message_id is not None
        message_id, data = stored.message_id, f"lottery:enter:{lottery.id}"
        stop = asyncio.Event()
        poller = Poller(bot, dispatcher, allowed_updates=allowed_updates(dispatcher))
        polling = asyncio.create_task(poller.run(stop))

        twice = {i for i in range(members) if (i * 7919) % 1000 < repeat * 1000}
        query_ids: list[str] = []

        async def press(i: int) -> None:
            for _ in range(2 if i in twice else 1):
                query_id, _ = emulator_events.press(
                    world, chat_id, {"user_id": users[i], "message_id": message_id, "data": data}
                )
                query_ids.append(query_id)
            world.notify()

        async def recorded() -> bool:
            async with services.engine.connect() as conn:
                count = select(func.count()).select_from(LOTTERY_ENTRIES)
                return int((await conn.execute(count)).scalar_one()) >= members

        def answered() -> bool:
            return all(world.callbacks[q].answer is not None for q in query_ids[-200:]) and all(
                world.callbacks[q].answer is not None for q in query_ids
            )

        began = time.perf_counter()
        result.pressed_in, tasks = await on_schedule(
            [i * span / members for i in range(members)], press
        )
        await asyncio.gather(*tasks)
        await until(recorded, began + 1800, 0.1)
        result.recorded_in = time.perf_counter() - began
        await until(answered, began + 1800, 0.1)
        result.answered_in = time.perf_counter() - began
        result.presses = len(query_ids)
        answers = [world.callbacks[q].answer or {} for q in query_ids]
        result.answers = sum(1 for a in answers if a)
        result.entered = sum(1 for a in answers if "You're in" in (a.get("text") or ""))
        result.already = sum(1 for a in answers if "already entered" in (a.get("text") or ""))

        async with services.engine.connect() as conn:
            entrants = [
                row.user_id
                for row in await conn.execute(
                    select(LOTTERY_ENTRIES.c.user_id).where(
                        LOTTERY_ENTRIES.c.lottery_id == lottery.id
                    )
                )
            ]
        tick = time.perf_counter()
        drawing.draw(stored.seed, entrants, 10)
        result.draw_compute = time.perf_counter() - tick
        tick = time.perf_counter()
        drawn = await lotteries.store.draw(lottery.id, datetime.now(UTC))
        result.draw_total = time.perf_counter() - tick
        result.winners = len(getattr(drawn, "winners", []))

        stop.set()
        await polling
        await lotteries.close()
        await delivery.close(grace=5)
        await services.activity.close()
        async with services.engine.connect() as conn:
            result.entries = len(entrants)
            result.distinct = len(set(entrants))
            after = await lotteries.store.get(lottery.id)
            result.entry_count = after.entry_count if after else -1
            result.events = int(
                (
                    await conn.execute(
                        select(func.count()).where(EVENTS.c.type == EventType.LOTTERY_ENTERED.value)
                    )
                ).scalar_one()
            )
        await bot.session.close()
        await services.engine.dispose()
    return result


def report(name: str, r: Round, members: int) -> None:
    print(f"-- {name}")
    print(f"   presses sent:         {r.presses:,} ({members:,} members) in {r.pressed_in:.1f} s")
    print(
        f"   entries:              {r.entries:,} rows, {r.distinct:,} members, "
        f"count on the lottery {r.entry_count:,}, {r.events:,} activity events"
    )
    print(
        f"   answers:              {r.answers:,} ({r.entered:,} entered, "
        f"{r.already:,} already entered)"
    )
    print(
        f"   all recorded after:   {r.recorded_in:.1f} s; all answered after {r.answered_in:.1f} s"
    )
    print(
        f"   draw:                 {r.draw_compute * 1000:.0f} ms compute, "
        f"{r.draw_total * 1000:.0f} ms with its transaction; {r.winners} winners"
    )


async def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--members", type=int, default=20_000)
    parser.add_argument("--span", type=float, default=30.0)
    parser.add_argument("--repeat", type=float, default=0.05)
    parser.add_argument("--no-baseline", action="store_true", help="skip the unbatched round")
    args = parser.parse_args()

    from bot.logs import setup_logging

    setup_logging("WARNING")
    verdicts = Verdicts()
    with tempfile.TemporaryDirectory() as tmp:
        batched = await one_round(Path(tmp), args.members, args.span, args.repeat, batched=True)
        report("batched admission (as the bot runs)", batched, args.members)
        single = None
        if not args.no_baseline:
            single = await one_round(Path(tmp), args.members, args.span, args.repeat, batched=False)
            report("baseline: one transaction per press", single, args.members)
    members = args.members
    exact = (
        batched.entries == batched.distinct == batched.entry_count == batched.events == members
        and batched.answers == batched.presses
        and batched.entered == members
    )
    verdicts.add(
        "every member entered exactly once, every press answered",
        exact,
        f"{batched.entries:,} entries of {members:,}; {batched.answers:,} of "
        f"{batched.presses:,} presses answered",
    )
    verdicts.add(
        f"presses within {args.span:.0f} s",
        batched.pressed_in <= args.span * 1.05,
        f"{batched.pressed_in:.1f} s",
    )
    verdicts.add(
        "recorded while they press (within the span + 5 s)",
        batched.recorded_in <= args.span + 5,
        f"{batched.recorded_in:.1f} s",
    )
    verdicts.add(
        "draw compute under 1 s",
        batched.draw_compute < 1.0,
        f"{batched.draw_compute * 1000:.0f} ms ({batched.draw_total * 1000:.0f} ms with the "
        "transaction)",
    )
    if single is not None:
        print(
            f"recording time, one transaction per press / batched: "
            f"{single.recorded_in / batched.recorded_in:.2f}x"
        )
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"memory (peak RSS of the whole bench, emulator included): {peak:,.0f} MiB")
    print("\n".join(verdicts.lines))


if __name__ == "__main__":
    asyncio.run(main())
