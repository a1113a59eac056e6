"""/console: a one-time sign-in link to the operator console, in a private chat only.

Owners and the admins of a group the bot is in get a link (valid ten minutes, usable once);
anyone else is told why not. In a group the command points to the private chat: a sign-in
link must never be posted where others can read it.
"""

from __future__ import annotations

from dataclasses import dataclass

from aiogram import Router
from aiogram.filters import Command
from aiogram.types import Message
from loguru import logger

from bot.console._access import Access
from bot.console._auth import LINK_MINUTES, SignIn
from bot.handlers.sops import Say
from bot.outbox import Outbox


@dataclass(frozen=True)
class Links:
    """What /console needs: the sign-in store, who may sign in, and the console's address."""

    sign_in: SignIn
    access: Access
    url: str


async def console_command(
    message: Message, console_links: Links, say: Say, delivery: Outbox
) -> None:
    user = message.from_user
    if message.chat.type != "private" or user is None:
        await say(message, ("console.private_only", {}))
        return
    if not console_links.url:
        await say(message, ("console.switched_off", {}))
        return
    groups = await console_links.access.groups_of(user.id)
    if groups is not None and not groups:
        await say(message, ("console.refused", {}))
        return
    token = await console_links.sign_in.issue_link(user.id)
    link = f"{console_links.url}/signin/{token}"
    logger.info("console: sign-in link sent to {}", user.id)
    text = say.text(message.chat.id, "console.link", link=link, minutes=LINK_MINUTES)
    # A link preview fetches the page only: the link is used up by the button on it.
    await delivery.send_message(message.chat.id, text, source="command")


def register(router: Router) -> None:
    router.message.register(console_command, Command("console"))
