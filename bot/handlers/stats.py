"""Analytics in the chat: /stats, /tiers and /forgetme.

/stats [7d|30d|90d]        the group's metrics and health as text, and a chart (admins); the
                           fission coefficient and cycle time, and moderation's actions with
                           the share admins undid (false positives), always cover the last 30 days
/stats @member [30d]       one member's activity (admins; or reply to their message)
/tiers [refresh]           how many members are in each tier; refresh recomputes now (admins)
/forgetme                  a member erases their data with the bot, after a confirmation
"""

from __future__ import annotations

import asyncio
import gc
import re
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

from bot.handlers.filters import AdminsOnly, InGroup
from bot.handlers.sops import Say
from bot.sop.admin import Key
from bot.stats import tiers
from bot.stats.metrics import RETENTION_DAYS
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
    message: Message, command: CommandObject, analytics: Analytics, say: Say
) -> None:
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
    report = await analytics.group_report(chat_id, days)
    metrics = report.metrics
    values: dict[str, Any] = {
        "title": report.title,
        "first": report.first.isoformat(),
        "last": report.last.isoformat(),
        "days": days,
        "m": metrics,
        "pct": pct,
        "retention": [(n, metrics.retention_rate(n)) for n in RETENTION_DAYS],
        "health": report.health[-1],
        "trend": report.health,
        "comparisons": metrics.comparisons[:5],
    }
    fission = {**report.fission.shown(), "days": report.fission.days}
    await say(
        message,
        ("stats.group", values),
        ("stats.fission", fission),
        ("stats.moderation", report.moderation.shown()),
    )
    language = say.language(chat_id)
    png = await asyncio.to_thread(_chart, metrics, report.title, language)
    caption = say.text(
        chat_id, "stats.caption", title=report.title, first=report.first, last=report.last
    )
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
    report = await analytics.member_report(chat_id, user_id, days)
    values = {
        "name": report.name or str(user_id),
        "first": report.first.isoformat(),
        "last": report.last.isoformat(),
        "a": report.activity,
        "since": report.since.isoformat() if report.since is not None else None,
        "checkins": report.checkins,
        "points": report.points,
        "tier": Key(f"boards.tiers.{report.tier}"),
    }
    await say(message, ("stats.member", values))


async def show_tiers(message: Message, args: list[str], analytics: Analytics, say: Say) -> None:
    chat_id = message.chat.id
    if args == ["refresh"]:
        try:
            changes = await analytics.recompute_tiers(chat_id)
        except tiers.TierFileError as exc:
            await say(message, ("stats.tiers_broken", {"error": str(exc)}))
            return
        await say(message, ("stats.refreshed", {"count": len(changes)}))
    elif args:
        await say(message, ("stats.usage", {}))
        return
    counts = await analytics.tier_counts(chat_id)
    shown = [(say.text(chat_id, f"boards.tiers.{tier}"), count) for tier, count in counts.items()]
    await say(message, ("stats.tiers", {"counts": shown}))


# -- /forgetme -----------------------------------------------------------------------------------


async def forget_command(message: Message, say: Say) -> None:
    user = message.from_user
    if user is None or user.is_bot:
        return
    chat_id = message.chat.id
    markup = InlineKeyboardMarkup(
        inline_keyboard=[
            [
                InlineKeyboardButton(
                    text=say.text(chat_id, "forget.yes_button"),
                    callback_data=f"{FORGET}yes:{user.id}",
                ),
                InlineKeyboardButton(
                    text=say.text(chat_id, "forget.no_button"),
                    callback_data=f"{FORGET}no:{user.id}",
                ),
            ]
        ]
    )
    await say.delivery.send_message(
        chat_id,
        say.text(chat_id, "forget.ask"),
        source="command",
        reply_markup=markup,
        reply_to_message_id=message.message_id,
    )


async def forget_pressed(query: CallbackQuery, analytics: Analytics, say: Say) -> None:
    action, _, owner = (query.data or "").removeprefix(FORGET).partition(":")
    message = query.message
    chat_id = message.chat.id if message is not None else query.from_user.id
    if owner != str(query.from_user.id):
        await query.answer(say.text(chat_id, "forget.not_yours"), show_alert=True)
        return
    if action == "yes":
        await analytics.forget(query.from_user.id)
        text = say.text(chat_id, "forget.done")
    else:
        text = say.text(chat_id, "forget.kept")
    await query.answer()
    if message is not None:
        await say.delivery.edit_text(chat_id, message.message_id, text, source="command")


def register(router: Router) -> None:
    router.message.register(stats_command, Command("stats", "tiers"), InGroup(), AdminsOnly())
    router.message.register(forget_command, Command("forgetme"))
    router.callback_query.register(forget_pressed, Pressed())
