"""A newcomer's first messages through the checks: verdicts stored, spam deleted and its sender
restricted, admins asked to confirm.

Only members not approved yet are looked at, which costs every other message one dictionary
lookup. A newcomer's first `first_messages` substantive messages (short greetings do not count)
are checked; when they all pass, the member is approved. An edit by a member not approved yet is
checked again (a newcomer who edits a message that passed into spam is caught), but never counts
toward approval. Approved members' edits are not checked.
"""

from __future__ import annotations

import asyncio
import re
from typing import Any

from aiogram.types import Message, MessageOriginChannel
from loguru import logger

from bot.db import people
from bot.moderation.checks import Checks, Judgement, Post
from bot.moderation.review import Review
from bot.moderation.service import Moderation
from bot.periodic import Background

BATCH = 500  # verdicts of passing messages written together
FLUSH_EVERY = 1.0  # seconds
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


class Screening(Background):
    """Checks newcomers' messages (see the module's doc). The verdicts of messages that pass
    are written in batches (`BATCH`, or every `FLUSH_EVERY` seconds, and at the stop): the
    messages of a burst of newcomers cost no transaction each."""

    name = "moderation verdicts"

    def __init__(
        self, moderation: Moderation, checks: Checks, review: Review, bot_username: str = ""
    ) -> None:
        super().__init__()
        self.moderation = moderation
        self._verdicts: list[dict[str, Any]] = []
        self._checked: set[tuple[int, int]] = set()  # newcomers whose count changed
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
        verdict = {
            "chat_id": chat_id,
            "user_id": user.id,
            "message_id": message.message_id,
            "at": self.clock.now(),
            "edited": edited,
            "spam": judgement.spam,
            "judgement": judgement.as_json(),
            "action_id": None,
        }
        if judgement.spam:
            verdict["action_id"] = await self._act(message, judgement, post.text)
            await self.store.verdict(**verdict)
            return judgement
        self._verdicts.append(verdict)  # most messages pass: written in batches
        if not edited and not await self.moderation.passed(chat_id, user.id):
            self._checked.add((chat_id, user.id))
        if len(self._verdicts) >= BATCH:
            await self.flush()
        return judgement

    async def flush(self) -> None:
        """Write the verdicts of the messages that passed, and the newcomers' counts."""
        verdicts, self._verdicts = self._verdicts, []
        keys, self._checked = self._checked, set()
        pending = self.moderation.pending
        checked = {key: pending[key] for key in keys if key in pending}
        if verdicts or checked:
            await self.store.passed(verdicts, checked)

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(FLUSH_EVERY)
            try:
                await self.flush()
            except Exception:
                logger.exception("moderation: writing verdicts failed; trying again")

    async def close(self) -> None:
        await super().close()
        await self.flush()

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
        # Reported when anything was done: a restriction whose deletion failed (no right, the
        # message gone) must still reach the admins, who alone can lift it.
        done = deleted if deleted.ok else restricted
        if done.ok and not done.dry:
            await self.review.report(chat_id, user, text, judgement, done.action_id, restricted.ok)
        return deleted.action_id if deleted.ok else restricted.action_id

    async def _members_named(self, chat_id: int, names: set[str]) -> set[str]:
        """Which of these usernames (lower case) are members of the group."""
        async with self.store.engine.connect() as conn:
            return set(await people.named(conn, chat_id, names))
