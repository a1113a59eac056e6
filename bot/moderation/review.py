"""Admins confirm what the checks did: each deleted message reaches them with "Not spam" and
"Ban" buttons; "Not spam" lifts the restriction, approves the member and teaches the checks the
text, so the same text passes next time.

The report goes privately to the group's admins who started the bot; when none has, it goes
to the group itself, without the spam's text, and is deleted once decided.
"""

from __future__ import annotations

import html
from datetime import timedelta
from typing import Any

from aiogram.types import InlineKeyboardButton, InlineKeyboardMarkup, User
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.db import reachable
from bot.deletions import Deletions
from bot.moderation.checks import Checks, Judgement
from bot.moderation.service import Moderation
from bot.moderation.store import Action
from bot.registry import Registry
from bot.texts import Texts

PREFIX = "mod:"  # callback data: mod:ok:<action id> | mod:ban:<action id>
GROUP_NOTICE_KEPT = timedelta(minutes=2)  # a decided notice in the group, before it goes
EXCERPT = 300  # characters of the spam shown to admins


def review_data(decision: str, action_id: int) -> str:
    return f"{PREFIX}{decision}:{action_id}"


def parse_review(data: str) -> tuple[str, int] | None:
    """(decision, action id) of a review button's data; None for other buttons."""
    if not data.startswith(PREFIX):
        return None
    decision, _, number = data[len(PREFIX) :].partition(":")
    if decision not in ("ok", "ban") or not number.isdigit():
        return None
    return decision, int(number)


class Review:
    """Reports the checks' deletions to admins and carries out their decisions."""

    def __init__(
        self,
        moderation: Moderation,
        checks: Checks,
        registry: Registry,
        texts: Texts,
        deletions: Deletions,
    ) -> None:
        self.moderation = moderation
        self.checks = checks  # the screening's checks, taught each "Not spam"
        self.registry = registry
        self.texts = texts
        self.deletions = deletions
        self.outbox = moderation.outbox
        self.engine: AsyncEngine = moderation.store.engine

    def _say(self, chat_id: int, key: str, **values: Any) -> str:
        known = self.registry.groups.get(chat_id)
        language = known.language if known is not None else None
        title = known.title if known is not None and known.title else str(chat_id)
        return self.texts(key, language, title=html.escape(title), **values)

    def _buttons(self, chat_id: int, action_id: int) -> InlineKeyboardMarkup:
        return InlineKeyboardMarkup(
            inline_keyboard=[
                [
                    InlineKeyboardButton(
                        text=self._say(chat_id, "moderation.not_spam_button"),
                        callback_data=review_data("ok", action_id),
                    ),
                    InlineKeyboardButton(
                        text=self._say(chat_id, "moderation.ban_button"),
                        callback_data=review_data("ban", action_id),
                    ),
                ]
            ]
        )

    async def report(
        self,
        chat_id: int,
        user: User,
        text: str,
        judgement: Judgement,
        action_id: int | None,
        restricted: bool,
    ) -> None:
        """Tell the admins what the checks deleted, with the buttons to undo it or ban."""
        if action_id is None:
            return
        people = await self.moderation.admins.people_of(chat_id)
        async with self.engine.connect() as conn:
            private = sorted(await reachable(conn, people))
        fired = [verdict for verdict in judgement.verdicts if verdict.spam]
        found = "; ".join(
            verdict.check + (f" ({verdict.detail})" if verdict.detail else "") for verdict in fired
        )
        values = {
            "name": html.escape(user.full_name),
            "user_id": user.id,
            "checks": html.escape(found),
            "restricted": restricted,
        }
        markup = self._buttons(chat_id, action_id)
        if private:
            excerpt = text if len(text) <= EXCERPT else text[:EXCERPT] + "…"
            message = self._say(chat_id, "moderation.report", text=html.escape(excerpt), **values)
            for admin_id in private:
                await self.outbox.send_message(
                    admin_id, message, source="moderation", reply_markup=markup
                )
            return
        # In the group, the checks' names only: their details would repeat the spam.
        values["checks"] = ", ".join(verdict.check for verdict in fired)
        message = self._say(chat_id, "moderation.report_group", **values)
        await self.outbox.send_message(chat_id, message, source="moderation", reply_markup=markup)

    async def decide(self, decision: str, action_id: int, admin: User) -> tuple[str, Action | None]:
        """An admin pressed "Not spam" (`ok`) or "Ban": the outcome's text key and the action.

        Keys: `moderation.decided_ok`, `moderation.decided_ban`, `moderation.decided_already`,
        `moderation.decide_not_admin`, `moderation.decide_gone`, `moderation.decide_failed`
        (Telegram refused: the bot lacks the right; nothing was marked decided)."""
        action = await self.moderation.store.action(action_id)
        if action is None or action.user_id is None:
            return "moderation.decide_gone", None
        chat_id, user_id = action.chat_id, action.user_id
        if not await self.moderation.admins.is_admin(chat_id, admin.id):
            return "moderation.decide_not_admin", action
        if action.undone_at is not None or await self._banned_since(action):
            return "moderation.decided_already", action
        by = f"admin:{admin.id}"
        if decision == "ban":
            banned = await self.moderation.ban(chat_id, user_id, by=by, reason="spam (confirmed)")
            return ("moderation.decided_ban" if banned.ok else "moderation.decide_failed"), action
        # What the checks did to the member (not a join check's restriction, lifted long ago).
        standing = await self.moderation.store.standing(
            chat_id, user_id, ("restrict", "delete"), by="checks"
        )
        if any(item.action == "restrict" for item in standing):
            lifted = await self.moderation.unrestrict(chat_id, user_id, by=by, reason="not spam")
            if not lifted.ok:
                return "moderation.decide_failed", action
        await self.moderation.undone(standing, by)
        await self.moderation.approve(chat_id, user_id, f"not_spam:{admin.id}")
        if action.text:
            now = self.moderation.clock.now()
            await self.moderation.store.add_sample(action.text, "not_spam", chat_id, admin.id, now)
            self.checks.not_spam.add(action.text)
        return "moderation.decided_ok", action

    async def _banned_since(self, action: Action) -> bool:
        later = await self.moderation.store.latest(action.chat_id, limit=50)
        return any(
            other.id > action.id
            and other.user_id == action.user_id
            and other.action == "ban"
            and other.by.startswith("admin:")
            and other.ok
            for other in later
        )

    async def decided_in_group(self, chat_id: int, message_id: int) -> None:
        """A report posted in the group was decided: it goes after a moment."""
        due = self.moderation.clock.now() + GROUP_NOTICE_KEPT
        await self.deletions.schedule(chat_id, message_id, due, "moderation")
