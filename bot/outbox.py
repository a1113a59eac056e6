"""The one outbound protocol: what every service asks of the delivery service.

`bot.delivery.Delivery` is the production implementation (pacing, 429s, removed groups);
tests use one recording fake (`tests.sop_harness.RecordingOutbox`). Services type their
collaborator with `Outbox`, whichever of its methods they use.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:  # `tidepool check` reads the step types, which name this: it loads no aiogram
    from datetime import datetime

    from aiogram.types import ChatPermissions, InlineKeyboardMarkup, InputFile

    from bot.delivery import Delivered

Asking = Callable[[], None]
# Awaited once it is a message's turn, before it is paced (the push queue records that it may
# arrive from now on); what it returns, if anything, is called at the moment Telegram is asked,
# at each attempt (the note that tells, after a crash, a request made from one never made).
Before = Callable[[], Awaitable[Asking | None]]


class Outbox(Protocol):
    """Sends, edits, pins and deletes; restricts, bans and unbans; each answered with a
    `Delivered`."""

    async def send_message(
        self,
        chat_id: int,
        text: str,
        *,
        source: str,
        reply_markup: InlineKeyboardMarkup | None = None,
        reply_to_message_id: int | None = None,
        combine: str | None = None,
        before: Before | None = None,
    ) -> Delivered: ...

    async def send_photo(
        self,
        chat_id: int,
        photo: str | InputFile,
        *,
        caption: str | None = None,
        source: str,
        reply_markup: InlineKeyboardMarkup | None = None,
        reply_to_message_id: int | None = None,
        before: Before | None = None,
    ) -> Delivered: ...

    async def edit_text(
        self,
        chat_id: int,
        message_id: int,
        text: str,
        *,
        source: str,
        reply_markup: InlineKeyboardMarkup | None = None,
    ) -> Delivered: ...

    async def pin(self, chat_id: int, message_id: int, *, source: str) -> Delivered: ...

    async def unpin(
        self, chat_id: int, message_id: int | None = None, *, source: str
    ) -> Delivered: ...

    async def delete(self, chat_id: int, message_id: int, *, source: str) -> Delivered: ...

    async def restrict(
        self,
        chat_id: int,
        user_id: int,
        permissions: ChatPermissions,
        *,
        source: str,
        until: datetime | None = None,
    ) -> Delivered: ...

    async def ban(
        self, chat_id: int, user_id: int, *, source: str, until: datetime | None = None
    ) -> Delivered: ...

    async def unban(self, chat_id: int, user_id: int, *, source: str) -> Delivered: ...

    @property
    def closing(self) -> bool:
        """The delivery service is stopping: what it refuses now was never tried."""


class Waker(Protocol):
    """A loop told that there is new work for it (pushes added, a deletion stored)."""

    def wake(self) -> None: ...
