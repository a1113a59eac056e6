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
from bot.admins import Admins
from bot.db import utcnow, writing
from bot.handlers.sops import Say, admin_in_group
from bot.registry import Registry

MAX_CHANGE = 1_000_000
AMOUNT = re.compile(r"[+-]?\d{1,7}")


@dataclass(frozen=True, slots=True)
class Adjustment:
    who: str | None  # @username or a user id; None: the member replied to
    delta: int
    reason: str


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
    return Adjustment(who, delta, " ".join(tokens[1:]) or "admin adjustment")


async def adjust_points(
    message: Message,
    command: CommandObject,
    admins: Admins,
    registry: Registry,
    say: Say,
) -> None:
    if not await admin_in_group(message, admins, say):
        return
    wanted = parse_adjustment(command.args)
    replied = message.reply_to_message
    target = replied.from_user if replied is not None else None
    if wanted is None or (wanted.who is None and (target is None or target.is_bot)):
        await say(message, ("points.usage", {}))
        return
    if wanted.who is not None:
        user_id = await registry.find_member(message.chat.id, wanted.who)
        who = wanted.who
        if user_id is None:
            await say(message, ("sop.unknown_member", {"who": who}))
            return
    else:
        assert target is not None
        user_id, who = target.id, target.full_name
    by = message.from_user.id if message.from_user is not None else message.chat.id
    change = points.Change(
        message.chat.id, user_id, wanted.delta, wanted.reason, f"admin:{by}", utcnow()
    )
    try:
        async with writing(registry.engine) as conn:
            await points.apply(conn, [change])
            balance = await points.balance(conn, message.chat.id, user_id)
    except points.NotEnoughPoints as short:
        details = {"who": who, "balance": short.balance, "wanted": short.wanted}
        await say(message, ("points.not_enough", details))
        return
    details = {"who": who, "delta": f"{wanted.delta:+d}", "reason": wanted.reason}
    await say(message, ("points.adjusted", {**details, "balance": balance}))


def register(router: Router) -> None:
    router.message.register(adjust_points, Command("points"))
