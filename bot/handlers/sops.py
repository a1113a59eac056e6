"""SOP handlers: flow buttons and the admin commands /sops, /sop_on, /sop_off, /sop_run, /reload."""

from __future__ import annotations

from typing import Any

from aiogram import Router
from aiogram.filters import Command, CommandObject
from aiogram.types import CallbackQuery, Message

from bot.handlers.filters import AdminsOnly, InGroup
from bot.outbox import Outbox
from bot.registry import Registry
from bot.sop.admin import Key, Reply, SopAdmin
from bot.sop.engine import Engine
from bot.texts import Texts


class Say:
    """Replies to a command in the language of its chat, through the delivery service."""

    def __init__(self, delivery: Outbox, texts: Texts, registry: Registry) -> None:
        self.delivery = delivery
        self.texts = texts
        self.registry = registry

    async def __call__(self, message: Message, *replies: Reply) -> None:
        language = self.language(message.chat.id)
        lines = []
        for key, values in replies:
            shown = {
                name: self.texts(value, language) if isinstance(value, Key) else value
                for name, value in values.items()
            }
            lines.append(self.texts(key, language, **shown))
        text = "\n".join(lines)
        await self.delivery.send_message(
            message.chat.id, text, source="command", reply_to_message_id=message.message_id
        )

    def language(self, chat_id: int) -> str | None:
        """The chat's language (None: the default)."""
        return self.registry.language(chat_id, None)

    def text(self, chat_id: int, key: str, **values: Any) -> str:
        """Text `key` in the chat's language."""
        return self.texts(key, self.language(chat_id), **values)


async def list_sops(message: Message, sop_admin: SopAdmin, say: Say) -> None:
    await say(message, *await sop_admin.overview(message.chat.id))


async def switch_sop(
    message: Message, command: CommandObject, sop_admin: SopAdmin, say: Say
) -> None:
    sop_id = (command.args or "").strip().split()
    if len(sop_id) != 1:
        await say(message, ("sop.usage_switch", {"command": command.command}))
        return
    by = message.from_user.id if message.from_user else None
    on = command.command == "sop_on"
    await say(message, await sop_admin.switch(message.chat.id, sop_id[0], on, by))


async def run_sop(message: Message, command: CommandObject, sop_admin: SopAdmin, say: Say) -> None:
    args = (command.args or "").split()
    if not 1 <= len(args) <= 2:
        await say(message, ("sop.usage_run", {}))
        return
    user_id: int | None = None
    who = ""
    replied = message.reply_to_message
    if len(args) == 2:
        who = args[1]
        user_id = await say.registry.find_member(message.chat.id, who)
        if user_id is None:
            await say(message, ("sop.unknown_member", {"who": who}))
            return
    elif replied is not None and replied.from_user is not None and not replied.from_user.is_bot:
        user_id, who = replied.from_user.id, replied.from_user.full_name
    await say(message, await sop_admin.run(message.chat.id, args[0], user_id, who))


# Answers to a press shown as an alert the presser must close, not a passing note: a button
# only another member may press (the join check's) must not look as if it did something.
ALERTS = frozenset({"sop.not_for_you"})


async def pressed(query: CallbackQuery, engine: Engine, say: Say) -> None:
    """Any button on a group message: flow buttons continue their run; others may trigger."""
    message = query.message
    if message is None or query.data is None:
        await query.answer()
        return
    answer = await engine.button(
        message.chat.id, query.from_user.id, message.message_id, query.data
    )
    text = say.text(message.chat.id, answer) if answer else None
    await query.answer(text, show_alert=answer in ALERTS)


COMMANDS = ("sops", "sop_on", "sop_off", "sop_run", "reload")


async def sop_command(
    message: Message, command: CommandObject, sop_admin: SopAdmin, say: Say
) -> None:
    """One handler for the SOP commands: other commands pay for one filter, not five."""
    name = command.command
    if name == "sops":
        await list_sops(message, sop_admin, say)
    elif name == "reload":
        await say(message, *sop_admin.reload())
    elif name == "sop_run":
        await run_sop(message, command, sop_admin, say)
    else:
        await switch_sop(message, command, sop_admin, say)


def register(router: Router) -> None:
    """Add the SOP handlers to `router` (the dispatcher itself, like the membership handlers).

    The commands are for admins, in groups; /reload also works in an owner's private chat."""
    router.message.register(
        sop_command, Command(*COMMANDS), InGroup(private=("reload",)), AdminsOnly()
    )
    router.callback_query.register(pressed, InGroup())
