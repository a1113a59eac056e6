"""Broadcasts from a private chat (owners), their progress, and each group's push settings.

/broadcast TARGET TEMPLATE [urgent] [drop] [pin]   in private, owners only: a preview of the
        text as the first group will get it, then ✅ Send or ✖️ Cancel; replying to a message
        with /broadcast TARGET […] broadcasts that message's text instead of a template
/broadcast_status [ID]                             sent, pending and failed (with reasons)
/group                                             a group's settings (admins), and changing them:
        /group quiet 22:00-08:00|off|default, /group cap 5|off|default,
        /group tags +vip -trial, /group timezone Asia/Shanghai, /group language zh|en
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from aiogram import Router
from aiogram.filters import Command, CommandObject, Filter
from aiogram.types import CallbackQuery, InlineKeyboardButton, InlineKeyboardMarkup, Message
from markupsafe import Markup

from bot.clock import Clock
from bot.handlers.filters import AdminsOnly, FromOwner, InGroup, OwnersInPrivate
from bot.handlers.sops import Say
from bot.push import broadcasts
from bot.push.broadcasts import BroadcastError, Target
from bot.push.queue import PushQueue
from bot.push.rules import QuietHours
from bot.registry import Registry
from bot.texts import Texts

BUTTON = "bc:"
OPTIONS = ("urgent", "drop", "pin")


class Pressed(Filter):
    async def __call__(self, query: CallbackQuery) -> bool:
        return query.data is not None and query.data.startswith(BUTTON)


class Broadcasting:
    """What the broadcast commands need: the database, texts, the queue and the clock.

    Broadcasts are made in an owner's private chat, so their texts are in the default language.
    """

    def __init__(self, queue: PushQueue, say: Say, clock: Clock) -> None:
        self.queue = queue
        self.say = say
        self.clock = clock

    @property
    def texts(self) -> Texts:
        return self.say.texts

    def t(self, key: str, **values: Any) -> str:
        return self.texts(key, None, **values)

    def when(self, moment: datetime) -> str:
        local = moment.astimezone(self.queue.default_zone)
        return f"{local:%m-%d %H:%M}"

    def error(self, exc: BroadcastError) -> Markup:
        """Why a broadcast cannot be made, in words (a rendered text: not escaped again)."""
        return Markup(exc.text(self.texts))

    def reason(self, note: str | None) -> Markup:
        """Why a push did not go, in words, from the note the queue left on it."""
        key, values = broadcasts.reason(note)
        return Markup(self.t(key, **values))


async def broadcast_command(
    message: Message, command: CommandObject, broadcasting: Broadcasting
) -> None:
    user = message.from_user
    delivery = broadcasting.say.delivery
    if user is None:
        return
    if command.command == "broadcast_status":
        await status(message, command, broadcasting)
        return
    args = (command.args or "").split()
    options = {arg.lower() for arg in args if arg.lower() in OPTIONS}
    words = [arg for arg in args if arg.lower() not in OPTIONS]
    replied = message.reply_to_message
    text = replied.html_text if replied is not None and (replied.text or replied.caption) else None
    if not words or (text is None and len(words) != 2) or (text is not None and len(words) != 1):
        await delivery.send_message(user.id, broadcasting.t("broadcasting.usage"), source="command")
        return
    engine = broadcasting.queue.engine
    try:
        target = Target.parse(words[0])
        broadcast_id = await broadcasts.create(
            engine,
            broadcasting.texts,
            target=target,
            template=words[1] if text is None else None,
            text=text,
            urgent="urgent" in options,
            over_cap="drop" if "drop" in options else "postpone",
            pin="pin" in options,
            source=f"command:{user.id}",
            created_by=user.id,
            now=broadcasting.clock.now(),
            confirm=False,
        )
        groups = await broadcasts.target_groups(engine, target)
        key = broadcasts.template_key(words[1]) if text is None else None
        preview = broadcasts.render(broadcasting.texts, key, text, groups[0])
    except BroadcastError as exc:
        error = broadcasting.t("broadcasting.error", error=broadcasting.error(exc))
        await delivery.send_message(user.id, error, source="command")
        return
    await delivery.send_message(user.id, preview, source="command")
    markup = InlineKeyboardMarkup(
        inline_keyboard=[
            [
                InlineKeyboardButton(
                    text=broadcasting.t("broadcasting.send_button", count=len(groups)),
                    callback_data=f"{BUTTON}ok:{broadcast_id}",
                ),
                InlineKeyboardButton(
                    text=broadcasting.t("broadcasting.cancel_button"),
                    callback_data=f"{BUTTON}no:{broadcast_id}",
                ),
            ]
        ]
    )
    summary = broadcasting.t(
        "broadcasting.preview",
        id=broadcast_id,
        target=str(target),
        count=len(groups),
        titles=[group.title or str(group.id) for group in groups[:10]],
        more=max(len(groups) - 10, 0),
        urgent="urgent" in options,
        drop="drop" in options,
    )
    await delivery.send_message(user.id, summary, source="command", reply_markup=markup)


async def pressed(query: CallbackQuery, broadcasting: Broadcasting) -> None:
    action, _, number = (query.data or "").removeprefix(BUTTON).partition(":")
    message = query.message
    if not number.isdigit() or message is None:
        await query.answer()
        return
    broadcast_id = int(number)
    engine = broadcasting.queue.engine
    if action == "ok":
        try:
            count = await broadcasts.confirm_broadcast(
                engine, broadcasting.texts, broadcast_id, broadcasting.clock.now()
            )
        except BroadcastError as exc:
            await query.answer(exc.text(broadcasting.texts)[:200], show_alert=True)
            return
        broadcasting.queue.wake()
        text = broadcasting.t("broadcasting.queued", id=broadcast_id, count=count)
    else:
        await broadcasts.discard(engine, broadcast_id)
        text = broadcasting.t("broadcasting.discarded", id=broadcast_id)
    await query.answer()
    await broadcasting.say.delivery.edit_text(
        message.chat.id, message.message_id, text, source="command"
    )


async def status(message: Message, command: CommandObject, broadcasting: Broadcasting) -> None:
    arg = (command.args or "").strip().lstrip("#")
    if arg and not arg.isdigit():
        await broadcasting.say.delivery.send_message(
            message.chat.id, broadcasting.t("broadcasting.usage_status"), source="command"
        )
        return
    found = await broadcasts.progress(broadcasting.queue.engine, int(arg) if arg else None)
    items = [
        {
            "id": item.id,
            "what": item.what,
            "target": item.target,
            "groups": item.groups,
            "sent": item.counts["sent"],
            "pending": item.pending,
            "failed": item.counts["failed"],
            "dropped": item.counts["dropped"],
            "draft": item.confirmed_at is None,
            "done": item.done,
            "next": broadcasting.when(item.next_due) if item.next_due else None,
            "reasons": [(broadcasting.reason(why), n) for why, n in item.reasons.most_common(5)],
            "failures": [
                {"group": title or str(group_id), "why": broadcasting.reason(why)}
                for group_id, title, why in item.failed_groups[:10]
            ],
        }
        for item in found
    ]
    text = broadcasting.t("broadcasting.status", items=items)
    await broadcasting.say.delivery.send_message(message.chat.id, text, source="command")


# -- /group --------------------------------------------------------------------------------------


async def group_command(
    message: Message,
    command: CommandObject,
    say: Say,
    registry: Registry,
    broadcasting: Broadcasting,
) -> None:
    chat_id = message.chat.id
    args = (command.args or "").split()
    if args:
        problem = await change(registry, chat_id, args[0].lower(), args[1:])
        if problem is not None:
            await say(message, problem)
            return
    known = registry.groups.get(chat_id)
    rules = broadcasting.queue.rules(chat_id)
    await say(
        message,
        (
            "group.settings",
            {
                "timezone": str(getattr(rules.zone, "key", rules.zone)),
                "lang": registry.language(chat_id, say.texts.default_language),
                "tags": ", ".join(known.tags) if known and known.tags else "",
                "quiet": str(rules.quiet) if rules.quiet else "",
                "quiet_default": not (known and known.quiet_hours),
                "cap": rules.cap,
                "cap_default": not known or known.daily_cap is None,
            },
        ),
    )


async def change(
    registry: Registry, chat_id: int, what: str, values: list[str]
) -> tuple[str, dict[str, Any]] | None:
    """Change one setting; the reply's key and values when the input is wrong."""
    usage: tuple[str, dict[str, Any]] = ("group.usage", {})
    if not values:
        return usage
    value = values[0]
    if what == "quiet":
        if value.lower() == "default":
            await registry.set_group(chat_id, quiet_hours=None)
            return None
        try:
            window = QuietHours.parse(value)
        except ValueError:
            return ("group.bad_quiet", {"value": value})
        await registry.set_group(chat_id, quiet_hours=str(window) if window else "off")
    elif what == "cap":
        if value.lower() == "default":
            await registry.set_group(chat_id, daily_cap=None)
        elif value.lower() == "off":
            await registry.set_group(chat_id, daily_cap=0)
        elif value.isdigit() and 1 <= int(value) <= 1000:
            await registry.set_group(chat_id, daily_cap=int(value))
        else:
            return ("group.bad_cap", {"value": value})
    elif what == "tags":
        known = registry.groups.get(chat_id)
        tags = list(known.tags) if known else []
        for word in values:
            name = word.lstrip("+-")
            if not Target.parse(name).tags:
                return ("group.bad_tag", {"value": word})
            if word.startswith("-"):
                tags = [tag for tag in tags if tag != name]
            elif name not in tags:
                tags.append(name)
        await registry.set_group(chat_id, tags=tags)
    elif what == "timezone":
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            return ("group.bad_timezone", {"value": value})
        await registry.set_group(chat_id, timezone=value)
    elif what == "language":
        if value not in ("zh", "en"):
            return ("group.bad_language", {"value": value})
        await registry.set_group(chat_id, language=value)
    else:
        return usage
    return None


def register(router: Router) -> None:
    router.message.register(
        broadcast_command,
        Command("broadcast", "broadcast_status"),
        OwnersInPrivate(refusal="broadcasting.owners_only", elsewhere="broadcasting.in_private"),
    )
    router.message.register(group_command, Command("group"), InGroup(), AdminsOnly())
    router.callback_query.register(
        pressed, Pressed(), FromOwner(refusal="broadcasting.owners_only")
    )
