"""Lottery commands and the Enter button.

/lottery 3 2h Three course vouchers [rules]   open one (admins); no arguments: the usage
/lotteries                                    the group's open lotteries
/lottery_draw 12, /lottery_cancel 12          draw early, cancel (admins)
/lottery_reroll 12 @winner [reason]           replace a winner (admins)
/lottery_verify 12                            recompute a draw (anyone)

The Enter button (`lottery:enter:<id>`) answers privately, in a popup: entered, or why not.
"""

from __future__ import annotations

from typing import Any

from aiogram import Router
from aiogram.filters import Command, CommandObject, Filter
from aiogram.types import CallbackQuery, Message
from markupsafe import Markup

from bot.handlers.filters import AdminsOnly, InGroup
from bot.handlers.sops import Say
from bot.lottery.command import BadCommand, read_id, read_lottery
from bot.lottery.rules import Refusal
from bot.lottery.service import Lotteries
from bot.lottery.store import Entered, Lottery, Rerolled
from bot.lottery.wording import BUTTON
from bot.registry import Registry
from bot.sop.templates import mention

ADMIN_COMMANDS = ("lottery", "lottery_draw", "lottery_cancel", "lottery_reroll")
COMMANDS = (*ADMIN_COMMANDS, "lotteries", "lottery_verify")


class Pressed(Filter):
    """A press of a lottery's Enter button."""

    async def __call__(self, query: CallbackQuery) -> bool:
        return query.data is not None and query.data.startswith(BUTTON)


async def entered(query: CallbackQuery, lotteries: Lotteries) -> None:
    message = query.message
    number = read_id((query.data or "").removeprefix(BUTTON))
    if message is None or number is None:
        await query.answer()
        return
    chat_id = message.chat.id
    try:
        outcome = await lotteries.enter(chat_id, number, query.from_user.id)
    except Exception:  # logged where it happened; the member may simply press again
        await query.answer(lotteries.say(chat_id, "lottery.refused.failed"), show_alert=True)
        return
    if isinstance(outcome, Entered):
        text = lotteries.say(
            chat_id, "lottery.entered_toast", id=number, count=outcome.count, cost=outcome.cost
        )
        await query.answer(text)  # made plain text by the bot's session
    else:
        await query.answer(lotteries.refusal_text(chat_id, outcome), show_alert=True)


async def lottery_command(
    message: Message, command: CommandObject, lotteries: Lotteries, registry: Registry, say: Say
) -> None:
    """Every lottery command: one handler, so other commands pay for one filter, not six."""
    name = command.command
    args = (command.args or "").split()
    if name == "lottery":
        await _open(message, command.args or "", lotteries, say)
    elif name == "lotteries":
        await say(message, *_listed(lotteries, await lotteries.store.open_ones(message.chat.id)))
    elif not args or read_id(args[0]) is None:
        key = "lottery.reroll_usage" if name == "lottery_reroll" else "lottery.id_usage"
        await say(message, (key, {"command": name}))
    else:
        lottery_id = read_id(args[0]) or 0
        found = await lotteries.store.get(lottery_id) if lottery_id < 2**62 else None
        if found is None or found.chat_id != message.chat.id:
            await say(message, ("lottery.unknown", {"id": lottery_id}))
        elif name == "lottery_verify":
            await say(message, await _verified(lotteries, found))
        elif name == "lottery_reroll":
            await _reroll(message, args[1:], found, lotteries, registry, say)
        else:
            await _close(message, name, found, lotteries, say)


async def _open(message: Message, args: str, lotteries: Lotteries, say: Say) -> None:
    try:
        order = read_lottery(args)
    except BadCommand as bad:
        replies: list[tuple[str, dict[str, Any]]] = [(f"lottery.{bad.key}", bad.values)]
        if bad.key != "usage":
            replies.append(("lottery.usage", {}))
        await say(message, *replies)
        return
    by = message.sender_chat or message.from_user
    await lotteries.create(
        message.chat.id,
        prize=order.prize,
        winners=order.winners,
        duration=order.duration,
        rules=order.rules,
        by=by.id if by is not None else None,
        reply_to=message.message_id,
    )


def _listed(lotteries: Lotteries, open_ones: list[Lottery]) -> list[tuple[str, dict[str, Any]]]:
    if not open_ones:
        return [("lottery.none_open", {})]
    lines: list[tuple[str, dict[str, Any]]] = [("lottery.list_header", {})]
    for lottery in open_ones:
        values = {
            "id": lottery.id,
            "prize": lottery.prize,
            "winners": lottery.winners,
            "count": lottery.entry_count,
            "draws_at": lotteries.when(lottery.chat_id, lottery.draws_at),
        }
        lines.append(("lottery.list_line", values))
    return lines


async def _close(
    message: Message, name: str, lottery: Lottery, lotteries: Lotteries, say: Say
) -> None:
    by = message.sender_chat or message.from_user
    by_id = by.id if by is not None else None
    values = {"id": lottery.id, "prize": lottery.prize}
    if name == "lottery_draw":
        drawn = await lotteries.draw(lottery.id, by_id)
        if isinstance(drawn, Refusal):  # the announcement itself answers a draw
            await say(message, (f"lottery.{drawn.reason}", values))
        return
    cancelled = await lotteries.cancel(lottery.id, by_id)
    key = cancelled.reason if isinstance(cancelled, Refusal) else "cancelled"
    await say(message, (f"lottery.{key}", values))


async def _reroll(
    message: Message,
    args: list[str],
    lottery: Lottery,
    lotteries: Lotteries,
    registry: Registry,
    say: Say,
) -> None:
    replied = message.reply_to_message
    if args:
        who, reason = args[0], " ".join(args[1:])
        user_id = await registry.find_member(message.chat.id, who, present=False)
    elif replied is not None and replied.from_user is not None and not replied.from_user.is_bot:
        who, reason = replied.from_user.full_name, ""
        user_id = replied.from_user.id
    else:
        await say(message, ("lottery.reroll_usage", {}))
        return
    if user_id is None:
        await say(message, ("lottery.not_winner", {"who": who, "id": lottery.id}))
        return
    by = message.sender_chat or message.from_user
    rerolled = await lotteries.reroll(lottery.id, user_id, reason, by.id if by else None)
    if isinstance(rerolled, Refusal):
        await say(message, (f"lottery.{rerolled.reason}", {"who": who, "id": lottery.id}))
        return
    names = await lotteries.names(message.chat.id, [rerolled.replaced, rerolled.winner])
    await say(message, ("lottery.rerolled", _rerolled_values(rerolled, names, reason)))


def _rerolled_values(rerolled: Rerolled, names: dict[int, str], reason: str) -> dict[str, Any]:
    def shown(user_id: int) -> Markup:
        return mention(user_id, names.get(user_id, str(user_id)))

    return {
        "id": rerolled.lottery.id,
        "old": names.get(rerolled.replaced, str(rerolled.replaced)),
        "new": shown(rerolled.winner),
        "reason": reason,
        "pick": rerolled.pick + 1,
        "skipped": len(rerolled.skipped),
    }


async def _verified(lotteries: Lotteries, lottery: Lottery) -> tuple[str, dict[str, Any]]:
    checked = await lotteries.verify(lottery.id)
    if isinstance(checked, Refusal):
        if checked.reason == "not_drawn":
            return ("lottery.verify_open", {"id": lottery.id, "commitment": lottery.commitment})
        return ("lottery.already_cancelled", {"id": lottery.id})
    if not checked.ok:
        failed = [
            lotteries.say(lottery.chat_id, f"lottery.check.{name}")
            for name, held in checked.checks
            if not held
        ]
        return ("lottery.verify_failed", {"id": lottery.id, "failed": "; ".join(failed)})
    names = await lotteries.names(lottery.chat_id, checked.winners)
    winners = ", ".join(names.get(user_id, str(user_id)) for user_id in checked.winners)
    values = {"id": lottery.id, "entrants": len(checked.entrants), "winners": winners or "—"}
    return ("lottery.verify_ok", values)


def register(router: Router) -> None:
    """Add the handlers to `router`, before the SOP engine's handler of every other button."""
    router.message.register(
        lottery_command,
        Command(*COMMANDS),
        InGroup(otherwise="lottery.in_groups_only"),
        AdminsOnly(*ADMIN_COMMANDS),
    )
    router.callback_query.register(entered, Pressed(), InGroup())
