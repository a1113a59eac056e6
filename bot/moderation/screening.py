"""A newcomer's first messages through the checks: verdicts stored, spam deleted and its sender
restricted, admins asked to confirm.

Only members not approved yet are looked at, which costs every other message one dictionary
lookup. A newcomer's first `first_messages` substantive messages (short greetings do not count)
are checked; when they all pass, the member is approved. An edit by a member not approved yet is
checked again (an approved account editing a message into spam is the trick this catches), but
never counts toward approval.
"""

from __future__ import annotations

import re

from aiogram.types import Message, MessageOriginChannel
from sqlalchemy import func, select

from bot.db import MEMBERS
from bot.moderation.checks import Checks, Judgement, Post
from bot.moderation.review import Review
from bot.moderation.service import Moderation

_MENTION = re.compile(r"@([A-Za-z][A-Za-z0-9_]{3,31})")


def post_of(message: Message) -> Post:
    """What the checks see of a message: its text, the links it hides, where it came from."""
    text = message.text if message.text is not None else (message.caption or "")
    entities = message.entities if message.text is not None else message.caption_entities
    hidden = sum(1 for entity in entities or () if entity.type == "text_link")
    markup = message.reply_markup
    if markup is not None and hasattr(markup, "inline_keyboard"):
        hidden += sum(1 for row in markup.inline_keyboard for button in row if button.url)
    channel = isinstance(message.forward_origin, MessageOriginChannel)
    return Post(text=text, links=hidden, from_channel=channel)


class Screening:
    """Checks newcomers' messages (see the module's doc)."""

    def __init__(
        self, moderation: Moderation, checks: Checks, review: Review, bot_username: str = ""
    ) -> None:
        self.moderation = moderation
        self.bot_username = bot_username.lower()  # mentioning the bot is no other chat
        self.checks = checks
        self.review = review
        self.store = moderation.store
        self.clock = moderation.clock

    async def load(self) -> None:
        """Teach the checks every text admins said was not spam."""
        for text in await self.store.samples("not_spam"):
            self.checks.not_spam.add(text)

    def wants(self, chat_id: int, user_id: int) -> bool:
        """The hot path's question: is this sender a newcomer whose messages are checked?"""
        return (chat_id, user_id) in self.moderation.pending

    async def message(self, message: Message, *, edited: bool = False) -> Judgement | None:
        """Check a newcomer's message; the judgement, or None when it was not checked."""
        user = message.from_user
        if user is None or user.is_bot or message.sender_chat is not None:
            return None  # a channel or an anonymous admin posting: nobody to approve
        chat_id = message.chat.id
        if not self.wants(chat_id, user.id) or self.moderation.mode(chat_id) == "off":
            return None
        post = post_of(message)
        names = {name.lower() for name in _MENTION.findall(post.text)}
        if names:
            known = await self._members_named(chat_id, names) | {self.bot_username}
            post = Post(post.text, post.links, post.from_channel, known.__contains__)
        judgement = self.checks.judge(post)
        substantive = judgement.spam or post.from_channel or self.checks.substantive(post.text)
        if not substantive:
            return judgement  # a greeting, a sticker: neither checked nor counted
        if judgement.spam and await self.moderation.admins.is_admin(chat_id, user.id):
            await self.moderation.approve(chat_id, user.id, "admin")
            return None
        action_id = None
        if judgement.spam:
            action_id = await self._act(message, judgement, post.text)
        await self.store.verdict(
            chat_id=chat_id,
            user_id=user.id,
            message_id=message.message_id,
            at=self.clock.now(),
            edited=edited,
            spam=judgement.spam,
            judgement=judgement.as_json(),
            action_id=action_id,
        )
        if not judgement.spam and not edited:
            await self.moderation.passed(chat_id, user.id)
        return judgement

    async def _act(self, message: Message, judgement: Judgement, text: str) -> int | None:
        """Delete the spam and restrict its sender; ask the admins (not in dry mode)."""
        chat_id, user = message.chat.id, message.from_user
        assert user is not None
        check = judgement.fired[0] if judgement.fired else None
        reason = "first-message checks: " + ", ".join(judgement.fired)
        deleted = await self.moderation.delete(
            chat_id,
            message.message_id,
            user.id,
            by="checks",
            reason=reason,
            check=check,
            text=text,
        )
        restricted = await self.moderation.restrict(
            chat_id, user.id, by="checks", reason=reason, check=check
        )
        if deleted.ok and not deleted.dry:
            await self.review.report(
                chat_id, user, text, judgement, deleted.action_id, restricted.ok
            )
        return deleted.action_id

    async def _members_named(self, chat_id: int, names: set[str]) -> set[str]:
        """Which of these usernames (lower case) are members of the group."""
        m = MEMBERS.c
        async with self.store.engine.connect() as conn:
            rows = await conn.execute(
                select(func.lower(m.username)).where(
                    m.chat_id == chat_id, func.lower(m.username).in_(sorted(names))
                )
            )
            return {name for (name,) in rows}
