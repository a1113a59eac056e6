"""The bot as the benchmarks run it: built by `bot.factory`, Telegram played by the emulator.

A bench builds the application the way `tidepool run` does (`create_bot`, `assemble`, the
start-up heap frozen); what it replaces is Telegram (an `EmulatorServer` in the bench's own
process, which `TELEGRAM_API_BASE` points at) and, where it needs to, the clock. No bench talks
to the real Telegram address.
"""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from pathlib import Path
from typing import Any

from aiogram import Bot
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.app import freeze_startup_heap
from bot.clock import Clock
from bot.db import GROUPS, GroupStatus, utcnow, writing
from bot.emulator import EmulatorServer
from bot.emulator import _events as emulator_events
from bot.factory import Tidepool, assemble, create_bot, open_database
from bot.settings import Settings
from bot.sop.check import TIERS_FILE
from bot.sop.text_files import TEXTS_SUFFIX

ROOT = Path(__file__).resolve().parent.parent
CONTENT = ROOT / "content"
SOPS = ROOT / "sops"
TOKEN = "123456:BENCH-token"


def settings_for(server: EmulatorServer, database: Path, **values: Any) -> Settings:
    """The settings of a deployment whose Telegram is `server` and whose database is the SQLite
    file `database`: the shipped texts and SOPs, in English, unless `values` say otherwise.
    A developer's `.env` is not read, so that it cannot change what a bench measures."""
    chosen: dict[str, Any] = {"content_dir": CONTENT, "sops_dir": SOPS, "language": "en"}
    return Settings(
        _env_file=None,
        bot_token=TOKEN,
        telegram_api_base=server.base_url,
        database_url=f"sqlite+aiosqlite:///{database}",
        **{**chosen, **values},
    )


def write_sops(folder: Path, sops: dict[str, str]) -> Path:
    """A SOPS_DIR in a new `folder` holding these SOP files (name -> YAML) and, as every
    deployment's does, the shipped member tier rules (`tiers.yaml`, not an SOP), and the texts
    of a shipped SOP written here (`<name>.texts.yaml`)."""
    sops_dir = folder / "sops"
    sops_dir.mkdir(parents=True)
    shutil.copyfile(SOPS / TIERS_FILE, sops_dir / TIERS_FILE)
    for name, text in sops.items():
        (sops_dir / f"{name}.yaml").write_text(text)
        texts = SOPS / f"{name}{TEXTS_SUFFIX}"
        if texts.is_file():
            shutil.copyfile(texts, sops_dir / texts.name)
    return sops_dir


def sops_dir_in(folder: Path, sops: dict[str, str] | None) -> Path:
    """Make `folder`; return the SOPS_DIR to run: the shipped one, or one in `folder` with
    only `sops`."""
    folder.mkdir(parents=True, exist_ok=True)
    return SOPS if sops is None else write_sops(folder, sops)


def seed_chats(
    server: EmulatorServer, chats: Iterable[tuple[int, str]], bot_status: str = "administrator"
) -> None:
    """Supergroups `(id, title)` in the emulator with the bot in them (an administrator has the
    default rights, which are the ones Tidepool needs), set silently: no updates are queued."""
    world = server.emulator.world
    for chat_id, title in chats:
        world.add_chat({"id": chat_id, "title": title, "type": "supergroup"})
        emulator_events.set_member(world, chat_id, {"user_id": world.bot_id, "status": bot_status})


async def known_groups(db: AsyncEngine, chats: Iterable[tuple[int, str]], **columns: Any) -> None:
    """Active groups `(id, title)` in the `groups` table, as the bot knows them after a while
    (`columns`: bot_status, language, ...); written before the bot starts, which loads them."""
    now = utcnow()
    rows = [
        {
            "id": chat_id,
            "title": title,
            "type": "supergroup",
            "status": GroupStatus.ACTIVE.value,
            "tags": [],
            "missing_rights": [],
            "first_seen_at": now,
            "updated_at": now,
            **columns,
        }
        for chat_id, title in chats
    ]
    if rows:
        async with writing(db) as conn:
            await conn.execute(GROUPS.insert(), rows)


@contextlib.asynccontextmanager
async def running(
    server: EmulatorServer,
    folder: Path,
    clock: Clock,
    *,
    sops: dict[str, str] | None = None,
    groups: Iterable[tuple[int, str]] = (),
    group_columns: dict[str, Any] | None = None,
    prefill: Callable[[AsyncEngine], Awaitable[object]] | None = None,
    bot: Bot | None = None,
    **settings: Any,
) -> AsyncIterator[Tidepool]:
    """The whole bot, built, opened and started by `bot.factory.assemble` as `tidepool run`
    starts it (its start-up heap frozen too), and stopped in order when the block ends.

    Its Telegram is `server`; its database a new SQLite file in `folder`, where `groups`
    (id, title) are known already, with `group_columns`, as a bot that has been in them a while
    knows them; `prefill(db)` writes whatever else the bot should find there. It runs the
    shipped SOPs, or with `sops` only these files (and checks that they loaded). `settings` are
    further settings (timezone, language, ...); `bot` a Bot the caller keeps (prebuilt updates
    are bound to one Bot, which must then be the one handling them).
    """
    sops_dir = sops_dir_in(folder, sops)
    config = settings_for(server, folder / "bench.db", sops_dir=sops_dir, **settings)
    db = await open_database(config)
    session_owner = bot is None
    if bot is None:
        bot = create_bot(config)
    try:
        await known_groups(db, groups, **(group_columns or {}))
        if prefill is not None:
            await prefill(db)
        me = await bot.me()
        async with assemble(config, bot, clock, me, db=db) as app:
            if sops is not None:
                expect_sops(app, sops)
            freeze_startup_heap()
            yield app
    finally:
        if session_owner:
            await bot.session.close()
        await db.dispose()


def expect_sops(app: Tidepool, sop_ids: Iterable[str]) -> None:
    """Stop the bench unless exactly these SOPs loaded (a broken file is only told to owners)."""
    loaded, wanted = set(app.engine.library.procedures), set(sop_ids)
    if loaded != wanted:
        raise SystemExit(f"bench SOPs did not load: {sorted(loaded)} instead of {sorted(wanted)}")
