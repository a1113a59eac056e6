"""Telegram as a dry run sees it: nothing is asked of it, and every question goes unanswered.

What the bot sends goes to a recording outbox; what services would ask Telegram (a member's
status, a group's admins) fails as an unreachable server does, so each service takes its
"Telegram could not say" path (a press is trusted).
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from typing import Any

from aiogram import Bot
from aiogram.client.session.base import BaseSession
from aiogram.exceptions import TelegramNetworkError
from aiogram.methods import TelegramMethod
from aiogram.methods.base import TelegramType
from aiogram.types import User

TOKEN = "123456:SIMULATED-telegram"  # the shape aiogram checks; never sent anywhere


class Unreachable(BaseSession):
    """A session to a Telegram that never answers: every request fails at once."""

    async def make_request(
        self,
        bot: Bot,
        method: TelegramMethod[TelegramType],
        timeout: int | None = None,  # noqa: ASYNC109
    ) -> TelegramType:
        raise TelegramNetworkError(method, "no Telegram here: nothing is asked of it")

    async def stream_content(
        self,
        url: str,
        headers: dict[str, Any] | None = None,
        timeout: int = 30,  # noqa: ASYNC109  (the session interface)
        chunk_size: int = 65536,
        raise_for_status: bool = True,
    ) -> AsyncGenerator[bytes, None]:
        raise TelegramNetworkError(None, f"no Telegram here to fetch {url}")  # type: ignore[arg-type]
        yield b""  # an async generator, as the session's interface is

    async def close(self) -> None:
        """Nothing was opened."""


def unreachable_bot(username: str) -> tuple[Bot, User]:
    """A Bot whose Telegram never answers, and the bot's own user as getMe would give it."""
    bot = Bot(TOKEN, session=Unreachable())
    return bot, User(id=bot.id, is_bot=True, first_name="Tidepool", username=username)
