"""Requests to join: approved or declined by the group's rule, and attributed when approved.

A link made with `creates_join_request` (a campaign with `approve`) lets nobody in by itself:
Telegram asks the group's admins, the bot among them. The group's rule (`referral.join_requests`
in its SOPs) says which the bot approves: through its own links (`links`, the default), every
request (`all`), or none. Someone removed from the group before, or a bot, is declined whatever
the rule. A request the rule does not cover (another admin's link, the group's own approval
setting) is left to the admins. Each decision is written to the activity log.
"""

from __future__ import annotations

from collections.abc import Callable

from aiogram import Bot
from aiogram.exceptions import TelegramAPIError
from aiogram.types import ChatJoinRequest
from loguru import logger
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.activity import ActivityLog, event_row
from bot.db import MEMBERS, EventType, MemberStatus
from bot.invites.links import InviteLinks
from bot.invites.referrals import Referrals
from bot.sop.format import ReferralRule

APPROVE, DECLINE, LEAVE = "approved", "declined", "left_to_admins"


class JoinRequests:
    """Decides the requests to join that reach the bot."""

    def __init__(
        self,
        engine: AsyncEngine,
        bot: Bot,
        links: InviteLinks,
        referrals: Referrals,
        activity: ActivityLog,
        rules: Callable[[int], ReferralRule],
    ) -> None:
        self.engine = engine
        self.bot = bot
        self.links = links
        self.referrals = referrals
        self.activity = activity
        self.rules = rules

    async def decide(self, request: ChatJoinRequest) -> str:
        """Approve, decline or leave the request; return which (APPROVE, DECLINE, LEAVE)."""
        chat_id, user = request.chat.id, request.from_user
        shown = request.invite_link.invite_link if request.invite_link is not None else None
        link = await self.links.find(chat_id, shown) if shown is not None else None
        ours = link is not None and link.credited
        approve = self.rules(chat_id).join_requests.approve
        if user.is_bot or await self._removed_before(chat_id, user.id):
            decision = DECLINE
        elif approve == "all" or (approve == "links" and ours):
            decision = APPROVE
        elif ours:  # approve: none
            decision = DECLINE
        else:
            decision = LEAVE
        try:
            if decision == APPROVE:
                if shown is not None:
                    self.referrals.approved(chat_id, user.id, shown)
                await self.bot.approve_chat_join_request(chat_id, user.id)
            elif decision == DECLINE:
                await self.bot.decline_chat_join_request(chat_id, user.id)
        except TelegramAPIError as exc:  # another admin was quicker, or the bot lost the right
            logger.bind(chat_id=chat_id).warning(
                "join request of {} not {}: {}", user.id, decision, exc
            )
            decision = f"failed:{decision}"
        data = {"decision": decision, "link": link.name if link is not None else shown}
        self.activity.add(
            event_row(
                chat_id=chat_id,
                user_id=user.id,
                at=request.date,
                type=EventType.JOIN_REQUEST,
                data=data,
            )
        )
        return decision

    async def _removed_before(self, chat_id: int, user_id: int) -> bool:
        async with self.engine.connect() as conn:
            status = (
                await conn.execute(
                    select(MEMBERS.c.status).where(
                        MEMBERS.c.chat_id == chat_id, MEMBERS.c.user_id == user_id
                    )
                )
            ).scalar()
        return status == MemberStatus.KICKED.value
