"""Analytics in the chat: /stats, /tiers and /forgetme.

/stats [7d|30d|90d]        the group's metrics and health as text, and a chart (admins)
/stats @member [30d]       one member's activity (admins; or reply to their message)
/tiers [refresh]           how many members are in each tier; refresh recomputes now (admins)
/forgetme                  a member erases their data with the bot, after a confirmation
"""

from __future__ import annotations

import asyncio
import gc
import re
from datetime import timedelta
from typing import Any

from aiogram import Router
from aiogram.filters import Command, CommandObject, Filter
from aiogram.types import (
    BufferedInputFile,
    CallbackQuery,
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    Message,
)
from sqlalchemy import func, select

from bot.admins import Admins
from bot.db import BALANCES, CHECKINS, MEMBERS
from bot.handlers.sops import Say, admin_in_group
from bot.sop.admin import Key
from bot.stats import health as scoring
from bot.stats import tiers
from bot.stats.forget import forget
from bot.stats.metrics import RETENTION_DAYS, group_metrics, member_activity, window
from bot.stats.service import Analytics

PERIODS = {"7d": 7, "30d": 30, "90d": 90}
FORGET = "forget:"
_USER = re.compile(r"^@?\w+$")


def pct(value: float) -> str:
    return f"{value:.0%}"


class Pressed(Filter):
    async def __call__(self, query: CallbackQuery) -> bool:
        return query.data is not None and query.data.startswith(FORGET)


async def stats_command(
    message: Message, command: CommandObject, analytics: Analytics, admins: Admins, say: Say
) -> None:
    if not await admin_in_group(message, admins, say):
        return
    args = (command.args or "").split()
    if command.command == "tiers":
        await show_tiers(message, args, analytics, say)
        return
    days = next((PERIODS[arg] for arg in args if arg in PERIODS), None)
    others = [arg for arg in args if arg not in PERIODS]
    replied = message.reply_to_message
    if others or (replied is not None and replied.from_user and not replied.from_user.is_bot):
        await member_stats(message, others, days or 30, analytics, say)
        return
    if len(args) > 1 or (args and days is None):
        await say(message, ("stats.usage", {}))
        return
    await group_stats(message, days or 30, analytics, say)


async def group_stats(message: Message, days: int, analytics: Analytics, say: Say) -> None:
    chat_id = message.chat.id
    await analytics.rollup.catch_up()
    zone = analytics.zone(chat_id)
    first, last = window(analytics.today(chat_id), days)
    metrics = await group_metrics(analytics.engine, chat_id, first, last, zone)
    # Health scores whole weeks, up to yesterday: read from what the daily job stored.
    scores = await scoring.weekly(
        analytics.engine, chat_id, last - timedelta(days=1), zone, weeks=4
    )
    title = message.chat.title or str(chat_id)
    retention = [
        (n, pct(rate) if (rate := metrics.retention_rate(n)) is not None else "–")
        for n in RETENTION_DAYS
    ]
    values: dict[str, Any] = {
        "title": title,
        "first": first.isoformat(),
        "last": last.isoformat(),
        "days": days,
        "m": metrics,
        "pct": pct,
        "retention": retention,
        "health": scores[-1],
        "trend": scores,
        "comparisons": metrics.comparisons[:5],
    }
    await say(message, ("stats.group", values))
    language = say.language(chat_id)
    png = await asyncio.to_thread(_chart, metrics, title, language)
    caption = say.texts("stats.caption", language, title=title, first=first, last=last)
    await say.delivery.send_photo(
        chat_id, BufferedInputFile(png, "stats.png"), caption=caption, source="command"
    )


def _chart(metrics: Any, title: str, language: str | None) -> bytes:
    global _charted
    from bot.stats.chart import render  # matplotlib loads on the first chart, not at start

    if not _charted:  # matplotlib's modules live as long as the bot: keep the GC off them
        _charted = True
        gc.collect()
        gc.freeze()
    return render(metrics, title=title, language=language)


_charted = False


async def member_stats(
    message: Message, args: list[str], days: int, analytics: Analytics, say: Say
) -> None:
    chat_id = message.chat.id
    replied = message.reply_to_message
    user_id: int | None = None
    if args:
        if len(args) != 1 or not _USER.match(args[0]):
            await say(message, ("stats.usage", {}))
            return
        user_id = await say.registry.find_member(chat_id, args[0], present=False)
        if user_id is None:
            await say(message, ("sop.unknown_member", {"who": args[0]}))
            return
    elif replied is not None and replied.from_user is not None:
        user_id = replied.from_user.id
    if user_id is None:
        await say(message, ("stats.usage", {}))
        return
    await analytics.rollup.catch_up()
    first, last = window(analytics.today(chat_id), days)
    activity = await member_activity(analytics.engine, chat_id, user_id, first, last)
    async with analytics.engine.connect() as conn:
        member = (
            await conn.execute(
                select(
                    MEMBERS.c.first_name, MEMBERS.c.last_name, MEMBERS.c.tier, MEMBERS.c.joined_at
                ).where(MEMBERS.c.chat_id == chat_id, MEMBERS.c.user_id == user_id)
            )
        ).first()
        checkins = (
            await conn.execute(
                select(func.count()).where(
                    CHECKINS.c.chat_id == chat_id,
                    CHECKINS.c.user_id == user_id,
                    CHECKINS.c.day.between(first, last),
                )
            )
        ).scalar()
        points = (
            await conn.execute(
                select(BALANCES.c.balance).where(
                    BALANCES.c.chat_id == chat_id, BALANCES.c.user_id == user_id
                )
            )
        ).scalar()
    zone = analytics.zone(chat_id)
    name = " ".join(filter(None, (member.first_name, member.last_name))) if member else ""
    since = (
        member.joined_at.astimezone(zone).date().isoformat()
        if member and member.joined_at
        else None
    )
    values = {
        "name": name or str(user_id),
        "first": first.isoformat(),
        "last": last.isoformat(),
        "a": activity,
        "since": since,
        "checkins": checkins or 0,
        "points": points or 0,
        "tier": Key(f"boards.tiers.{member.tier if member else 'new'}"),
    }
    await say(message, ("stats.member", values))


async def show_tiers(message: Message, args: list[str], analytics: Analytics, say: Say) -> None:
    chat_id = message.chat.id
    if args == ["refresh"]:
        try:
            tiers.load_rules(analytics.tiers_path)
        except tiers.TierFileError as exc:
            await say(message, ("stats.tiers_broken", {"error": str(exc)}))
            return
        await analytics.rollup.catch_up()
        changes = await analytics.refresh_tiers(chat_id)
        await say(message, ("stats.refreshed", {"count": len(changes)}))
    elif args:
        await say(message, ("stats.usage", {}))
        return
    counts = await tiers.tier_counts(analytics.engine, chat_id)
    language = say.language(chat_id)
    shown = [(say.texts(f"boards.tiers.{tier}", language), count) for tier, count in counts.items()]
    await say(message, ("stats.tiers", {"counts": shown}))


# -- /forgetme -----------------------------------------------------------------------------------


async def forget_command(message: Message, say: Say) -> None:
    user = message.from_user
    if user is None or user.is_bot:
        return
    language = say.language(message.chat.id)
    markup = InlineKeyboardMarkup(
        inline_keyboard=[
            [
                InlineKeyboardButton(
                    text=say.texts("forget.yes_button", language),
                    callback_data=f"{FORGET}yes:{user.id}",
                ),
                InlineKeyboardButton(
                    text=say.texts("forget.no_button", language),
                    callback_data=f"{FORGET}no:{user.id}",
                ),
            ]
        ]
    )
    await say.delivery.send_message(
        message.chat.id,
        say.texts("forget.ask", language),
        source="command",
        reply_markup=markup,
        reply_to_message_id=message.message_id,
    )


async def forget_pressed(query: CallbackQuery, analytics: Analytics, say: Say) -> None:
    action, _, owner = (query.data or "").removeprefix(FORGET).partition(":")
    message = query.message
    chat_id = message.chat.id if message is not None else query.from_user.id
    language = say.language(chat_id)
    if owner != str(query.from_user.id):
        await query.answer(say.texts("forget.not_yours", language), show_alert=True)
        return
    if action == "yes":
        await analytics.rollup.catch_up()  # count their last events before they are anonymised
        await forget(analytics.engine, query.from_user.id)
        text = say.texts("forget.done", language)
    else:
        text = say.texts("forget.kept", language)
    await query.answer()
    if message is not None:
        await say.delivery.edit_text(chat_id, message.message_id, text, source="command")


def register(router: Router) -> None:
    router.message.register(stats_command, Command("stats", "tiers"))
    router.message.register(forget_command, Command("forgetme"))
    router.callback_query.register(forget_pressed, Pressed())
