"""`Delivery`: the calls the bot makes to send, edit, delete and pin messages, and to restrict,
remove and let back members."""

from __future__ import annotations

from datetime import datetime

from aiogram.types import (
    ChatPermissions,
    InlineKeyboardMarkup,
    InputFile,
    Message,
    ReplyMarkupUnion,
    ReplyParameters,
)

from bot.outbox import Before

from ._jobs import Delivered, _Text
from ._scheduler import _Scheduler


class Delivery(_Scheduler):
    """Sends messages for the whole bot within Telegram's limits, fairly across chats.

    Call `start()` once the event loop runs and `close()` before stopping; `close` waits for
    queued messages up to a timeout and records what could not be sent. The calls are here;
    the queues, the pacing and what Telegram answers are `_Scheduler`'s.
    """

    # -- what callers use ---------------------------------------------------------------------

    async def send_message(
        self,
        chat_id: int,
        text: str,
        *,
        source: str,
        reply_markup: ReplyMarkupUnion | None = None,
        reply_to_message_id: int | None = None,
        disable_notification: bool = False,
        parse_mode: str | None = "HTML",
        combine: str | None = None,
        before: Before | None = None,
    ) -> Delivered:
        """Send a text message; a reply whose original is gone is sent as a plain message.

        With `combine`, the text may go out in one message with other texts of the same key
        that are queued at the same time; that message is not a reply. `before` is awaited
        once it is this message's turn, just before it is paced and Telegram is asked (the push
        queue notes that a message may now arrive); a combined message awaits the `before` of
        every text it carries. A `before` that fails fails the message, unsent.
        """

        async def request(target: int) -> Message:  # a combined message makes its own request
            return await self.bot.send_message(
                target,
                text,
                parse_mode=parse_mode,
                reply_markup=reply_markup,
                reply_parameters=_reply_to(reply_to_message_id),
                disable_notification=disable_notification,
            )

        combinable = None
        if combine is not None:
            combinable = _Text(combine, text, parse_mode, disable_notification, reply_markup)
        return await self._deliver(
            "sendMessage", chat_id, source, request, paced=True, text=combinable, before=before
        )

    async def send_photo(
        self,
        chat_id: int,
        photo: str | InputFile,
        *,
        caption: str | None = None,
        source: str,
        reply_markup: ReplyMarkupUnion | None = None,
        reply_to_message_id: int | None = None,
        disable_notification: bool = False,
        parse_mode: str | None = "HTML",
        before: Before | None = None,
    ) -> Delivered:
        """Send a photo (a file id, a URL or an `InputFile`) with an optional caption; `before`
        as for `send_message`."""
        reply = _reply_to(reply_to_message_id)

        async def request(target: int) -> Message:
            return await self.bot.send_photo(
                target,
                photo,
                caption=caption,
                parse_mode=parse_mode,
                reply_markup=reply_markup,
                reply_parameters=reply,
                disable_notification=disable_notification,
            )

        return await self._deliver("sendPhoto", chat_id, source, request, paced=True, before=before)

    async def edit_text(
        self,
        chat_id: int,
        message_id: int,
        text: str,
        *,
        source: str,
        reply_markup: InlineKeyboardMarkup | None = None,
        parse_mode: str | None = "HTML",
    ) -> Delivered:
        """Replace the text (and buttons) of a message the bot sent."""

        async def request(target: int) -> Message | bool:
            return await self.bot.edit_message_text(
                text=text,
                chat_id=target,
                message_id=message_id,
                parse_mode=parse_mode,
                reply_markup=reply_markup,
            )

        return await self._deliver(
            "editMessageText", chat_id, source, request, paced=True, message_id=message_id
        )

    async def delete(self, chat_id: int, message_id: int, *, source: str) -> Delivered:
        """Delete a message."""

        async def request(target: int) -> bool:
            return await self.bot.delete_message(target, message_id)

        return await self._deliver(
            "deleteMessage", chat_id, source, request, paced=False, message_id=message_id
        )

    async def pin(
        self, chat_id: int, message_id: int, *, source: str, disable_notification: bool = True
    ) -> Delivered:
        """Pin a message, silently unless asked otherwise."""

        async def request(target: int) -> bool:
            return await self.bot.pin_chat_message(
                target, message_id, disable_notification=disable_notification
            )

        return await self._deliver(
            "pinChatMessage", chat_id, source, request, paced=False, message_id=message_id
        )

    async def unpin(self, chat_id: int, message_id: int | None = None, *, source: str) -> Delivered:
        """Unpin a message, or the most recent pinned one when `message_id` is None."""

        async def request(target: int) -> bool:
            return await self.bot.unpin_chat_message(target, message_id=message_id)

        return await self._deliver(
            "unpinChatMessage", chat_id, source, request, paced=False, message_id=message_id
        )

    async def restrict(
        self,
        chat_id: int,
        user_id: int,
        permissions: ChatPermissions,
        *,
        source: str,
        until: datetime | None = None,
    ) -> Delivered:
        """Set what a member may send (every permission granted lifts a restriction)."""

        async def request(target: int) -> bool:
            return await self.bot.restrict_chat_member(
                target,
                user_id,
                permissions,
                use_independent_chat_permissions=True,
                until_date=until,
            )

        return await self._deliver("restrictChatMember", chat_id, source, request, paced=False)

    async def ban(
        self, chat_id: int, user_id: int, *, source: str, until: datetime | None = None
    ) -> Delivered:
        """Remove a member and keep them out (until `until`, or for good)."""

        async def request(target: int) -> bool:
            return await self.bot.ban_chat_member(target, user_id, until_date=until)

        return await self._deliver("banChatMember", chat_id, source, request, paced=False)

    async def unban(self, chat_id: int, user_id: int, *, source: str) -> Delivered:
        """Let a removed member come back (a member still present is left alone)."""

        async def request(target: int) -> bool:
            return await self.bot.unban_chat_member(target, user_id, only_if_banned=True)

        return await self._deliver("unbanChatMember", chat_id, source, request, paced=False)

    @property
    def closing(self) -> bool:
        """Stopping: new requests are refused, and those never tried are failed unattempted."""
        return self._closing

    @property
    def pending(self) -> int:
        """Requests queued or in flight."""
        queued = sum(len(job.answers) for lane in self._lanes.values() for job in lane.jobs)
        return queued + sum(len(job.answers) for job in self._in_flight.values())


def _reply_to(message_id: int | None) -> ReplyParameters | None:
    if message_id is None:
        return None
    return ReplyParameters(message_id=message_id, allow_sending_without_reply=True)
