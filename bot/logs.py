"""Loguru set-up: stdlib logging routed in, chat context in every line, the token never printed."""

from __future__ import annotations

import logging
import sys
from types import FrameType
from typing import TYPE_CHECKING

from loguru import logger

if TYPE_CHECKING:
    from loguru import Record

FORMAT = (
    "<green>{time:YYYY-MM-DD HH:mm:ss.SSS}</green> <level>{level: <8}</level> "
    "<cyan>{name}</cyan>{extra[chat]} - <level>{message}</level>"
)


class InterceptHandler(logging.Handler):
    """Send records of stdlib loggers (aiogram, SQLAlchemy, aiohttp) to loguru."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            level: str | int = logger.level(record.levelname).name
        except ValueError:
            level = record.levelno
        frame: FrameType | None = logging.currentframe()
        depth = 2
        while frame is not None and frame.f_code.co_filename == logging.__file__:
            frame = frame.f_back
            depth += 1

        def rename(entry: Record) -> None:
            entry["name"] = record.name

        logger.patch(rename).opt(depth=depth, exception=record.exc_info).log(
            level, record.getMessage()
        )


def setup_logging(level: str = "INFO", secrets: tuple[str, ...] = ()) -> None:
    """Log to stderr at `level`; lines never contain any of `secrets` (the bot token)."""
    hidden = tuple(secret for secret in secrets if secret)

    def patch(record: Record) -> None:
        chat_id = record["extra"].get("chat_id")
        record["extra"]["chat"] = f" [chat {chat_id}]" if chat_id is not None else ""

    def write(text: str) -> None:
        # The whole formatted line, traceback included: an exception may quote a request URL.
        for secret in hidden:
            text = text.replace(secret, "<token>")
        sys.stderr.write(text)

    logger.remove()
    logger.configure(patcher=patch)
    colorize = sys.stderr.isatty()
    logger.add(
        write, level=level, format=FORMAT, backtrace=False, diagnose=False, colorize=colorize
    )
    logging.basicConfig(handlers=[InterceptHandler()], level=0, force=True)
    # Library chatter stays at WARNING unless we are debugging; every SQL statement only at TRACE.
    quiet = logging.WARNING if level not in ("TRACE", "DEBUG") else logging.DEBUG
    for name in ("aiogram.event", "alembic", "aiohttp.access", "apscheduler"):
        logging.getLogger(name).setLevel(quiet)
    sql = logging.DEBUG if level == "TRACE" else logging.WARNING
    for name in ("sqlalchemy.engine", "aiosqlite"):
        logging.getLogger(name).setLevel(sql)
    logging.getLogger("alembic.runtime.migration").setLevel(quiet)
