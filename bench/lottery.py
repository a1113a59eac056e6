"""Lottery benchmark: 20,000 members press Enter within 30 s; then the draw.

    python -m bench.lottery [--members 20000] [--span 30] [--repeat 0.05] [--no-baseline]

(Run it from the repository root with `-m`: it imports bench/sop.py.) The whole path a press
takes in the bot runs here: the emulator (Telegram's limits on) queues each press as a
callback query, the bot's own Poller fetches them with getUpdates, the real dispatcher (activity
middleware, the lottery handler) admits them through `Lotteries` and answers each press with
answerCallbackQuery. The lottery has the shipped weekly lottery's kind of rules (a day in the
group, a message in the last 7 days), so every press is checked against them. A share of the
members (`--repeat`) press twice, as double taps do.

Three rounds on fresh databases, same presses: first the bot as deployed (`tidepool run` in its
own process); then, in this process, the bot as `tidepool run` assembles it (bot.factory) with
batched admission (as the bot runs) and, as the baseline, with one transaction per press (its
`Lotteries` admitting batches of one, waiting for no company). Before the presses, the
in-process bot counts the seeded history and does the group's day, as a bot running for a while
has. Reported against the issue's targets: every member entered exactly once and every press
answered; how long recording took; the draw's compute time (the pure draw over the entrant
list, and the whole draw transaction).
Figures are printed with PASS or MISS; nothing here is a test.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import resource
import signal
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from bench._app import ROOT, TOKEN, known_groups, running, settings_for
from bench.sop import Verdicts, on_schedule, until
from bot.app import allowed_updates
from bot.clock import SystemClock
from bot.db import EVENTS, LOTTERY_ENTRIES, MEMBERS, EventType, writing
from bot.emulator import EmulatorServer
from bot.emulator import _events as emulator_events
from bot.factory import Tidepool, open_database
from bot.lottery import draw as drawing
from bot.lottery.store import LotteryStore
from bot.polling import Poller
from bot.sop.format import LotteryRules

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
    peak_mib: float = math.nan  # of the bot's process, when it runs in its own
    exit_code: int | None = None


async def seed(db: AsyncEngine, chat_id: int, members: int) -> None:
    """Members who joined a month ago and wrote yesterday: all eligible."""
    now = datetime.now(UTC)
    async with writing(db) as conn:
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
    """The whole bot in this process, assembled as `tidepool run` assembles it, its Poller
    fetching the presses from the emulator; unbatched, its lotteries admit one press a
    transaction (the baseline)."""
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
        async with running(
            server,
            folder / ("batched" if batched else "single"),
            SystemClock(),
            groups=[(chat_id, "Lottery group")],
            group_columns={"bot_status": "administrator"},
            prefill=lambda db: seed(db, chat_id, members),
            owner_ids=[owner],
        ) as app:
            lotteries = app.lotteries
            if not batched:  # the baseline: every press its own transaction, nobody waited for
                lotteries.batch, lotteries.gather = 1, 0.0
            await settled_history(app)
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
            poller = Poller(
                app.bot, app.dispatcher, allowed_updates=allowed_updates(app.dispatcher)
            )
            polling = asyncio.create_task(poller.run(stop))
            await press_and_wait(
                result, world, chat_id, message_id, data, users, span, repeat, app.db
            )
            entrants = await _entrants(app.db)
            await measure_draw(result, lotteries.store, lottery.id, stored.seed, entrants)
            stop.set()
            await polling
            await app.activity.flush()
            await _tally(result, app.db, entrants, lotteries.store, lottery.id)
    return result


async def settled_history(app: Tidepool) -> None:
    """What a bot that has been running a while has done with the seeded history before the
    presses come: counted it (the rollup) and done the day's analytics of the group."""
    await app.rollup.catch_up()
    await app.analytics.run_due()


async def press_and_wait(
    result: Round,
    world: Any,
    chat_id: int,
    message_id: int,
    data: str,
    users: list[int],
    span: float,
    repeat: float,
    db: AsyncEngine,
) -> None:
    """Press at an even pace over `span` (a share twice); wait until every member is recorded
    and every press answered."""
    members = len(users)
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
        async with db.connect() as conn:
            count = select(func.count()).select_from(LOTTERY_ENTRIES)
            return int((await conn.execute(count)).scalar_one()) >= members

    def answered() -> bool:
        return all(world.callbacks[q].answer is not None for q in query_ids)

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


async def measure_draw(
    result: Round, store: LotteryStore, lottery_id: int, seed: str, entrants: list[int]
) -> None:
    """The pure draw over the entrant list, then the whole draw transaction."""
    tick = time.perf_counter()
    drawing.draw(seed, entrants, 10)
    result.draw_compute = time.perf_counter() - tick
    tick = time.perf_counter()
    drawn = await store.draw(lottery_id, datetime.now(UTC))
    result.draw_total = time.perf_counter() - tick
    result.winners = len(getattr(drawn, "winners", []))


async def process_round(folder: Path, members: int, span: float, repeat: float) -> Round:
    """The bot as it is deployed: `tidepool run` in its own process, the emulator in this one."""
    result = Round()
    async with EmulatorServer(token=TOKEN) as server:
        ctl = server.client
        world = server.emulator.world
        owner = (await ctl.create_user("Owner"))["id"]
        chat_id = int((await ctl.create_chat("Lottery group"))["id"])
        await ctl.set_member(chat_id, owner, "creator")
        await ctl.set_bot_status(chat_id, "administrator", by=owner)
        users = [FIRST_USER + i for i in range(members)]
        for user_id in users:
            world.add_user({"id": user_id, "first_name": f"M{user_id}"})
        settings = settings_for(server, folder / "process.db")
        db = await open_database(settings)  # migrated, filled, then handed to the bot
        await known_groups(db, [(chat_id, "Lottery group")], bot_status="administrator")
        await seed(db, chat_id, members)
        await ctl.set_rate_limits(True)
        env = {
            **os.environ,
            "BOT_TOKEN": TOKEN,
            "TELEGRAM_API_BASE": server.base_url,
            "DATABASE_URL": settings.database_url,
            "CONTENT_DIR": str(ROOT / "content"),
            "SOPS_DIR": str(ROOT / "sops"),
            "LANGUAGE": "en",
            "TIMEZONE": "Asia/Shanghai",
            "OWNER_IDS": str(owner),
            "LOG_LEVEL": "WARNING",
        }
        with (folder / "bot.log").open("wb") as log:
            bot = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "bot", "run", env=env, stdout=log, stderr=log
            )
        try:
            await until(lambda: bool(world.calls), time.perf_counter() + 30, 0.1)
            await ctl.send_message(
                chat_id, owner, "/lottery 10 1h Bench prize tenure=1d messages=1/7d"
            )

            async def posted() -> bool:
                return any("Lottery #1" in (m.get("text") or "") for m in await ctl.sent(chat_id))

            await until(posted, time.perf_counter() + 30, 0.1)
            [post] = [m for m in await ctl.sent(chat_id) if "Lottery #1" in (m.get("text") or "")]
            await press_and_wait(
                result,
                world,
                chat_id,
                post["message_id"],
                "lottery:enter:1",
                users,
                span,
                repeat,
                db,
            )
            result.peak_mib = _peak_mib(bot.pid)
        finally:
            bot.send_signal(signal.SIGTERM)
            result.exit_code = await asyncio.wait_for(bot.wait(), 60)
        store = LotteryStore(db)  # the bot has stopped: its draw, timed on its database
        entrants = await _entrants(db)
        lottery = await store.get(1)
        assert lottery is not None
        await measure_draw(result, store, 1, lottery.seed, entrants)
        await _tally(result, db, entrants, store, 1)
        await db.dispose()
    return result


def _peak_mib(pid: int) -> float:
    """The process's peak resident memory (VmHWM), in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return math.nan


async def _entrants(db: AsyncEngine) -> list[int]:
    async with db.connect() as conn:
        return [row.user_id for row in await conn.execute(select(LOTTERY_ENTRIES.c.user_id))]


async def _tally(
    result: Round, db: AsyncEngine, entrants: list[int], store: LotteryStore, lottery_id: int
) -> None:
    result.entries, result.distinct = len(entrants), len(set(entrants))
    after = await store.get(lottery_id)
    result.entry_count = after.entry_count if after else -1
    async with db.connect() as conn:
        events = select(func.count()).where(EVENTS.c.type == EventType.LOTTERY_ENTERED.value)
        result.events = int((await conn.execute(events)).scalar_one())


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
        deployed = await process_round(Path(tmp), args.members, args.span, args.repeat)
        report("the bot in its own process (tidepool run), as deployed", deployed, args.members)
        print(
            f"   bot process:          peak RSS {deployed.peak_mib:,.0f} MiB, "
            f"exit code {deployed.exit_code}"
        )
        batched = single = None
        if not args.no_baseline:
            batched = await one_round(Path(tmp), args.members, args.span, args.repeat, batched=True)
            report("in one process: batched admission", batched, args.members)
            single = await one_round(Path(tmp), args.members, args.span, args.repeat, batched=False)
            report("in one process: one transaction per press", single, args.members)
    members = args.members
    exact = all(
        r.entries == r.distinct == r.entry_count == r.events == r.entered == members
        and r.answers == r.presses
        for r in (deployed, batched, single)
        if r is not None
    )
    verdicts.add(
        "every member entered exactly once, every press answered",
        exact,
        f"{deployed.entries:,} entries of {members:,}; {deployed.answers:,} of "
        f"{deployed.presses:,} presses answered (every round: {'yes' if exact else 'NO'})",
    )
    verdicts.add(
        f"presses within {args.span:.0f} s",
        deployed.pressed_in <= args.span * 1.05,
        f"{deployed.pressed_in:.1f} s",
    )
    verdicts.add(
        "recorded while they press (within the span + 5 s)",
        deployed.recorded_in <= args.span + 5,
        f"{deployed.recorded_in:.1f} s after the first press",
    )
    verdicts.add(
        "draw compute under 1 s",
        deployed.draw_compute < 1.0,
        f"{deployed.draw_compute * 1000:.0f} ms ({deployed.draw_total * 1000:.0f} ms with the "
        "transaction)",
    )
    if single is not None and batched is not None:
        print(
            f"recording time, one transaction per press / batched: "
            f"{single.recorded_in / batched.recorded_in:.2f}x"
        )
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"memory (peak RSS of the bench process, emulator included): {peak:,.0f} MiB")
    print("\n".join(verdicts.lines))


if __name__ == "__main__":
    asyncio.run(main())
