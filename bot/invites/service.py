"""Invitations as the commands see them: links, referrals, requests to join and their numbers."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import tzinfo

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.clock import Clock
from bot.db import BOT_USERS, INVITE_LINKS, LinkKind
from bot.invites.links import InviteLinks, Link
from bot.invites.referrals import Referrals
from bot.invites.requests import JoinRequests
from bot.sop.format import ReferralRule


@dataclass(frozen=True)
class Invites:
    """What /invite, /campaign, /invites and requests to join use."""

    engine: AsyncEngine
    clock: Clock
    links: InviteLinks
    referrals: Referrals
    requests: JoinRequests
    rules: Callable[[int], ReferralRule]
    zones: Callable[[int], tzinfo]

    async def reachable(self, user_id: int) -> bool:
        """Whether the bot may write to the user privately (started it, not blocked since)."""
        async with self.engine.connect() as conn:
            row = (
                await conn.execute(
                    select(BOT_USERS.c.blocked_at).where(BOT_USERS.c.user_id == user_id)
                )
            ).first()
        return row is not None and row.blocked_at is None

    async def link_of(self, chat_id: int, user_id: int) -> Link | None:
        """The member's personal link to the group, if they asked for one."""
        async with self.engine.connect() as conn:
            row = (
                await conn.execute(
                    select(INVITE_LINKS).where(
                        INVITE_LINKS.c.chat_id == chat_id,
                        INVITE_LINKS.c.kind == LinkKind.MEMBER.value,
                        INVITE_LINKS.c.owner_id == user_id,
                        INVITE_LINKS.c.revoked_at.is_(None),
                    )
                )
            ).first()
        return Link.of(row) if row is not None else None
