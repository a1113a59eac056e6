"""The bot's aiogram session keeps the response model of every method it called."""

from __future__ import annotations

import gc
import weakref

from aiogram.methods import Response
from aiogram.types import InlineKeyboardButton, InlineKeyboardMarkup, Message, User

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


async def test_an_answer_to_a_button_reaches_telegram_as_plain_text() -> None:
    """Texts are rendered as HTML (an apostrophe in a live's title becomes &#39;), but Telegram
    shows a button's answer as written: the session unescapes it and keeps it to 200 characters."""
    async with EmulatorServer(token=TOKEN) as server:
        ctl = server.client
        user = await ctl.create_user("Kai")
        await ctl.start(user["id"])
        bot = create_bot(
            Settings(_env_file=None, bot_token=TOKEN, telegram_api_base=server.base_url)
        )
        try:
            markup = InlineKeyboardMarkup(
                inline_keyboard=[[InlineKeyboardButton(text="Remind me", callback_data="r")]]
            )
            sent = await bot.send_message(user["id"], "Live", reply_markup=markup)
            answers = []
            for text in ("I&#39;ll remind you of Kai&#39;s Q&amp;A", "x" * 150 + "&amp;" * 60):
                pressed = await ctl.press(user["id"], user["id"], sent.message_id, "r")
                assert await bot.answer_callback_query(pressed["callback_query_id"], text=text)
                answers.append(await ctl.callback_answer(pressed["callback_query_id"]))
        finally:
            await bot.session.close()
    assert answers[0] is not None and answers[0]["text"] == "I'll remind you of Kai's Q&A"
    assert answers[1] is not None and answers[1]["text"] == "x" * 150 + "&" * 49 + "…"
