"""Broadcast benchmark: one message to 1,000 groups within Telegram's limits, and a restart halfway.

    python -m bench.broadcast [--groups 1000] [--no-baseline] [--no-crash]

(Run it from the repository root with `-m`: it imports bench/sop.py.) Everything runs as it is
deployed: the emulator here with Telegram's limits on (30 messages a second overall, 20 a minute
in a group, one a second in a chat; beyond them it answers 429), the bot in its own process
(`python -m bot run`, QUIET_HOURS=off, DAILY_CAP=0, an empty SOPS_DIR so that it sends nothing
else), and the broadcast queued from a third process by
`python -m bot broadcast --groups all --template sample`; the bot's push queue finds it in the
table and sends it. The groups are there as the bot knows them after a while: in the emulator with
the bot an administrator, and in the `groups` table.

1. Sustained rate: the bot has started and checked its rights in every group; the broadcast goes
   to every group. Messages a second from the first sendMessage to the last (as the emulator
   received them), 429 answers, how many each group got, `tidepool broadcast status`.
2. Restart halfway: the same, on a fresh database and emulator; once about half the groups have
   the message the bot gets SIGTERM, and is started again once it has exited. Nothing may arrive
   twice and nothing may be lost; the bot's downtime and the whole broadcast's time.
3. Crash halfway (unless --no-crash): the same with SIGKILL. Nothing may arrive twice; only the
   pushes Telegram had been asked for at the kill (`sending`: the ones on the wire) are marked
   failed ("interrupted") at the next start; those the delivery service still held (`queued`)
   go after the restart. How many were marked, how many of them had been tried (a sendMessage
   call for the group reached the emulator) and how many never arrived.

Baselines in the same run: the limit itself (30/s), and a naive sender (unless --no-baseline):
aiogram's Bot.send_message to every group at once with asyncio.gather, each waiting out the
`retry_after` of a 429 and trying again, against a fresh emulator with the same limits.
Figures are printed with PASS or MISS against the issue's targets; nothing here is a test.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import re
import signal
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aiogram import Bot
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.telegram import TelegramAPIServer
from aiogram.exceptions import TelegramRetryAfter
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from bench._app import TOKEN
from bench.sop import Verdicts, until
from bot.db import GROUPS, PUSHES, GroupStatus, PushStatus, create_engine, upgrade, writing
from bot.emulator import EmulatorServer
from bot.emulator import _events as emulator_events
from bot.push.queue import IN_FLIGHT, INTERRUPTED

ROOT = Path(__file__).resolve().parent.parent
LIMIT = 30.0  # Telegram's overall limit, messages a second, as the emulator enforces it
TARGET_RATE = 25.0  # the target
TEMPLATE = "sample"
LOG_LINE = re.compile(r"^\S+ \S+ (?P<level>WARNING|ERROR|CRITICAL)\s+\S+ - (?P<message>.*)$")


def stamp_calls(world: Any) -> dict[int, float]:
    """perf_counter times at which the emulator received each Bot API call, by its `seq`.

    The emulator's own call log has whole seconds only."""
    stamps: dict[int, float] = {}
    record = world.record_call

    def recorded(method: str, params: dict[str, Any]) -> Any:
        call = record(method, params)
        stamps[call.seq] = time.perf_counter()
        return call

    world.record_call = recorded
    return stamps


def seed_emulator(world: Any, groups: int) -> list[int]:
    """Supergroups with the bot an administrator (default rights), set silently: no updates."""
    chat_ids = []
    for n in range(groups):
        chat = world.add_chat({"title": f"Bench group {n + 1}", "type": "supergroup"})
        emulator_events.set_member(
            world, chat.id, {"user_id": world.bot_id, "status": "administrator"}
        )
        chat_ids.append(chat.id)
    return chat_ids


def rate(times: list[float]) -> tuple[float, float]:
    """Messages a second from the first to the last of `times`, and that span in seconds."""
    if len(times) < 2:
        return math.nan, 0.0
    span = max(times) - min(times)
    return (len(times) - 1) / span if span > 0 else math.inf, span


@dataclass
class Pushes:
    """The broadcast's pushes by status, as the bot stored them."""

    by_status: Counter[str]
    interrupted: int

    @property
    def open(self) -> int:
        waiting = (PushStatus.PENDING, PushStatus.QUEUED, PushStatus.SENDING)
        return sum(self.by_status[status.value] for status in waiting)

    def line(self) -> str:
        counts = ", ".join(f"{status} {n}" for status, n in sorted(self.by_status.items()))
        return f"{counts or 'none'}; {self.interrupted} failed as interrupted"


class Deployment:
    """The emulator in this process; `tidepool` commands in their own, on one database."""

    def __init__(self, server: EmulatorServer, folder: Path, groups: int) -> None:
        self.server = server
        self.world: Any = server.emulator.world
        self.folder = folder
        self.stamps = stamp_calls(self.world)
        self.groups = seed_emulator(self.world, groups)
        self.url = f"sqlite+aiosqlite:///{folder / 'tidepool.db'}"
        self.db: AsyncEngine = create_engine(self.url)
        self.process: asyncio.subprocess.Process | None = None
        self.runs = 0
        (folder / "sops").mkdir(parents=True)

    async def open(self) -> None:
        """The `groups` table as the bot leaves it for groups it has been in for a while."""
        await upgrade(self.db)
        now = datetime.now(UTC)
        async with writing(self.db) as conn:
            await conn.execute(
                GROUPS.insert(),
                [
                    {
                        "id": chat_id,
                        "title": f"Bench group {n + 1}",
                        "type": "supergroup",
                        "status": GroupStatus.ACTIVE.value,
                        "bot_status": "administrator",
                        "tags": [],
                        "missing_rights": [],
                        "first_seen_at": now,
                        "updated_at": now,
                    }
                    for n, chat_id in enumerate(self.groups)
                ],
            )
        await self.server.client.set_rate_limits(True)

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("BOT_", "TELEGRAM_"))}
        env.update(
            BOT_TOKEN=TOKEN,
            TELEGRAM_API_BASE=self.server.base_url,
            DATABASE_URL=self.url,
            CONTENT_DIR=str(ROOT / "content"),
            SOPS_DIR=str(self.folder / "sops"),
            LANGUAGE="en",
            TIMEZONE="Asia/Shanghai",
            QUIET_HOURS="off",
            DAILY_CAP="0",
            LOG_LEVEL="INFO",
        )
        return env

    def log(self, run: int) -> Path:
        return self.folder / f"bot-{run}.log"

    async def start(self, *, review: bool = False) -> float:
        """Start `tidepool run`; return the seconds until it polls (and, with `review`, until
        it has checked its rights in every group)."""
        assert self.process is None, "already running"
        self.runs += 1
        began = time.perf_counter()
        polls = len(self.calls("getUpdates"))
        reviews = len(self.calls("getChatMember"))
        with self.log(self.runs).open("wb") as log:
            self.process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "bot",
                "run",
                cwd=self.folder,
                env=self.env(),
                stdout=log,
                stderr=log,
            )

        def polling() -> bool:
            if self.process is not None and self.process.returncode is not None:
                raise SystemExit(f"the bot exited early:\n{self.log(self.runs).read_text()}")
            return len(self.calls("getUpdates")) > polls

        if not await until(polling, began + 60, 0.05):
            raise SystemExit("the bot did not poll within 60 s")
        if review:

            def reviewed() -> bool:
                return len(self.calls("getChatMember")) >= reviews + len(self.groups)

            await until(reviewed, began + 120, 0.1)
            await asyncio.sleep(0.5)  # its last writes
        return time.perf_counter() - began

    async def stop(self, sig: int = signal.SIGTERM) -> tuple[int, float]:
        """Send `sig`; return the exit code and the seconds until the process was gone."""
        assert self.process is not None
        began = time.perf_counter()
        self.process.send_signal(sig)
        try:
            code = await asyncio.wait_for(self.process.wait(), 60)
        finally:
            self.process = None
        return code, time.perf_counter() - began

    async def close(self) -> None:
        if self.process is not None and self.process.returncode is None:
            self.process.kill()
            await self.process.wait()
        self.process = None
        await self.db.dispose()

    async def command(self, *args: str) -> tuple[int, str, str]:
        """Run `tidepool ARGS` in its own process; return (exit code, stdout, stderr)."""
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "bot",
            *args,
            cwd=self.folder,
            env=self.env(),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await process.communicate()
        return process.returncode or 0, out.decode(), err.decode()

    async def broadcast(self) -> float:
        """Queue the broadcast with `tidepool broadcast`; return how long the command took."""
        began = time.perf_counter()
        code, out, err = await self.command("broadcast", "--groups", "all", "--template", TEMPLATE)
        if code != 0:
            raise SystemExit(f"tidepool broadcast failed ({code}): {err or out}")
        return time.perf_counter() - began

    async def status(self) -> str:
        code, out, err = await self.command("broadcast", "status", "1")
        return (out.splitlines() or [err.strip()])[0] if code == 0 else f"failed: {err.strip()}"

    def log_tally(self) -> str:
        """Warnings and errors the bot logged, over every run, the most common first."""
        kinds: Counter[str] = Counter()
        for run in range(1, self.runs + 1):
            for line in self.log(run).read_text(errors="replace").splitlines():
                found = LOG_LINE.match(line)
                if found is not None:
                    kinds[f"{found['level']} {found['message'][:90]}"] += 1
        if not kinds:
            return "no warnings or errors"
        return "; ".join(f"{n} x {kind}" for kind, n in kinds.most_common(3))

    # -- what the emulator saw ----------------------------------------------------------------

    def calls(self, method: str, since: int = 0) -> list[Any]:
        name = method.lower()
        return [c for c in self.world.calls[since:] if c.method.lower() == name]

    def sent(self, since: int = 0) -> list[Any]:
        """sendMessage calls that succeeded, from the call numbered `since` + 1 on."""
        return [c for c in self.calls("sendMessage", since) if c.ok]

    def times(self, calls: list[Any]) -> list[float]:
        return [self.stamps[c.seq] for c in calls]

    def rejected(self) -> int:
        """429 answers, of every call so far."""
        return sum(1 for c in self.world.calls if c.error_code == 429)

    def arrived(self) -> Counter[int]:
        """How many messages from the bot each group holds."""
        chats = self.world.chats
        return Counter(
            {
                chat_id: sum(1 for rec in chats[chat_id].messages.values() if rec.from_bot)
                for chat_id in self.groups
            }
        )

    async def pushes(self) -> Pushes:
        async with self.db.connect() as conn:
            rows = list(
                await conn.execute(
                    select(PUSHES.c.status, PUSHES.c.note, func.count()).group_by(
                        PUSHES.c.status, PUSHES.c.note
                    )
                )
            )
        by_status: Counter[str] = Counter()
        for status, _, count in rows:
            by_status[status] += count
        interrupted = sum(count for _, note, count in rows if note == INTERRUPTED)
        return Pushes(by_status, interrupted)

    async def settled(self, deadline: float) -> bool:
        """Wait until no push of the broadcast is pending or being sent."""

        async def done() -> bool:
            pushes = await self.pushes()
            return sum(pushes.by_status.values()) > 0 and pushes.open == 0

        return await until(done, deadline, 0.2)


def peak_mib(pid: int) -> float:
    """The process's peak resident memory (VmHWM), in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return math.nan


def exactly_once(arrived: Counter[int]) -> tuple[int, int, int]:
    """Groups with one message, with more than one, with none."""
    once = sum(1 for n in arrived.values() if n == 1)
    twice = sum(1 for n in arrived.values() if n > 1)
    return once, twice, sum(1 for n in arrived.values() if n == 0)


# -- 1. sustained rate ------------------------------------------------------------------------


@dataclass
class Sustained:
    rate: float
    rejected: int
    once: int
    twice: int
    missing: int
    status: str


async def sustained(folder: Path, groups: int) -> Sustained:
    async with EmulatorServer(token=TOKEN) as server:
        app = Deployment(server, folder, groups)
        try:
            await app.open()
            started = await app.start(review=True)
            mark = len(app.world.calls)
            began = time.perf_counter()
            queued = await app.broadcast()
            await until(lambda: len(app.sent(mark)) >= groups, began + groups / 10 + 60, 0.1)
            await app.settled(time.perf_counter() + 30)
            sent = app.sent(mark)
            times = app.times(sent)
            per_second, span = rate(times)
            whole = max(times) - began if times else math.nan
            status = await app.status()
            pushes = await app.pushes()
            assert app.process is not None
            peak = peak_mib(app.process.pid)
            code, stopped = await app.stop()
            once, twice, missing = exactly_once(app.arrived())
            rejected = app.rejected()
            logged = app.log_tally()
        finally:
            await app.close()
    print("-- 1. sustained rate: tidepool broadcast to every group, the bot in its own process")
    print(f"   bot started and reviewed {groups:,} groups in {started:.1f} s")
    print(f"   tidepool broadcast:    queued in {queued:.1f} s (its own process)")
    print(
        f"   sent:                  {len(sent):,} messages in {span:.1f} s (first to last): "
        f"{per_second:.1f}/s = {per_second / LIMIT:.0%} of the {LIMIT:.0f}/s limit"
    )
    print(f"   command to last:       {whole:.1f} s ({(len(sent)) / whole:.1f}/s)")
    print(f"   429 answers:           {rejected}")
    print(f"   groups:                {once:,} got it once, {twice} more than once, {missing} none")
    print(f"   pushes stored:         {pushes.line()}")
    print(f"   broadcast status:      {status}")
    print(
        f"   bot process:           peak RSS {peak:,.0f} MiB; exit code {code} "
        f"{stopped:.1f} s after SIGTERM"
    )
    print(f"   the bot logged:        {logged}")
    return Sustained(per_second, rejected, once, twice, missing, status)


# -- 2. and 3. a stop halfway -----------------------------------------------------------------


@dataclass
class Halfway:
    once: int
    twice: int
    missing: int
    rejected: int
    interrupted: int
    lost: int  # marked interrupted and never arrived
    tried: int  # marked interrupted, with a sendMessage call for the group


async def halfway(folder: Path, groups: int, sig: signal.Signals) -> Halfway:
    """Broadcast; at about half, stop the bot with `sig`; start it again; wait for the rest."""
    async with EmulatorServer(token=TOKEN) as server:
        app = Deployment(server, folder, groups)
        try:
            await app.open()
            await app.start(review=True)
            mark = len(app.world.calls)
            began = time.perf_counter()
            await app.broadcast()
            await until(lambda: len(app.sent(mark)) >= groups // 2, began + groups / 10 + 60, 0.02)
            at_signal = len(app.sent(mark))
            signalled = time.perf_counter()
            code, stopped = await app.stop(sig)
            at_exit = len(app.sent(mark))
            before = await app.pushes()
            restart = len(app.world.calls)
            polling = await app.start()
            downtime = time.perf_counter() - signalled
            await app.settled(time.perf_counter() + groups / 10 + 60)
            after = await app.pushes()
            await app.stop()
            sent_after = app.sent(restart)
            sent_before = [c for c in app.sent(mark) if c.seq <= restart]
            first_times, second_times = app.times(sent_before), app.times(sent_after)
            gap = min(second_times) - max(first_times) if first_times and second_times else math.nan
            whole = app.times(app.sent(mark))
            arrived = app.arrived()
            once, twice, missing = exactly_once(arrived)
            rejected = app.rejected()
            interrupted_chats = await _interrupted_chats(app.db)
            lost = sum(1 for chat_id in interrupted_chats if arrived[chat_id] == 0)
            called = {int(c.params["chat_id"]) for c in app.calls("sendMessage", mark)}
            tried = sum(1 for chat_id in interrupted_chats if chat_id in called)
            logged = app.log_tally()
            recovered = "pushes were being sent when the bot stopped" in app.log(2).read_text()
        finally:
            await app.close()
    name = "SIGTERM" if sig == signal.SIGTERM else "SIGKILL"
    number = 2 if sig == signal.SIGTERM else 3
    what = "restart" if sig == signal.SIGTERM else "crash"
    print(
        f"-- {number}. {what} halfway: {name} once {groups // 2:,} groups have it, then start again"
    )
    print(
        f"   at the signal:         {at_signal:,} sent; {at_exit:,} when the bot had exited "
        f"({stopped:.1f} s, exit code {code})"
    )
    print(f"   stored at the stop:    {before.line()}")
    print(
        f"   downtime:              {downtime:.1f} s from the signal until the new bot polled "
        f"({polling:.1f} s to start); sending paused {gap:.1f} s"
    )
    total = max(whole) - min(whole) if whole else math.nan
    print(
        f"   whole broadcast:       {len(whole):,} sent in {total:.1f} s (first to last), "
        f"{len(sent_after):,} of them after the restart"
    )
    print(f"   429 answers:           {rejected}")
    print(f"   groups:                {once:,} got it once, {twice} more than once, {missing} none")
    print(
        f"   pushes stored:         {after.line()}; {lost} of those never arrived, "
        f"{tried} had been tried (a sendMessage call for the group)"
        + ("; the restarted bot logged them" if recovered else "")
    )
    print(f"   the bot logged:        {logged}")
    return Halfway(once, twice, missing, rejected, after.interrupted, lost, tried)


async def _interrupted_chats(db: AsyncEngine) -> list[int]:
    async with db.connect() as conn:
        rows = await conn.execute(select(PUSHES.c.chat_id).where(PUSHES.c.note == INTERRUPTED))
        return [row.chat_id for row in rows]


# -- baseline: a naive sender -----------------------------------------------------------------


@dataclass
class Naive:
    rate: float
    span: float
    sent: int
    rejected: int


async def naive(groups: int) -> Naive:
    """Bot.send_message to every group at once; each waits out its 429s and tries again."""
    async with EmulatorServer(token=TOKEN) as server:
        world: Any = server.emulator.world
        stamps = stamp_calls(world)
        chat_ids = seed_emulator(world, groups)
        await server.client.set_rate_limits(True)
        bot = Bot(TOKEN, session=AiohttpSession(api=TelegramAPIServer.from_base(server.base_url)))
        text = "📣 Hello! This week's live Q&amp;A is on Thursday at 20:00. Bring your questions!"

        async def send(chat_id: int) -> None:
            for _ in range(200):
                try:
                    await bot.send_message(chat_id, text, parse_mode="HTML")
                    return
                except TelegramRetryAfter as exc:
                    await asyncio.sleep(exc.retry_after)

        try:
            await asyncio.wait_for(asyncio.gather(*(send(c) for c in chat_ids)), groups + 60)
        finally:
            await bot.session.close()
        ok = [c for c in world.calls if c.ok and c.method.lower() == "sendmessage"]
        rejected = sum(1 for c in world.calls if c.error_code == 429)
    per_second, span = rate([stamps[c.seq] for c in ok])
    print("-- baseline: a naive sender (asyncio.gather of Bot.send_message, waiting out 429s)")
    print(
        f"   sent:                  {len(ok):,} messages in {span:.1f} s: {per_second:.1f}/s = "
        f"{per_second / LIMIT:.0%} of the limit"
    )
    print(f"   429 answers:           {rejected:,}")
    return Naive(per_second, span, len(ok), rejected)


async def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--groups", type=int, default=1000)
    parser.add_argument("--no-baseline", action="store_true", help="skip the naive sender")
    parser.add_argument("--no-crash", action="store_true", help="skip the SIGKILL round")
    args = parser.parse_args()

    from bot.logs import setup_logging

    setup_logging("WARNING")
    groups = args.groups
    verdicts = Verdicts()
    began = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        first = await sustained(folder / "sustained", groups)
        restart = await halfway(folder / "restart", groups, signal.SIGTERM)
        crash = None if args.no_crash else await halfway(folder / "crash", groups, signal.SIGKILL)
        baseline = None if args.no_baseline else await naive(groups)
    took = time.perf_counter() - began

    verdicts.add(
        f"a broadcast to {groups:,} groups sustains {TARGET_RATE:.0f}/s or more",
        first.rate >= TARGET_RATE,
        f"{first.rate:.1f}/s = {first.rate / LIMIT:.0%} of the {LIMIT:.0f}/s limit"
        + (
            f"; the naive sender {baseline.rate:.1f}/s, so {first.rate / baseline.rate:.2f}x"
            if baseline is not None
            else ""
        ),
    )
    verdicts.add(
        "zero 429s",
        first.rejected == 0 and restart.rejected == 0 and (crash is None or crash.rejected == 0),
        f"{first.rejected} sustained, {restart.rejected} across the restart"
        + (f", {crash.rejected} across the crash" if crash is not None else "")
        + (f" (the naive sender: {baseline.rejected:,})" if baseline is not None else ""),
    )
    verdicts.add(
        "every group got the broadcast exactly once",
        first.once == groups,
        f"{first.once:,} of {groups:,} ({first.twice} twice, {first.missing} none); {first.status}",
    )
    verdicts.add(
        "a restart halfway sends nothing twice",
        restart.twice == 0,
        f"{restart.twice} groups got it twice",
    )
    verdicts.add(
        "... and loses nothing",
        restart.once == groups and restart.interrupted == 0,
        f"{restart.once:,} of {groups:,} got it once, {restart.missing} none, "
        f"{restart.interrupted} marked interrupted",
    )
    if crash is not None:
        verdicts.add(
            "a crash (SIGKILL) halfway sends nothing twice",
            crash.twice == 0,
            f"{crash.twice} groups got it twice; {crash.interrupted} marked interrupted "
            f"({IN_FLIGHT} claimed at most): {crash.tried} of them had been tried, "
            f"{crash.lost} never arrived",
        )
    print(f"summary ({took:.0f} s):")
    print("\n".join(verdicts.lines))


if __name__ == "__main__":
    asyncio.run(main())
