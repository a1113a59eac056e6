"""/points: group admins add or take a member's points, with a reason for the ledger.

/points @alice +50 helped a newcomer
/points 123456789 -20 wrong check-in
/points +10 thanks            (in reply to the member's message)
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from aiogram import Router
from aiogram.filters import Command, CommandObject
from aiogram.types import Message

from bot import points
from bot.db import utcnow
from bot.handlers.filters import AdminsOnly, InGroup
from bot.handlers.sops import Say
from bot.points import Ledger
from bot.registry import Registry

MAX_CHANGE = 1_000_000
AMOUNT = re.compile(r"[+-]?\d{1,7}")


@dataclass(frozen=True, slots=True)
class Adjustment:
    who: str | None  # @username or a user id; None: the member replied to
    delta: int
    reason: str  # "": none given


def parse_adjustment(args: str | None) -> Adjustment | None:
    """`[@member|id] ±N [reason]`, or None when it is not that. A bare number first is a
    user id only when an amount follows it."""
    tokens = (args or "").split()
    who = None
    if len(tokens) >= 2 and (
        tokens[0].startswith("@") or (tokens[0].isdigit() and AMOUNT.fullmatch(tokens[1]))
    ):
        who = tokens.pop(0)
    if not tokens or not AMOUNT.fullmatch(tokens[0]):
        return None
    delta = int(tokens[0])
    if delta == 0 or abs(delta) > MAX_CHANGE:
        return None
    return Adjustment(who, delta, " ".join(tokens[1:]))


async def adjust_points(
    message: Message, command: CommandObject, registry: Registry, ledger: Ledger, say: Say
) -> None:
    chat_id = message.chat.id
    wanted = parse_adjustment(command.args)
    replied = message.reply_to_message
    target = replied.from_user if replied is not None else None
    if wanted is None or (wanted.who is None and (target is None or target.is_bot)):
        await say(message, ("points.usage", {}))
        return
    if wanted.who is not None:
        user_id = await registry.find_member(chat_id, wanted.who)
        who = wanted.who
        if user_id is None:
            await say(message, ("sop.unknown_member", {"who": who}))
            return
    else:
        assert target is not None
        user_id, who = target.id, target.full_name
    by = message.from_user.id if message.from_user is not None else chat_id
    reason = wanted.reason or say.text(chat_id, "points.default_reason")
    change = points.Change(chat_id, user_id, wanted.delta, reason, f"admin:{by}", utcnow())
    try:
        balance = await ledger.adjust(change)
    except points.NotEnoughPoints as short:
        details = {"who": who, "balance": short.balance, "wanted": short.wanted}
        await say(message, ("points.not_enough", details))
        return
    details = {"who": who, "delta": f"{wanted.delta:+d}", "reason": reason, "balance": balance}
    await say(message, ("points.adjusted", details))


def register(router: Router) -> None:
    router.message.register(adjust_points, Command("points"), InGroup(), AdminsOnly())
