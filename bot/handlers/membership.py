"""Who is in which group: the bot added or removed, members joining and leaving, migrations."""

from __future__ import annotations

from aiogram import Router
from aiogram.types import Chat, ChatMemberUpdated, Message
from loguru import logger

from bot.activity import ActivityLog, event_row
from bot.db import EventType, GroupStatus, MemberStatus
from bot.handlers.filters import InGroup, in_chat
from bot.registry import Registry
from bot.rights import RightsCheck

ADMIN = ("administrator", "creator")


def register(router: Router) -> None:
    """Add the membership handlers to `router` (the dispatcher itself: see `create_dispatcher`)."""
    router.my_chat_member.register(bot_membership_changed, InGroup())
    router.chat_member.register(member_changed, InGroup())


async def bot_membership_changed(
    event: ChatMemberUpdated, registry: Registry, activity: ActivityLog, rights: RightsCheck
) -> None:
    """The bot was added, promoted, demoted, or removed."""
    old, new, chat = event.old_chat_member, event.new_chat_member, event.chat
    data = {"by": event.from_user.id, "bot_status": new.status}
    was_in, is_in = in_chat(old), in_chat(new)
    kind: EventType | None
    if is_in and not was_in:
        kind = EventType.BOT_ADDED
        await registry.save_group(chat, status=GroupStatus.ACTIVE, bot_status=new.status)
        logger.bind(chat_id=chat.id).info("added to {!r} as {}", chat.title, new.status)
    elif was_in and not is_in:
        kicked = new.status == "kicked"
        kind = EventType.BOT_KICKED if kicked else EventType.BOT_LEFT
        # Forget what was missing, so being added again brings a fresh notice.
        await registry.save_group(
            chat,
            status=GroupStatus.KICKED if kicked else GroupStatus.LEFT,
            bot_status=new.status,
            missing_rights=[],
        )
        logger.bind(chat_id=chat.id).warning("removed from {!r} ({})", chat.title, new.status)
    else:
        promoted = new.status in ADMIN and old.status not in ADMIN
        demoted = old.status in ADMIN and new.status not in ADMIN
        await registry.save_group(chat, bot_status=new.status)
        kind = EventType.BOT_PROMOTED if promoted else EventType.BOT_DEMOTED if demoted else None
    if kind is not None:
        activity.add(event_row(chat_id=chat.id, at=event.date, type=kind, data=data))
    if is_in:
        await rights.review(chat, new, added_by=event.from_user.id)


async def member_changed(event: ChatMemberUpdated, registry: Registry) -> None:
    """A member joined, left, was removed, or changed standing (needs the bot to be an admin)."""
    old, new, chat = event.old_chat_member, event.new_chat_member, event.chat
    user, actor = new.user, event.from_user
    was_in, is_in = in_chat(old), in_chat(new)
    if is_in and not was_in:
        invite = event.invite_link
        await registry.member_joined(
            chat.id,
            user,
            event.date,
            status=MemberStatus(new.status),
            invite_link=invite.invite_link if invite is not None else None,
            invite_name=invite.name if invite is not None else None,
            added_by=actor.id,
            via_request=bool(event.via_join_request),
            source="chat_member",
        )
    elif was_in and not is_in:
        await registry.member_left(
            chat.id,
            user,
            event.date,
            kicked=new.status == "kicked",
            by=actor.id,
            source="chat_member",
        )
    elif is_in:
        await registry.member_status(chat.id, user, MemberStatus(new.status))


async def membership_service_message(message: Message, registry: Registry, bot_id: int) -> None:
    """Service messages: migrations and titles always; joins and leaves when not an admin.

    An admin bot gets `chat_member` updates with invite links, so there the service messages
    would only repeat them; elsewhere they are the only news of joins and leaves. Called by the
    activity middleware, which sees every group message first, rather than through a router:
    a router costs every ordinary message a pass through its filters.
    """
    chat = message.chat
    if message.migrate_to_chat_id is not None:
        new_chat = Chat(id=message.migrate_to_chat_id, type="supergroup", title=chat.title)
        await registry.migrate(chat.id, new_chat, message.date)
        return
    if message.migrate_from_chat_id is not None:
        await registry.migrate(message.migrate_from_chat_id, chat, message.date)
        return
    if message.new_chat_title is not None:
        await registry.save_group(chat)
        return
    if registry.is_admin(chat.id):
        return
    actor = message.from_user
    for user in message.new_chat_members or []:
        if user.id != bot_id:
            await registry.member_joined(
                chat.id,
                user,
                message.date,
                added_by=actor.id if actor else None,
                source="service_message",
            )
    left = message.left_chat_member
    if left is not None and left.id != bot_id:
        kicked = actor is not None and actor.id != left.id
        await registry.member_left(
            chat.id,
            left,
            message.date,
            kicked=kicked,
            by=actor.id if actor else None,
            source="service_message",
        )
