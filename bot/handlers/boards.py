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

from bot.checkin.boards import Leaderboards, Period
from bot.handlers.filters import InGroup
from bot.handlers.sops import Say
from bot.sop.admin import Key
from bot.sop.engine import Engine

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


async def show_top(
    message: Message, command: CommandObject, engine: Engine, leaderboards: Leaderboards, say: Say
) -> None:
    period = parse_period(command.args)
    if period is None:
        await say(message, ("boards.usage_top", {}))
        return
    chat_id = message.chat.id
    rules = engine.checkin_rules(chat_id)
    zone = engine.group_facts(chat_id).timezone
    board = await leaderboards.board(chat_id, period, engine.clock.now(), zone, rules.start_hour)
    shown = board.as_variables()
    await say(message, ("boards.top", {**shown, "period": Key(f"boards.periods.{period}")}))


async def show_me(message: Message, engine: Engine, leaderboards: Leaderboards, say: Say) -> None:
    user = message.from_user
    if user is None:
        return
    chat_id = message.chat.id
    rules = engine.checkin_rules(chat_id)
    zone = engine.group_facts(chat_id).timezone
    mine = await leaderboards.standing(
        chat_id, user.id, engine.clock.now(), zone, rules.start_hour, rules.freezes
    )
    details = {
        "name": user.full_name,
        "balance": mine.balance,
        "streak": mine.streak,
        "checkins": mine.checkins,
        "week_checkins": mine.week_checkins,
        "week_rank": mine.week_rank,
        "points_rank": mine.points_rank,
        "tier": Key(f"boards.tiers.{mine.tier}") if mine.tier else None,
        "messages_30d": mine.messages_30d,
        "active_days_30d": mine.active_days_30d,
    }
    await say(message, ("boards.me", details))


def register(router: Router) -> None:
    router.message.register(show_top, Command("top"), InGroup())
    router.message.register(show_me, Command("me"), InGroup())
