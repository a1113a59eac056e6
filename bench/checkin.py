"""Check-in benchmark: 10,000 members of one group check in within one minute.

    python -m bench.checkin [--members 10000] [--span 60] [--repeat 0.05]

(Run it from the repository root with `-m`: it imports bench/sop.py.) The whole bot, as
`tidepool run` assembles it (bot.factory), runs the shipped `sops/daily_checkin.yaml` (its only
SOP) and texts on its own SQLite file, against the emulator with Telegram's limits on. Each
member writes 打卡 once, at an even pace over `--span` seconds, a group message fed to the bot's
dispatcher; a share (`--repeat`) writes 签到！ right after, as double taps do. Then the run waits
until every reply has been sent.

It reports, against the targets of the issue:
- recorded exactly once: one check-in row, one ledger row and 10 points per member, nothing
  more, and every check-in run ended;
- replies within Telegram's limits: no 429, at most 20 messages in any 60 s in the group, every
  new check-in's reply line (its member's mention with ✅) sent exactly once, combined into as
  few messages as fit; and how long the check-ins and the replies took.

Figures are printed with PASS or MISS; nothing here is a test.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path

from aiogram.types import Chat, Message, Update, User
from sqlalchemy import func, select

from bench._app import ROOT, TOKEN, running, seed_chats
from bench.sop import (
    ERRORS,
    GROUP_PER_MINUTE,
    MENTION,
    Verdicts,
    on_schedule,
    runs_line,
    statuses,
    until,
)
from bot.clock import SystemClock
from bot.db import BALANCES, CHECKINS, POINTS
from bot.emulator import EmulatorServer

CHAT_ID = -1005000000000
WINDOW = 60.0


def busiest_minute(times: list[float]) -> int:
    """The most messages in any 60 s window."""
    times = sorted(times)
    most, first = 0, 0
    for last, at in enumerate(times):
        while at - times[first] >= WINDOW:
            first += 1
        most = max(most, last - first + 1)
    return most


async def run(members: int, span: float, repeat: float, folder: Path) -> None:
    verdicts = Verdicts()
    sop_text = (ROOT / "sops" / "daily_checkin.yaml").read_text()
    chat = Chat(id=CHAT_ID, type="supergroup", title="Check-in group")
    async with EmulatorServer(token=TOKEN) as server:
        ctl = server.client
        seed_chats(server, [(CHAT_ID, "Check-in group")])
        await ctl.set_rate_limits(True)
        async with running(
            server,
            folder,
            SystemClock(),
            sops={"daily_checkin": sop_text},
            groups=[(CHAT_ID, "Check-in group")],
            group_columns={"bot_status": "administrator", "language": "zh"},
            timezone="UTC",
        ) as app:
            assert app.delivery is not None  # Telegram is the emulator: the real service
            delivery = app.delivery
            users = [User(id=200_000 + i, is_bot=False, first_name=f"M{i}") for i in range(members)]
            began = time.perf_counter()
            for user in users:
                await app.registry.member_joined(CHAT_ID, user, datetime.now(UTC), source="seed")
            print(
                f"   {members:,} members in the group ({time.perf_counter() - began:.1f} s to add)"
            )

            twice = {i for i in range(members) if (i * 7919) % 1000 < repeat * 1000}
            gap = span / members

            async def write(message_id: int, user: User, text: str) -> None:
                message = Message(
                    message_id=message_id,
                    date=datetime.now(UTC),
                    chat=chat,
                    from_user=user,
                    text=text,
                )
                await app.dispatcher.feed_update(
                    app.bot, Update(update_id=message_id, message=message)
                )

            async def check_in(i: int) -> None:
                await write(10 * i + 1, users[i], "打卡")
                if i in twice:
                    await write(10 * i + 2, users[i], "签到！")

            async def recorded() -> int:
                async with app.db.connect() as conn:
                    count = select(func.count()).select_from(CHECKINS)
                    return int((await conn.execute(count)).scalar_one())

            began = time.perf_counter()
            started_in, tasks = await on_schedule([i * gap for i in range(members)], check_in)
            await asyncio.gather(*tasks)
            await until(lambda: _at_least(recorded, members), began + span * 10 + 120, 0.05)
            recorded_in = time.perf_counter() - began

            async def answered() -> bool:
                live = set(await statuses(app.db)) - {"done", "failed", "cancelled"}
                return not live and delivery.pending == 0

            await until(answered, began + 3600, 0.5)
            replied_in = time.perf_counter() - began
            calls = await ctl.calls(method="sendMessage")
            sent = await ctl.sent()
            async with app.db.connect() as conn:
                rows = Counter(
                    user_id for (user_id,) in await conn.execute(select(CHECKINS.c.user_id))
                )
                ledger = Counter(
                    user_id for (user_id,) in await conn.execute(select(POINTS.c.user_id))
                )
                balances = dict(
                    (await conn.execute(select(BALANCES.c.user_id, BALANCES.c.balance))).all()
                )
            runs = await statuses(app.db)

    ids = [user.id for user in users]
    once = all(rows[i] == 1 and ledger[i] == 1 and balances.get(i) == 10 for i in ids)
    extra = sum(rows.values()) - members
    print(
        f"   check-ins:         {members:,} members over {span:g} s ({len(twice):,} twice), "
        f"the last started {started_in:.1f} s after the first; all recorded after "
        f"{recorded_in:.1f} s"
    )
    verdict = verdicts.add(
        "every member recorded exactly once",
        once and extra == 0 and set(runs) <= {"done"},
        f"{len(rows):,} members, {sum(rows.values()):,} check-ins, {sum(ledger.values()):,} "
        f"ledger rows",
    )
    print(
        f"   recorded:          {len(rows):,} members, {sum(rows.values()):,} check-in rows, "
        f"{sum(ledger.values()):,} ledger rows, 10 points each: {'yes' if once else 'NO'}   "
        f"{verdict}"
    )
    print(f"   runs afterwards:   {runs_line(runs)}; errors logged: {ERRORS.take()}")

    done_lines: Counter[int] = Counter()
    mentioned: Counter[int] = Counter()
    for message in sent:
        for line in (message["text"] or "").splitlines():
            for user_id in MENTION.findall(line):
                mentioned[int(user_id)] += 1
                if "✅" in line:
                    done_lines[int(user_id)] += 1
    at = [float(message["date"]) for message in sent]
    busiest = busiest_minute(at)
    rejected = sum(call.get("error_code") == 429 for call in calls)
    each_once = done_lines == Counter(dict.fromkeys(ids, 1))
    lines = sum(mentioned.values())
    print(
        f"   replies:           {lines:,} reply lines ({sum(done_lines.values()):,} check-ins, "
        f"{lines - sum(done_lines.values()):,} 'already') in {len(sent):,} messages, "
        f"{lines / max(len(sent), 1):.0f} lines a message; the last sent {replied_in:.0f} s "
        f"after the first check-in"
    )
    least = len(sent) * WINDOW / GROUP_PER_MINUTE
    print(
        f"   pace:              busiest minute {busiest} messages (limit {GROUP_PER_MINUTE}); "
        f"{rejected} answers of 429; {len(sent)} messages need at least {least:.0f} s at "
        f"{GROUP_PER_MINUTE}/min"
    )
    verdict = verdicts.add(
        "replies within Telegram's limits, each check-in answered once",
        each_once and rejected == 0 and busiest <= GROUP_PER_MINUTE,
        f"{len(sent)} messages, busiest minute {busiest}, {rejected} x 429, "
        f"{sum(done_lines.values()):,}/{members:,} answered",
    )
    print(f"   each check-in answered exactly once: {'yes' if each_once else 'NO'}   {verdict}")
    print("summary:")
    print("\n".join(verdicts.lines))


async def _at_least(count: Callable[[], Awaitable[int]], wanted: int) -> bool:
    return await count() >= wanted


async def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--members", type=int, default=10_000)
    parser.add_argument("--span", type=float, default=60.0, help="seconds")
    parser.add_argument("--repeat", type=float, default=0.05, help="share that check in twice")
    args = parser.parse_args()

    from loguru import logger

    from bot.logs import setup_logging

    setup_logging("CRITICAL")
    logger.add(ERRORS, level="ERROR", format="{message}")
    print(
        f"check-in burst: {args.members:,} members of one group check in within {args.span:g} s "
        "(emulator, Telegram's limits on; shipped daily_checkin.yaml; the whole bot, as tidepool "
        "run builds it)"
    )
    with tempfile.TemporaryDirectory() as tmp:
        await run(args.members, args.span, args.repeat, Path(tmp))


if __name__ == "__main__":
    asyncio.run(main())
