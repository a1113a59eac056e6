"""Moderation benchmark: what the first-message checks cost per newcomer message, in the ingest
benchmark's stream, against the very same stream without them, in the same run.

    python -m bench.moderation [--updates 100000] [--groups 50] [--rounds 3]

The stream is `bench.ingest`'s plain mix (texts and photos with captions, 40 members a group).
Both rounds run the bot as `tidepool run` assembles it, with the shipped SOPs, the `moderation`
section of flood.yaml checking a newcomer's first 50 messages. In the round "with checks" every
sender of the stream is a newcomer not approved yet (a row in `moderation_members`, as a join
leaves one), so every message of theirs goes through the checks and its verdict is stored; in the
round "without", nobody is (the members were there before the bot), so the checks never run. The
difference of the two, divided by the messages checked, is the cost of the checks per message:
at most 0.2 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import statistics
import tempfile
import time
from pathlib import Path

from aiogram import Bot
from aiogram.types import Update
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from bench._app import SOPS, running, settings_for
from bench._traffic import feed
from bench.ingest import TOKEN, count, group_ids, plain_updates, steps_done
from bot.clock import SystemClock
from bot.db import EVENTS, MODERATION_MEMBERS, MODERATION_VERDICTS, utcnow, writing
from bot.emulator import EmulatorServer
from bot.factory import create_bot
from bot.sop.text_files import TEXTS_SUFFIX

TARGET_MS = 0.2  # per newcomer message, at most
CHECKED = 50  # a newcomer's first messages checked: every message of the stream's senders


def shipped_sops() -> dict[str, str]:
    """The shipped SOPs, the flood SOP's `moderation` section checking 50 messages."""
    sops = {
        path.stem: path.read_text()
        for path in sorted(SOPS.glob("*.yaml"))
        if not path.name.endswith(TEXTS_SUFFIX) and path.stem != "tiers"
    }
    shipped = sops["flood"]
    sops["flood"] = shipped.replace("first_messages: 3", f"first_messages: {CHECKED}")
    if sops["flood"] == shipped:
        raise SystemExit("sops/flood.yaml no longer says `first_messages: 3`: adapt the bench")
    return sops


def newcomers(updates: list[Update]) -> list[tuple[int, int]]:
    """Every (group, sender) of the stream."""
    pairs = {
        (u.message.chat.id, u.message.from_user.id)
        for u in updates
        if u.message is not None and u.message.from_user is not None
    }
    return sorted(pairs)


async def one_round(
    updates: list[Update],
    bot: Bot,
    server: EmulatorServer,
    folder: Path,
    groups: int,
    *,
    checks: bool,
) -> tuple[float, int]:
    """(seconds, messages checked) for the stream through the bot."""
    known = [(chat_id, f"Group {g}") for g, chat_id in enumerate(group_ids(groups))]
    pending = newcomers(updates) if checks else []

    async def prefill(db: AsyncEngine) -> None:
        now = utcnow()
        rows = [{"chat_id": c, "user_id": u, "joined_at": now, "checked": 0} for c, u in pending]
        if rows:
            async with writing(db) as conn:
                await conn.execute(MODERATION_MEMBERS.insert(), rows)

    async with running(
        server, folder, SystemClock(), sops=shipped_sops(), groups=known, prefill=prefill, bot=bot
    ) as app:
        gc.collect()
        began = time.perf_counter()
        await feed(app.dispatcher, bot, updates)
        await app.engine.starts_written()
        await steps_done(app.db)
        await app.screening.flush()
        await app.activity.flush()
        elapsed = time.perf_counter() - began
        stored = await count(app.db, select(func.count()).select_from(EVENTS))
        if stored < len(updates):
            raise SystemExit(f"lost events: stored {stored} of {len(updates)}")
        checked = await count(app.db, select(func.count()).select_from(MODERATION_VERDICTS))
        spam = await count(app.db, select(func.count()).where(MODERATION_VERDICTS.c.spam.is_(True)))
        if spam:
            raise SystemExit(f"{spam} of the stream's plain messages were judged spam")
        await app.engine.drain(grace=0.0)
    return elapsed, checked


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
    async with EmulatorServer(token=TOKEN) as server, contextlib.AsyncExitStack() as stack:
        for g, chat_id in enumerate(group_ids(args.groups)):
            await server.client.create_chat(f"Group {g}", id=chat_id)
            await server.client.set_bot_status(chat_id, "administrator")
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory()))
        # The Bot as `tidepool run` makes it, talking to the emulator: the stream is bound to it.
        bot = create_bot(settings_for(server, tmp / "unused.db"))
        stack.push_async_callback(bot.session.close)
        updates = plain_updates(args.updates, args.groups, bot)
        gc.collect()
        gc.freeze()
        without: list[float] = []
        with_checks: list[float] = []
        checked = 0
        for n in range(args.rounds):  # alternate, so drift hits both alike
            seconds, _ = await one_round(
                updates, bot, server, tmp / f"without-{n}", args.groups, checks=False
            )
            without.append(seconds)
            seconds, checked = await one_round(
                updates, bot, server, tmp / f"with-{n}", args.groups, checks=True
            )
            with_checks.append(seconds)
    base, checking = statistics.median(without), statistics.median(with_checks)
    per_message_ms = (checking - base) / checked * 1000 if checked else float("nan")
    print(
        f"updates per round: {args.updates:,} in {args.groups} groups, {args.rounds} rounds"
        " (median)"
    )
    print(f"without moderation:   {args.updates / base:,.0f} updates/s ({base:.2f} s)")
    print(f"every sender checked: {args.updates / checking:,.0f} updates/s ({checking:.2f} s)")
    print(f"messages checked:     {checked:,} (verdicts stored)")
    print(f"ratio (vs without):   {checking / base:.2f}x")
    print(f"checks per message:   {per_message_ms:.3f} ms (target <= {TARGET_MS} ms)")
    rounds = " ".join(f"{w / b:.2f}" for b, w in zip(without, with_checks, strict=True))
    print(f"ratio per round:      {rounds}")


if __name__ == "__main__":
    asyncio.run(main())
