"""Runs the bot as a process: connects to Telegram, assembles the bot, polls, stops on signals."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import signal
from typing import Any

from aiogram import Bot, Dispatcher
from aiogram.exceptions import (
    TelegramNetworkError,
    TelegramServerError,
    TelegramUnauthorizedError,
)
from loguru import logger

from bot.clock import clock_for
from bot.console._serve import serve_console
from bot.factory import Tidepool, assemble, create_bot, report_broken
from bot.polling import Poller, TokenRejected
from bot.settings import Settings, SettingsError

ALWAYS_ALLOWED = [
    "message",
    "edited_message",
    "callback_query",
    "chat_member",
    "my_chat_member",
]
# Seconds a stop waits for the updates in hand (a /sop_run waits up to 10 s for its outcome);
# then the assembly stops within the sum of `bot.factory.STOPS`.
UPDATES_GRACE = 12.0


def allowed_updates(dispatcher: Dispatcher) -> list[str]:
    """Update types to ask Telegram for; `chat_member` must be asked for explicitly."""
    return sorted({*ALWAYS_ALLOWED, *dispatcher.resolve_used_update_types()})


def freeze_startup_heap() -> None:
    """Keep the garbage collector from walking what start-up built, again and again.

    Modules, texts, SOP files and the registry live as long as the process; left to the
    collector, each full collection would walk all of them and stall the loop for a tenth of
    a second or more, just when thousands of runs fall due at once.
    """
    gc.collect()
    gc.freeze()


async def run(settings: Settings) -> None:
    """Run the bot until SIGINT or SIGTERM; then finish handled updates and write every event."""
    stop = asyncio.Event()
    _on_signals(stop)
    bot = create_bot(settings)
    try:
        me = await _connect(bot, stop)
        if me is None:
            return
        async with assemble(settings, bot, clock_for(settings.clock_file), me) as app:
            _on_reload(app)
            logger.info(
                "running as @{} (id {}), {} active groups",
                me.username,
                me.id,
                len(app.registry.active_group_ids()),
            )
            if not me.can_read_all_group_messages:
                logger.warning(
                    "privacy mode is on: the bot sees every message only in groups where it is "
                    "an administrator (turn it off with @BotFather → Bot Settings → Group Privacy)"
                )
            console = await serve_console(app)
            freeze_startup_heap()
            review = asyncio.create_task(app.rights.review_all(), name="rights-review")
            try:
                poller = Poller(
                    bot,
                    app.dispatcher,
                    allowed_updates=allowed_updates(app.dispatcher),
                    drain_timeout=UPDATES_GRACE,
                )
                await poller.run(stop)
                logger.info("stopped after {} updates", poller.handled)
            finally:  # also when a second signal cut the stop short
                review.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await review
                if console is not None:
                    await console[1].cleanup()
    finally:
        await bot.session.close()


async def _connect(bot: Bot, stop: asyncio.Event) -> Any:
    """getMe, retried while Telegram is unreachable; a rejected token is fatal."""
    delay = 1.0
    while not stop.is_set():
        try:
            me = await bot.get_me()
            webhook = await bot.get_webhook_info()
            if webhook.url:
                logger.warning("removing webhook {} to receive updates by polling", webhook.url)
                await bot.delete_webhook()
            return me
        except TelegramUnauthorizedError:
            raise TokenRejected("Unauthorized") from None
        except (TelegramNetworkError, TelegramServerError) as exc:
            logger.error("cannot reach the Bot API ({}); retrying in {:.0f}s", exc, delay)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=delay)
            delay = min(delay * 2, 60.0)
    return None


def _on_reload(app: Tidepool) -> None:
    """SIGHUP reloads the SOP files, as /reload does; broken files are reported to owners."""
    loop = asyncio.get_running_loop()
    pending: set[asyncio.Task[None]] = set()

    def reload() -> None:
        logger.info("SIGHUP received: reloading SOP files")
        task = loop.create_task(report_broken(app.engine.reload_files(), app.notify))
        pending.add(task)
        task.add_done_callback(pending.discard)

    loop.add_signal_handler(signal.SIGHUP, reload)


def _on_signals(stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    main = asyncio.current_task()

    def handle(name: str) -> None:
        if stop.is_set():
            logger.warning("{} again: stopping now", name)
            if main is not None:
                main.cancel()
            return
        logger.info("{} received: finishing work in progress, then stopping", name)
        stop.set()

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, handle, sig.name)


__all__ = ["SettingsError", "TokenRejected", "allowed_updates", "freeze_startup_heap", "run"]
