"""Logging: the token never appears, stdlib loggers are routed in, chat context is shown."""

from __future__ import annotations

import logging

import pytest
from loguru import logger

from bot.logs import setup_logging

TOKEN = "123456:SECRET-token-value"


def test_token_is_hidden_in_messages_and_tracebacks(capsys: pytest.CaptureFixture[str]) -> None:
    setup_logging("INFO", secrets=(TOKEN,))
    logger.info("calling https://api.telegram.org/bot{}/getMe", TOKEN)
    try:
        raise RuntimeError(f"cannot reach https://api.telegram.org/bot{TOKEN}/getMe")
    except RuntimeError:
        logger.exception("request failed")
    logging.getLogger("aiogram.dispatcher").warning("stdlib says %s", TOKEN)
    with logger.contextualize(chat_id=-1001):
        logger.info("in a chat")
    err = capsys.readouterr().err
    assert TOKEN not in err
    assert err.count("<token>") == 3  # message, traceback, stdlib record
    assert "[chat -1001] - in a chat" in err
    assert "aiogram.dispatcher - stdlib says <token>" in err
