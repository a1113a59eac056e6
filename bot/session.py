"""The aiogram session the bot talks to Telegram through.

aiogram reads every answer as `Response[T]` (T: what the method returns), a pydantic generic
model that pydantic builds on first use and keeps only weakly. Nothing else holds it, so once the
garbage collector has taken it the next call of the method builds it again: about 2 ms of the
event loop per message sent, the time of a hundred group messages logged. The session keeps the
models of the methods the bot calls.

It also makes every answer to a button press plain text: texts are rendered as HTML (a title's
apostrophe becomes &#39;), but Telegram shows a button's answer as written, in up to 200
characters. Every handler's answer passes here, so none can forget it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.session.middlewares.base import NextRequestMiddlewareType
from aiogram.client.telegram import TelegramAPIServer
from aiogram.methods import AnswerCallbackQuery, Response, TelegramMethod
from aiogram.methods.base import TelegramType

from bot.texts import popup

if TYPE_CHECKING:
    from aiogram import Bot


class Session(AiohttpSession):
    """`AiohttpSession` to `api_base` that keeps the response model of each method it called."""

    def __init__(self, api_base: str) -> None:
        super().__init__(api=TelegramAPIServer.from_base(api_base))
        self._models: dict[Any, type[Response[Any]]] = {}
        self.middleware(_plain_answers)

    def check_response(
        self, bot: Bot, method: TelegramMethod[TelegramType], status_code: int, content: str
    ) -> Response[TelegramType]:
        returning = method.__returning__
        if returning not in self._models:
            self._models[returning] = Response[returning]  # type: ignore[valid-type]
        return super().check_response(bot, method, status_code, content)


async def _plain_answers(
    make_request: NextRequestMiddlewareType[TelegramType],
    bot: Bot,
    method: TelegramMethod[TelegramType],
) -> Response[TelegramType]:
    """An answer to a button press, as Telegram shows it: plain text, at most 200 characters."""
    if isinstance(method, AnswerCallbackQuery) and method.text:
        method = method.model_copy(update={"text": popup(method.text)})  # type: ignore[assignment]
    return await make_request(bot, method)
