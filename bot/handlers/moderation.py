"""Moderation in the chat: the group's mode, admins' actions on a member, the log, and the
admins' decisions on what the checks deleted.

/moderation [on|off|dry]        the mode (no argument: the mode and the month's figures)
/warn [why]                     in reply to a member's message; warnings add up to a mute
/mute 1h [why]                  in reply: the member may not write for that long
/ban [why]                      in reply: removed for good, the message deleted
/unban @name | id               or in reply: may come back
/modlog [n]                     the latest actions
"""

from __future__ import annotations

import html
from datetime import timedelta
from typing import Any

from aiogram import F, Router
from aiogram.filters import Command, CommandObject
from aiogram.types import CallbackQuery, Message, User

from bot.admins import Admins
from bot.db import people
from bot.handlers.filters import AdminsOnly, InGroup
from bot.handlers.sops import Say
from bot.moderation.protocol import MODES, RIGHTS, Done
from bot.moderation.review import PREFIX, Review, parse_review
from bot.moderation.service import Moderation
from bot.moderation.store import Action
from bot.sop.format import format_duration, parse_duration

LOG_LINES = 10
MOST_LOG_LINES = 50
MOST_MUTE = timedelta(days=366)
FIGURES_OVER = timedelta(days=30)

Line = tuple[str, dict[str, Any]]


def register(router: Router) -> None:
    router.message.register(mode, Command("moderation"), InGroup(), AdminsOnly())
    router.message.register(warn, Command("warn"), InGroup(), AdminsOnly())
    router.message.register(mute, Command("mute"), InGroup(), AdminsOnly())
    router.message.register(ban, Command("ban"), InGroup(), AdminsOnly())
    router.message.register(unban, Command("unban"), InGroup(), AdminsOnly())
    router.message.register(modlog, Command("modlog"), InGroup(), AdminsOnly())
    router.callback_query.register(decided, F.data.startswith(PREFIX))  # Not spam, Ban


def _actor(message: Message) -> str:
    user = message.from_user
    return f"admin:{user.id if user is not None else message.chat.id}"


async def mode(message: Message, command: CommandObject, moderation: Moderation, say: Say) -> None:
    chat_id = message.chat.id
    wanted = (command.args or "").strip().lower()
    if not wanted:
        since = moderation.clock.now() - FIGURES_OVER
        figures = (await moderation.store.honesty([chat_id], since))[chat_id]
        rate = figures.false_positive_rate
        await say(
            message,
            (f"moderation.mode_is_{moderation.mode(chat_id)}", {}),
            (
                "moderation.figures",
                {
                    "actions": figures.actions,
                    "undone": figures.undone,
                    "rate": "–" if rate is None else f"{rate:.0%}",
                    "dry": figures.dry,
                },
            ),
            ("moderation.mode_usage", {}),
        )
        return
    if wanted not in MODES:
        await say(message, ("moderation.mode_usage", {}))
        return
    user = message.from_user
    await moderation.set_mode(chat_id, wanted, user.id if user is not None else None)
    await say(message, (f"moderation.mode_set_{wanted}", {}))


async def _target(message: Message, admins: Admins, say: Say) -> User | None:
    """The member an admin's command in reply is about; None (and told why) otherwise."""
    replied = message.reply_to_message
    user = replied.from_user if replied is not None else None
    if replied is None or user is None or replied.sender_chat is not None:
        await say(message, ("moderation.reply_needed", {}))
        return None
    if user.is_bot:
        await say(message, ("moderation.target_bot", {}))
        return None
    if await admins.is_admin(message.chat.id, user.id):
        await say(message, ("moderation.target_admin", {"name": html.escape(user.full_name)}))
        return None
    return user


def _failed(done: Done) -> Line | None:
    if done.ok:
        return None
    if done.error == RIGHTS:
        return ("moderation.cannot_restrict", {})
    return ("moderation.failed", {"error": html.escape(done.error or "")})


async def warn(
    message: Message, command: CommandObject, moderation: Moderation, admins: Admins, say: Say
) -> None:
    user = await _target(message, admins, say)
    if user is None:
        return
    why = (command.args or "").strip()
    warned = await moderation.warn(message.chat.id, user.id, by=_actor(message), reason=why)
    failed = _failed(warned.done)
    if failed is not None:
        await say(message, failed)
        return
    limit = moderation.rules(message.chat.id).warnings
    name = html.escape(user.full_name)
    lines: list[Line] = [
        ("moderation.warned", {"name": name, "count": warned.count, "limit": limit.limit}),
    ]
    if why:
        lines.append(("moderation.why", {"why": html.escape(why)}))
    if warned.muted is not None:
        muted = _failed(warned.muted) or (
            "moderation.warned_muted",
            {"name": name, "duration": format_duration(limit.mute)},
        )
        lines.append(muted)
    await say(message, *lines)


async def mute(
    message: Message, command: CommandObject, moderation: Moderation, admins: Admins, say: Say
) -> None:
    words = (command.args or "").split(maxsplit=1)
    try:
        duration = parse_duration(words[0]) if words else None
    except ValueError:
        duration = None
    if duration is None or duration > MOST_MUTE or duration < timedelta(minutes=1):
        await say(message, ("moderation.mute_usage", {}))
        return
    user = await _target(message, admins, say)
    if user is None:
        return
    why = words[1].strip() if len(words) > 1 else ""
    done = await moderation.mute(
        message.chat.id, user.id, duration=duration, by=_actor(message), reason=why
    )
    name = html.escape(user.full_name)
    reply = _failed(done) or (
        "moderation.muted",
        {"name": name, "duration": format_duration(duration)},
    )
    await say(message, reply)


async def ban(
    message: Message, command: CommandObject, moderation: Moderation, admins: Admins, say: Say
) -> None:
    user = await _target(message, admins, say)
    if user is None:
        return
    chat_id, by, why = message.chat.id, _actor(message), (command.args or "").strip()
    done = await moderation.ban(chat_id, user.id, by=by, reason=why)
    failed = _failed(done)
    if failed is not None:
        await say(message, failed)
        return
    replied = message.reply_to_message
    if replied is not None:
        await moderation.delete(chat_id, replied.message_id, user.id, by=by, reason=why)
    await say(message, ("moderation.banned", {"name": html.escape(user.full_name)}))


async def unban(message: Message, command: CommandObject, moderation: Moderation, say: Say) -> None:
    chat_id = message.chat.id
    target = (command.args or "").strip()
    user_id: int | None = None
    name = target
    replied = message.reply_to_message
    if not target and replied is not None and replied.from_user is not None:
        user_id, name = replied.from_user.id, replied.from_user.full_name
    elif target.lstrip("-").isdigit():
        user_id = int(target)
    elif target.startswith("@") and len(target) > 1:
        user_id = await _member_named(moderation, chat_id, target[1:])
    if user_id is None:
        key = "moderation.unban_usage" if not target else "moderation.unknown_member"
        await say(message, (key, {"name": html.escape(target)}))
        return
    done = await moderation.unban(chat_id, user_id, by=_actor(message))
    reply = _failed(done) or ("moderation.unbanned", {"name": html.escape(name)})
    await say(message, reply)


async def _member_named(moderation: Moderation, chat_id: int, username: str) -> int | None:
    async with moderation.store.engine.connect() as conn:
        return (await people.named(conn, chat_id, [username])).get(username.lower())


async def modlog(
    message: Message, command: CommandObject, moderation: Moderation, say: Say
) -> None:
    chat_id = message.chat.id
    wanted = (command.args or "").strip()
    limit = min(int(wanted), MOST_LOG_LINES) if wanted.isdigit() and int(wanted) > 0 else LOG_LINES
    actions = await moderation.store.latest(chat_id, limit)
    if not actions:
        await say(message, ("moderation.log_empty", {}))
        return
    zone = moderation.zones(chat_id)
    lines: list[Line] = [("moderation.log_title", {"count": len(actions)})]
    names = await _names(moderation, chat_id, {a.user_id for a in actions if a.user_id})
    lines += [log_line(action, names, zone) for action in actions]
    await say(message, *lines)


def log_line(action: Action, names: dict[int, str], zone: Any) -> Line:
    """One action of /modlog: when, what, to whom, by whom, why, and how it ended."""
    at = action.at.astimezone(zone)
    state = "dry" if action.dry else ("failed" if not action.ok else "done")
    if action.undone_at is not None:
        state = "undone"
    by = action.by
    values = {
        "at": at.strftime("%m-%d %H:%M"),
        "action": action.action,
        "name": html.escape(names.get(action.user_id or 0, str(action.user_id or ""))),
        "by": html.escape(by),
        "why": html.escape(action.reason or action.check or ""),
        "state": state,
    }
    return ("moderation.log_line", values)


async def _names(moderation: Moderation, chat_id: int, user_ids: set[int]) -> dict[int, str]:
    async with moderation.store.engine.connect() as conn:
        return await people.names(conn, chat_id, user_ids)


async def decided(query: CallbackQuery, review: Review, say: Say) -> None:
    """An admin pressed "Not spam" or "Ban" on a report (privately or in the group)."""
    parsed = parse_review(query.data or "")
    message = query.message
    chat_id = message.chat.id if message is not None else query.from_user.id
    if parsed is None:
        await query.answer()
        return
    decision, action_id = parsed
    key, action = await review.decide(decision, action_id, query.from_user)
    group = action.chat_id if action is not None else chat_id
    outcome = say.text(group, key, admin=html.escape(query.from_user.full_name))
    decisive = key in ("moderation.decided_ok", "moderation.decided_ban")
    await query.answer(outcome, show_alert=not decisive)
    if not decisive or not isinstance(message, Message):
        return
    text = f"{message.html_text if message.text else ''}\n\n{outcome}".strip()
    await review.outbox.edit_text(chat_id, message.message_id, text, source="moderation")
    if message.chat.type != "private":
        await review.decided_in_group(chat_id, message.message_id)
