"""The bot's aiogram session keeps the response model of every method it called."""

from __future__ import annotations

import gc
import weakref

from aiogram.methods import Response
from aiogram.types import Message, User

from bot.emulator import EmulatorServer
from bot.factory import create_bot
from bot.settings import Settings

TOKEN = "123456:TEST-token"


async def test_response_models_are_built_once_not_on_every_call() -> None:
    async with EmulatorServer(token=TOKEN) as server:
        chat = (await server.client.create_chat("Readers"))["id"]
        await server.client.set_bot_status(chat, "administrator")
        bot = create_bot(
            Settings(_env_file=None, bot_token=TOKEN, telegram_api_base=server.base_url)
        )
        try:
            await bot.get_me()
            sent = await bot.send_message(chat, "<b>hello</b>")
            user_model = weakref.ref(Response[User])
            message_model = weakref.ref(Response[Message])
            gc.collect()  # pydantic keeps them weakly: without the session they would go now
            assert user_model() is Response[User] and message_model() is Response[Message]
            again = await bot.send_message(chat, "again")
            assert again.message_id > sent.message_id
        finally:
            await bot.session.close()
