"""`tidepool sandbox`: start the sandbox, print its address, run until Ctrl-C or SIGTERM."""

from __future__ import annotations

import asyncio
import signal
import socket
import sys
from pathlib import Path

from loguru import logger

from bot.sandbox._sandbox import Sandbox, SandboxError
from bot.sandbox._web import serve_page
from bot.settings import Settings


async def run_sandbox(settings: Settings, folder: Path, host: str, port: int, reset: bool) -> int:
    """Run the sandbox until SIGINT/SIGTERM (a second one stops at once); 1 if the bot died."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, _on_signal, stop)
    _check_port(host, port)
    sandbox = Sandbox(settings, folder, reset=reset)
    runner = None
    code = 0
    try:
        sys.stdout.write("Tidepool sandbox: starting the emulator and the bot…\n")
        sys.stdout.flush()
        await sandbox.start()
        runner = await serve_page(sandbox, host, port)
        sys.stdout.write(
            f"Tidepool sandbox: http://{host}:{port}/  (the bot's log: {sandbox.files.log};"
            " Ctrl-C stops it)\n"
        )
        sys.stdout.flush()
        assert sandbox.bot is not None
        bot_exit = asyncio.ensure_future(sandbox.bot.wait())
        stopping = asyncio.ensure_future(stop.wait())
        await asyncio.wait({bot_exit, stopping}, return_when=asyncio.FIRST_COMPLETED)
        stopping.cancel()
        if bot_exit.done():
            code = 1
            logger.error(
                "sandbox: the bot exited (code {}); its log ends with:\n{}",
                bot_exit.result(),
                sandbox.bot.log_tail(),
            )
        else:
            bot_exit.cancel()
            sys.stdout.write("Tidepool sandbox: stopping the bot…\n")
            sys.stdout.flush()
    finally:
        if runner is not None:
            await runner.cleanup()
        await sandbox.stop()
    sys.stdout.write("Tidepool sandbox: stopped; the next start carries on from here\n")
    return code


def _check_port(host: str, port: int) -> None:
    """Fail before starting anything when the page's port is taken."""
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as aiohttp binds
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise SandboxError(
                f"cannot serve the sandbox page on {host}:{port} ({exc.strerror}): another "
                "program uses the port (a sandbox already running?); set SANDBOX_PORT to another"
            ) from None


def _on_signal(stop: asyncio.Event) -> None:
    if stop.is_set():  # a second Ctrl-C: stop now
        raise KeyboardInterrupt
    stop.set()
