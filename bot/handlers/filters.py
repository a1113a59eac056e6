"""The gates of the handlers: where a command is taken, and from whom, as cheap async filters.

Aiogram's magic filters run in a thread per call; these are plain coroutines. A handler is
registered with `Command(...)` first (it turns other commands away fastest), then its gates:

    router.message.register(handler, Command("stats"), InGroup(), AdminsOnly())

A gate that turns a command away answers it when there is something to say (that the command
is for admins, that it works in groups only), so each refusal is written once, here.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import TYPE_CHECKING

from aiogram.filters import CommandObject, Filter
from aiogram.types import CallbackQuery, ChatMemberUpdated, Message, ResultChatMemberUnion

from bot.admins import Admins

if TYPE_CHECKING:  # bot.handlers.sops uses these filters
    from bot.handlers.sops import Say

GROUP_TYPES = frozenset({"group", "supergroup"})


def in_chat(member: ResultChatMemberUnion) -> bool:
    """Whether a chat member entry means 'is in the chat' (restricted members may be)."""
    status = member.status
    if status in ("creator", "administrator", "member"):
        return True
    return status == "restricted" and bool(getattr(member, "is_member", False))


class InGroup(Filter):
    """The update happened in a group or supergroup.

    `otherwise`: the text key answering a command elsewhere (one key, or one per command);
    without it other chats get no answer. `private`: commands also taken in a private chat.
    A button pressed elsewhere is answered silently, so it stops spinning.
    """

    def __init__(
        self,
        *,
        otherwise: str | Mapping[str, str] | None = None,
        private: Collection[str] = (),
    ) -> None:
        self.otherwise = otherwise
        self.private = frozenset(private)

    async def __call__(
        self,
        event: Message | CallbackQuery | ChatMemberUpdated,
        command: CommandObject | None = None,
        say: Say | None = None,
    ) -> bool:
        if isinstance(event, CallbackQuery):
            if event.message is not None and event.message.chat.type in GROUP_TYPES:
                return True
            await event.answer()
            return False
        chat_type = event.chat.type
        if chat_type in GROUP_TYPES:
            return True
        name = command.command if command is not None else ""
        if chat_type == "private" and name in self.private:
            return True
        key = self.otherwise.get(name) if isinstance(self.otherwise, Mapping) else self.otherwise
        if key is not None and say is not None and isinstance(event, Message):
            await say(event, (key, {}))
        return False


class InPrivate(Filter):
    """A message in a private chat with the bot; elsewhere it gets no answer."""

    async def __call__(self, message: Message) -> bool:
        return message.chat.type == "private"


class AdminsOnly(Filter):
    """A command of the chat's admins: the group's admins and anonymous admins, and the bot's
    owners anywhere (in a private chat, only they). Anyone else is told it is for admins.

    `commands`: only these of the handler's commands are for admins; the others pass.
    """

    def __init__(self, *commands: str) -> None:
        self.commands = frozenset(commands)

    async def __call__(
        self, message: Message, admins: Admins, say: Say, command: CommandObject | None = None
    ) -> bool:
        if self.commands and (command is None or command.command not in self.commands):
            return True
        if await admins.may_command(message):
            return True
        await say(message, ("sop.admins_only", {}))
        return False


class OwnersInPrivate(Filter):
    """A message of one of the bot's owners, in their private chat with the bot.

    Anyone else writing to the bot privately is told `refusal`; an owner writing in a group is
    told `elsewhere` (to come to the private chat); nobody else in a group gets an answer.
    """

    def __init__(self, *, refusal: str, elsewhere: str) -> None:
        self.refusal = refusal
        self.elsewhere = elsewhere

    async def __call__(self, message: Message, admins: Admins, say: Say) -> bool:
        user = message.from_user
        if user is None:
            return False
        owner = user.id in admins.owner_ids
        if message.chat.type == "private":
            if owner:
                return True
            await say(message, (self.refusal, {}))
        elif owner and message.chat.type in GROUP_TYPES:
            await say(message, (self.elsewhere, {}))
        return False


class FromOwner(Filter):
    """A button pressed by one of the bot's owners; anyone else gets `refusal` in a popup."""

    def __init__(self, *, refusal: str) -> None:
        self.refusal = refusal

    async def __call__(self, query: CallbackQuery, admins: Admins, say: Say) -> bool:
        if query.from_user.id in admins.owner_ids:
            return True
        chat_id = query.message.chat.id if query.message is not None else query.from_user.id
        await query.answer(say.text(chat_id, self.refusal), show_alert=True)
        return False
