"""Invitations as the commands see them: links, referrals, requests to join and their numbers."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import tzinfo

from sqlalchemy.ext.asyncio import AsyncEngine

from bot.clock import Clock
from bot.db import reachable
from bot.invites.links import InviteLinks
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
            return user_id in await reachable(conn, [user_id])
