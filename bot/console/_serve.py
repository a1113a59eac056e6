"""Serving the console in the `tidepool run` process, on CONSOLE_LISTEN."""

from __future__ import annotations

from aiohttp import web
from loguru import logger

from bot.console._web import Console
from bot.factory import Tidepool


async def serve_console(app: Tidepool) -> tuple[Console, web.AppRunner] | None:
    """Start serving the console (None when CONSOLE_LISTEN is off or the port is taken: the
    bot runs on without it, and the owners are told once, at the start)."""
    settings = app.settings
    if settings.console_listen == "off":
        return None
    console = Console(app, settings.console_public_url)
    runner = web.AppRunner(console.application(), access_log=None)
    await runner.setup()
    host, port = settings.console_address
    try:
        await web.TCPSite(runner, host, port).start()
    except OSError as exc:
        await runner.cleanup()
        reason = exc.strerror or str(exc)
        logger.error(
            "console: cannot listen on {}:{} ({}); the bot runs without it. Set CONSOLE_LISTEN to "
            "a free address, or to off",
            host,
            port,
            reason,
        )
        await app.notify("console.not_serving", address=f"{host}:{port}", reason=reason)
        return None
    logger.info("console: {} (listening on {}:{})", console.public_url, host, port)
    return console, runner
