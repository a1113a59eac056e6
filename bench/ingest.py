"""Ingest benchmark: group messages through the real dispatcher (activity log, SOP engine with the
shipped SOPs), against a bare aiogram dispatcher with one trivial handler, in the same run.

    python -m bench.ingest [--updates 100000] [--groups 50] [--rounds 3] [--only plain|checkin]

Two mixes, each against the bare dispatcher fed the very same updates: plain group messages
(texts and photos), and the same stream with 4 % of it `/checkin` commands (every group its
share, each member twice), which the shipped `daily_checkin.yaml` records and answers. The
answers go to the Telegram emulator on localhost, through the real delivery service (paced to
Telegram's limits), never to api.telegram.org.

Updates are fed in batches of 100 (what one getUpdates returns), yielding to the event loop
between batches as polling does, so the background writer runs while updates stream in. The
time of the real dispatcher includes writing every event to SQLite (the final flush too), every
SOP step the stream started up to its reply (each check-in recorded, its answer handed to
delivery) and the replies sent meanwhile; replies still queued behind Telegram's limits when the
stream ends are counted and reported, not waited for.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import resource
import statistics
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from aiogram import Bot, Dispatcher
from aiogram.types import Chat, Message, MessageEntity, PhotoSize, Update, User
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from bench._app import running, settings_for
from bench._traffic import feed
from bot.clock import SystemClock
from bot.db import CHECKINS, EVENTS, SOP_RUNS, RunStatus
from bot.emulator import EmulatorServer
from bot.factory import create_bot

CONTENT = Path(__file__).resolve().parent.parent / "content"
SOPS = CONTENT.parent / "sops"
TOKEN = "123456:BENCH-token"
START = datetime(2026, 11, 1, tzinfo=UTC)
CHECKIN_EVERY = 25  # one update in 25 is a /checkin in the check-in mix: 4 %
MIXES = ("plain", "checkin")
LABELS = {"plain": "plain group messages", "checkin": "with 4 % /checkin"}
TARGETS = {"plain": 1.30, "checkin": 1.50}  # cost ratio at most


def group_ids(groups: int) -> list[int]:
    return [-1001000000000 - g for g in range(groups)]


def plain_updates(count: int, groups: int, bot: Bot) -> list[Update]:
    """Plain messages of several kinds from 40 members per group, one second apart."""
    return _stream(count, groups, bot, checkins=False)


def _stream(count: int, groups: int, bot: Bot, *, checkins: bool) -> list[Update]:
    """Updates bound to `bot`, as updates from getUpdates are; otherwise aiogram would copy
    every update through a JSON round trip inside feed_update."""
    chats = [
        Chat(id=i, type="supergroup", title=f"Group {g}") for g, i in enumerate(group_ids(groups))
    ]
    users = [
        User(id=10_000 + u, is_bot=False, first_name=f"Member {u}") for u in range(groups * 40)
    ]
    photo = [PhotoSize(file_id="AgAC", file_unique_id="AQAD", width=800, height=600)]
    updates = []
    for i in range(count):
        fields: dict[str, Any] = {"text": f"message number {i} in the group"}
        if i % 10 == 3:
            fields = {"photo": photo, "caption": "look at this"}
        elif checkins and i % CHECKIN_EVERY == CHECKIN_EVERY // 5:
            fields = {
                "text": "/checkin",
                "entities": [MessageEntity(type="bot_command", offset=0, length=8)],
            }
        message = Message(
            message_id=i + 1,
            date=START + timedelta(seconds=i),
            chat=chats[i % groups],
            from_user=users[(i * 7919) % len(users)],
            **fields,
        )
        updates.append(bind(Update(update_id=i + 1, message=message), bot))
    return updates


def with_checkins(plain: list[Update], groups: int, bot: Bot) -> list[Update]:
    """The same stream with every 25th update (4 %, never a photo) a /checkin instead.

    The k-th check-in comes from member k in group k, round the groups and members: every
    group gets its share, and each member checks in twice (the second gets "already").
    """
    chats = [
        Chat(id=i, type="supergroup", title=f"Group {g}") for g, i in enumerate(group_ids(groups))
    ]
    members = groups * 40
    updates = list(plain)
    for k, i in enumerate(range(CHECKIN_EVERY // 5, len(updates), CHECKIN_EVERY)):
        message = updates[i].message
        assert message is not None and message.text is not None  # not a photo slot
        command = Message(
            message_id=message.message_id,
            date=message.date,
            chat=chats[k % groups],
            from_user=User(
                id=10_000 + k % members, is_bot=False, first_name=f"Member {k % members}"
            ),
            text="/checkin",
            entities=[MessageEntity(type="bot_command", offset=0, length=8)],
        )
        updates[i] = bind(Update(update_id=updates[i].update_id, message=command), bot)
    return updates


def bind(update: Update, bot: Bot) -> Update:
    return Update.model_validate(update.model_dump(), context={"bot": bot})


async def bare_round(updates: list[Update], bot: Bot) -> float:
    dispatcher = Dispatcher()

    @dispatcher.message()
    async def trivial(message: Message) -> None:
        return None

    began = time.perf_counter()
    await feed(dispatcher, bot, updates)
    return time.perf_counter() - began


@dataclass
class Round:
    seconds: float
    checkins: int  # check-ins recorded
    replied: int  # messages delivered to the emulator while the stream ran
    queued: int  # replies still waiting for Telegram's limits when it ended


async def real_round(
    updates: list[Update], bot: Bot, server: EmulatorServer, folder: Path, groups: int
) -> Round:
    """The stream through the bot as `tidepool run` assembles it (bot.factory), its replies
    going to the emulator; timed until every event is written and every check-in answered."""
    known = [(chat_id, f"Group {g}") for g, chat_id in enumerate(group_ids(groups))]
    async with running(server, folder, SystemClock(), groups=known, bot=bot) as app:
        began = time.perf_counter()
        await feed(app.dispatcher, bot, updates)
        await app.engine.starts_written()  # a message hands its start over without waiting
        await steps_done(app.db)
        await app.activity.flush()
        elapsed = time.perf_counter() - began
        assert app.delivery is not None  # Telegram is the emulator: the real service
        replied, queued = app.delivery.sent, app.delivery.pending
        db = app.db
        # SOPs log events of their own (emitted); the stream's are messages and commands.
        typed = EVENTS.c.type.in_(("message", "command"))
        stored = await count(db, select(func.count()).where(typed))
        if stored != len(updates):
            raise SystemExit(f"lost events: stored {stored} of {len(updates)}")
        checkins = await count(db, select(func.count()).select_from(CHECKINS))
        await app.engine.drain(grace=0.0)  # what waits for Telegram's limits is not measured
    return Round(elapsed, checkins, replied, queued)


async def steps_done(db: AsyncEngine) -> None:
    """Wait until every SOP run the stream started has done its steps up to a send: each
    check-in is recorded and its reply is with the delivery service (or sent already)."""
    running = select(func.count()).where(SOP_RUNS.c.status == RunStatus.RUNNING.value)
    while True:
        if not await count(db, running):
            return
        await asyncio.sleep(0.005)


async def count(db: AsyncEngine, query: Any) -> int:
    async with db.connect() as conn:
        return int((await conn.execute(query)).scalar_one())


async def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--updates", type=int, default=100_000)
    parser.add_argument("--groups", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--only", choices=MIXES, help="measure one mix (default: both)")
    args = parser.parse_args()

    from bot.logs import setup_logging

    setup_logging("WARNING")
    async with EmulatorServer(token=TOKEN) as server, contextlib.AsyncExitStack() as stack:
        for g, chat_id in enumerate(group_ids(args.groups)):
            await server.client.create_chat(f"Group {g}", id=chat_id)
            await server.client.set_bot_status(chat_id, "administrator")
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory()))
        # The Bot as `tidepool run` makes it (its session, HTML by default), talking to the
        # emulator on localhost: a benchmark never talks to Telegram.
        bot = create_bot(settings_for(server, tmp / "unused.db"))
        stack.push_async_callback(bot.session.close)
        plain = plain_updates(args.updates, args.groups, bot)
        mixes = [args.only] if args.only else list(MIXES)
        streams = {"plain": plain}
        if "checkin" in mixes:
            streams["checkin"] = with_checkins(plain, args.groups, bot)
        # The prebuilt updates are a harness artefact (a bot holds one batch at a time): keep
        # the garbage collector from walking them again and again, in all rounds alike.
        gc.collect()
        gc.freeze()
        before_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        bare: dict[str, list[float]] = {mix: [] for mix in mixes}
        real: dict[str, list[Round]] = {mix: [] for mix in mixes}
        for round_no in range(args.rounds):  # alternate, so drift hits all alike
            for mix in mixes:
                gc.collect()
                bare[mix].append(await bare_round(streams[mix], bot))
                gc.collect()
                folder = tmp / f"{mix}-{round_no}"
                real[mix].append(await real_round(streams[mix], bot, server, folder, args.groups))
        sends = len(await server.client.calls(method="sendMessage"))
    report(args, streams, bare, real, sends, before_mib)


def report(
    args: argparse.Namespace,
    streams: dict[str, list[Update]],
    bare: dict[str, list[float]],
    real: dict[str, list[Round]],
    sends: int,
    before_mib: float,
) -> None:
    n, mixes = args.updates, list(real)
    line = (
        f"updates per round: {n:,} in {args.groups} groups, {args.rounds} rounds per mix (median)"
    )
    if "checkin" in streams:
        commands = sum(1 for u in streams["checkin"] if u.message and u.message.text == "/checkin")
        line += f"; the check-in mix has {commands:,} /checkin ({commands / n:.0%})"
    print(line)

    def row(label: str, cells: list[str]) -> None:
        print(f"{label:24}" + "".join(f"{cell:>24}" for cell in cells))

    bare_rate = {mix: n / statistics.median(bare[mix]) for mix in mixes}
    real_rate = {mix: n / statistics.median([r.seconds for r in real[mix]]) for mix in mixes}
    row("", [LABELS[mix] for mix in mixes])
    row("bare aiogram dispatch", [f"{bare_rate[mix]:,.0f} updates/s" for mix in mixes])
    row("tidepool", [f"{real_rate[mix]:,.0f} updates/s" for mix in mixes])
    row("cost ratio (vs bare)", [f"{bare_rate[mix] / real_rate[mix]:.2f}x" for mix in mixes])
    row("target", [f"<= {TARGETS[mix]:.2f}x" for mix in mixes])
    row(
        "ratio per round",
        [
            " ".join(f"{r.seconds / b:.2f}" for b, r in zip(bare[mix], real[mix], strict=True))
            for mix in mixes
        ],
    )
    last = {mix: real[mix][-1] for mix in mixes}
    row("check-ins recorded", [f"{last[mix].checkins:,}" for mix in mixes])
    row("replies sent / queued", [f"{last[mix].replied:,} / {last[mix].queued:,}" for mix in mixes])
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"sendMessage calls to the emulator (localhost), all rounds: {sends:,}")
    print(
        f"memory (peak RSS): {peak_mib:,.0f} MiB, of which {before_mib:,.0f} MiB held the "
        "prebuilt updates before the rounds"
    )


if __name__ == "__main__":
    asyncio.run(main())
