"""Live-stream commands, the Remind me and Watch buttons, and /start in private.

/live 2026-12-01 20:00 Title [URL] [remind=1d,1h,start]
                                        announce a live at that time in the group's zone (admins)
/lives                                  the group's upcoming lives (anyone)
/live_move 3 2026-12-02 20:00           move it (or just HH:MM, the same day); reminders follow
/live_cancel 3                          cancel it: nothing more is sent, the post is unpinned

"⏰ Remind me" (`live:remind:<id>`) subscribes the member to private reminders; "▶️ Watch"
(`live:watch:<id>`) records the click and opens the bot, which sends the link. A member who has
not started the bot gets a deep link instead (`/start remind_<id>`), which subscribes them.
"""

from __future__ import annotations

import re
from datetime import date, datetime, time
from typing import Any

from aiogram import Router
from aiogram.filters import Command, CommandObject, Filter
from aiogram.types import CallbackQuery, Message

from bot.handlers.filters import AdminsOnly, InGroup, InPrivate
from bot.handlers.sops import Say
from bot.outbox import Outbox
from bot.push.lives import DEFAULT_REMINDERS, REMIND, WATCH, LiveError, Lives, reminder_times
from bot.push.rules import parse_before

ADMIN_COMMANDS = ("live", "live_move", "live_cancel")
COMMANDS = (*ADMIN_COMMANDS, "lives")
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_TIME = re.compile(r"^([01]?\d|2[0-3]):[0-5]\d$")
_START = re.compile(r"^(remind|watch)_(\d{1,18})$")


class Pressed(Filter):
    """A press of a live's Remind me or Watch button."""

    async def __call__(self, query: CallbackQuery) -> bool:
        return query.data is not None and query.data.startswith((REMIND, WATCH))


def read_moment(day: str | None, clock: str, zone: Any, same_day: date | None = None) -> datetime:
    """`2026-12-01` and `20:00` in `zone` (or `20:00` alone on `same_day`); ValueError if bad."""
    if not _TIME.match(clock) or (day is not None and not _DATE.match(day)):
        raise ValueError(f"{day or ''} {clock}".strip())
    hour, minute = (int(part) for part in clock.split(":"))
    on = date.fromisoformat(day) if day is not None else same_day
    if on is None:
        raise ValueError(clock)
    return datetime.combine(on, time(hour, minute), tzinfo=zone)


async def live_command(message: Message, command: CommandObject, lives: Lives, say: Say) -> None:
    name = command.command
    chat_id = message.chat.id
    if name == "lives":
        await list_lives(message, lives, say)
        return
    args = (command.args or "").split()
    by = message.from_user.id if message.from_user else None
    try:
        if name == "live":
            await create(message, args, lives, say, by)
        elif name == "live_move":
            await move(message, args, lives, say)
        else:
            if len(args) != 1 or not args[0].isdigit():
                await say(message, ("live.usage_cancel", {}))
                return
            live = await lives.cancel(int(args[0]), chat_id)
            await say(message, ("live.cancelled", {"live": lives.context(live)}))
    except LiveError as exc:
        await say(message, (exc.key, exc.values))


async def create(message: Message, args: list[str], lives: Lives, say: Say, by: int | None) -> None:
    chat_id = message.chat.id
    zone = lives.zone(chat_id)
    options = [arg for arg in args if arg.startswith("remind=")]
    args = [arg for arg in args if arg not in options]
    url = args.pop() if len(args) > 3 and args[-1].startswith(("https://", "http://")) else None
    reminders = [
        before for option in options for before in option.removeprefix("remind=").split(",")
    ]
    try:
        starts_at = read_moment(args[0], args[1], zone) if len(args) >= 3 else None
        for before in reminders:
            parse_before(before)
    except ValueError:
        starts_at = None
    if starts_at is None or len(reminders) > 8:
        await say(message, ("live.usage", {}))
        return
    live = await lives.create(
        chat_id,
        title=" ".join(args[2:]),
        starts_at=starts_at,
        url=url,
        reminders=reminders or DEFAULT_REMINDERS,
        source=f"command:{by}" if by else "command",
        created_by=by,
    )
    await say(message, ("live.created", {"live": lives.context(live), "plan": plan(lives, live)}))


def plan(lives: Lives, live: Any) -> list[dict[str, str]]:
    """When the reminders go, in the group's time, and how long before the start each is."""
    language = lives.language(live.chat_id)
    zone = lives.zone(live.chat_id)
    reminders = []
    for reminder in reminder_times(live.starts_at, zone, live.reminders):
        if reminder.at > lives.clock.now() or not parse_before(reminder.before):
            local = reminder.at.astimezone(zone)
            reminders.append(
                {"at": f"{local:%m-%d %H:%M}", "soon": lives.soon(reminder.before, language)}
            )
    return reminders


async def move(message: Message, args: list[str], lives: Lives, say: Say) -> None:
    chat_id = message.chat.id
    if len(args) not in (2, 3) or not args[0].isdigit():
        await say(message, ("live.usage_move", {}))
        return
    live_id = int(args[0])
    live = await lives.get(live_id)
    if live is None or live.chat_id != chat_id:
        await say(message, ("live.unknown", {"id": live_id}))
        return
    zone = lives.zone(chat_id)
    try:
        if len(args) == 3:
            starts_at = read_moment(args[1], args[2], zone)
        else:
            starts_at = read_moment(None, args[1], zone, live.starts_at.astimezone(zone).date())
    except ValueError:
        await say(message, ("live.usage_move", {}))
        return
    moved = await lives.move(live_id, chat_id, starts_at)
    await say(message, ("live.moved", {"live": lives.context(moved), "plan": plan(lives, moved)}))


async def list_lives(message: Message, lives: Lives, say: Say) -> None:
    found = await lives.upcoming(message.chat.id)
    if not found:
        await say(message, ("live.none", {}))
        return
    items = [
        {
            **lives.context(live),
            "subscribers": subscribers,
            "announced": live.message_id is not None,
        }
        for live, subscribers in found
    ]
    await say(message, ("live.list", {"lives": items}))


async def pressed(query: CallbackQuery, lives: Lives, say: Say) -> None:
    data = query.data or ""
    message = query.message
    action = "remind" if data.startswith(REMIND) else "watch"
    number = data.removeprefix(REMIND if action == "remind" else WATCH)
    if message is None or not number.isdigit():
        await query.answer()
        return
    live_id = int(number)
    language = lives.language(message.chat.id)
    user_id = query.from_user.id
    if action == "watch":
        live = await lives.get(live_id)
        if live is None or not live.url:
            await query.answer(lives.texts("live.no_link", language), show_alert=True)
            return
        lives.clicked(live, user_id)
        await query.answer(url=lives.deep_link("watch", live_id))
        return
    if not await lives.reachable(user_id):
        await query.answer(url=lives.deep_link("remind", live_id))
        return
    outcome, live = await lives.subscribe(live_id, user_id)
    title = live.title if live is not None else ""
    await query.answer(lives.texts(f"live.popup.{outcome}", language, title=title))


async def start(message: Message, command: CommandObject, lives: Lives, delivery: Outbox) -> None:
    """/start in private: the bot may write to the user now; a deep link does what it says."""
    if message.from_user is None:
        return
    user_id = message.from_user.id
    await lives.started(user_id)
    found = _START.match(command.args or "")
    live = await lives.get(int(found[2])) if found else None
    if found is None or live is None:
        text = lives.texts("live.hello", None)
        await delivery.send_message(user_id, text, source="command")
        return
    language = lives.language(live.chat_id)
    if found[1] == "remind":
        outcome, _ = await lives.subscribe(live.id, user_id)
        if outcome in ("subscribed", "already"):
            text = lives.texts("live.subscribed_private", language, live=lives.context(live))
        else:
            text = lives.texts("live.popup.over", language, title=live.title)
        await delivery.send_message(user_id, text, source=f"live:{live.id}")
        return
    # The click was recorded when the Watch button was pressed; this only delivers the link.
    text = lives.texts("live.link", language, live=lives.context(live))
    await delivery.send_message(
        user_id, text, source=f"live:{live.id}", reply_markup=lives.link_button(live, language)
    )


def register(router: Router) -> None:
    router.message.register(
        live_command, Command(*COMMANDS), InGroup(), AdminsOnly(*ADMIN_COMMANDS)
    )
    router.message.register(start, Command("start"), InPrivate())
    router.callback_query.register(pressed, Pressed())
