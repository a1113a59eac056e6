"""/forgetme: erase a person's data everywhere, keeping the groups' totals right.

Deleted: their tags, SOP runs and their journal, reminder subscriptions, private reminders and
private-chat record. Kept under a random stand-in id, with names and message texts removed:
events, daily rollups, memberships, points, check-ins, orders, SOP answers, tier changes and
referrals (their personal invite link loses its name), and the moderation log (the text of a
deleted message removed) with the checks' verdicts and their approval,
so member counts, active members and totals do not change. Lottery entries and picks keep the
real id: a drawn lottery must stay verifiable by anyone (README, "Lotteries").
"""

from __future__ import annotations

import secrets

from sqlalchemy import Table, delete, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.db import (
    BALANCES,
    BOT_USERS,
    CHECKINS,
    EVENTS,
    INVITE_LINKS,
    LIVE_SUBSCRIPTIONS,
    MEMBER_DAYS,
    MEMBER_TAGS,
    MEMBERS,
    MODERATION_ACTIONS,
    MODERATION_MEMBERS,
    MODERATION_SAMPLES,
    MODERATION_VERDICTS,
    ORDERS,
    POINTS,
    PUSHES,
    REFERRALS,
    SOP_RUNS,
    SOP_SENDS,
    SOP_STEPS,
    TIER_CHANGES,
    writing,
)

STAND_IN_BASE = 9_000_000_000_000_000  # above any Telegram user id, within a BIGINT

KEPT: tuple[Table, ...] = (
    MEMBER_DAYS,
    SOP_SENDS,
    BALANCES,
    POINTS,
    CHECKINS,
    ORDERS,
    TIER_CHANGES,
    MODERATION_MEMBERS,
    MODERATION_VERDICTS,
)
DELETED: tuple[Table, ...] = (MEMBER_TAGS, SOP_RUNS, LIVE_SUBSCRIPTIONS, BOT_USERS)


async def forget(engine: AsyncEngine, user_id: int) -> int:
    """Erase `user_id`'s personal data in one transaction; return the stand-in id."""
    stand_in = STAND_IN_BASE + secrets.randbelow(10**17)
    async with writing(engine) as conn:
        await conn.execute(
            update(EVENTS)
            .where(EVENTS.c.user_id == user_id)
            .values(user_id=stand_in, text=None, data=None)
        )
        await conn.execute(
            update(MEMBERS)
            .where(MEMBERS.c.user_id == user_id)
            .values(
                user_id=stand_in, first_name="", last_name=None, username=None, invite_link=None
            )
        )
        for table in KEPT:
            await conn.execute(
                update(table).where(table.c.user_id == user_id).values(user_id=stand_in)
            )
        runs = select(SOP_RUNS.c.id).where(SOP_RUNS.c.user_id == user_id)
        await conn.execute(delete(SOP_STEPS).where(SOP_STEPS.c.run_id.in_(runs)))
        for table in DELETED:
            await conn.execute(delete(table).where(table.c.user_id == user_id))
        await conn.execute(delete(PUSHES).where(PUSHES.c.chat_id == user_id))  # private ones
        # Referrals keep counting (for the inviter, the campaign, K) under the stand-in id.
        for column in (REFERRALS.c.invitee_id, REFERRALS.c.inviter_id):
            await conn.execute(
                update(REFERRALS).where(column == user_id).values({column.name: stand_in})
            )
        await conn.execute(
            update(INVITE_LINKS)
            .where(INVITE_LINKS.c.owner_id == user_id)
            .values(owner_id=stand_in, name="")
        )
        # The moderation log keeps counting (the false-positive figures) without their words.
        await conn.execute(
            update(MODERATION_ACTIONS)
            .where(MODERATION_ACTIONS.c.user_id == user_id)
            .values(user_id=stand_in, text=None)
        )
        await conn.execute(
            update(MODERATION_SAMPLES)
            .where(MODERATION_SAMPLES.c.added_by == user_id)
            .values(added_by=stand_in)
        )
    return stand_in
