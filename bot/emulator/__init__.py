"""Telegram Bot API emulator: an aiohttp server an unmodified aiogram bot can run against."""

from ._objects import masked_invite_link
from ._server import Emulator, EmulatorServer, serve
from ._state import World
from .client import EmulatorClient, EmulatorError

__all__ = [
    "Emulator",
    "EmulatorClient",
    "EmulatorError",
    "EmulatorServer",
    "World",
    "masked_invite_link",
    "serve",
]
