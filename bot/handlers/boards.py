"""/top and /me: the group's leaderboards, and a member's own points, streak and place.

/top            this week, by check-ins and by points earned
/top month      this month (also: /top 月)
/top all        since the beginning (also: /top 总)
/me             the sender's points, streak, this week's places and tier
"""

from __future__ import annotations

from aiogram import Router
from aiogram.filters import Command, CommandObject
from aiogram.types import Message

from bot.checkin.boards import Period
from bot.handlers.filters import GROUP_TYPES
from bot.handlers.sops import Say
from bot.sop.admin import Key
from bot.sop.engine import Engine
from bot.stats.metrics import member_activity, window

PERIOD_WORDS: dict[str, Period] = {
    "": "week",
    "week": "week",
    "周": "week",
    "本周": "week",
    "month": "month",
    "月": "month",
    "本月": "month",
    "all": "all",
    "总": "all",
    "总榜": "all",
}


def parse_period(args: str | None) -> Period | None:
    """The board a /top argument asks for, or None when it is not one."""
    return PERIOD_WORDS.get((args or "").strip().casefold())


async def show_top(message: Message, command: CommandObject, engine: Engine, say: Say) -> None:
    if message.chat.type not in GROUP_TYPES:
        return
    period = parse_period(command.args)
    if period is None:
        await say(message, ("boards.usage_top", {}))
        return
    chat_id = message.chat.id
    rules = engine.checkin_rules(chat_id)
    zone = engine.group_facts(chat_id).timezone
    board = await engine.boards.board(chat_id, period, engine.clock.now(), zone, rules.start_hour)
    shown = board.as_variables()
    await say(message, ("boards.top", {**shown, "period": Key(f"boards.periods.{period}")}))


async def show_me(message: Message, engine: Engine, say: Say) -> None:
    if message.chat.type not in GROUP_TYPES or message.from_user is None:
        return
    chat_id, user = message.chat.id, message.from_user
    rules = engine.checkin_rules(chat_id)
    zone = engine.group_facts(chat_id).timezone
    now = engine.clock.now()
    mine = await engine.boards.standing(
        chat_id, user.id, now, zone, rules.start_hour, rules.freezes
    )
    first, last = window(now.astimezone(zone).date(), 30)
    recent = await member_activity(engine.db, chat_id, user.id, first, last)
    details = {
        "name": user.full_name,
        "balance": mine.balance,
        "streak": mine.streak,
        "checkins": mine.checkins,
        "week_checkins": mine.week_checkins,
        "week_rank": mine.week_rank,
        "points_rank": mine.points_rank,
        "tier": Key(f"boards.tiers.{mine.tier}") if mine.tier else None,
        "messages_30d": recent.messages,
        "active_days_30d": recent.active_days,
    }
    await say(message, ("boards.me", details))


def register(router: Router) -> None:
    router.message.register(show_top, Command("top"))
    router.message.register(show_me, Command("me"))
