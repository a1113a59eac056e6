"""World events (joins, leaves, presses, migrations, the messages they post) and the updates
they produce. What users write is in :mod:`bot.emulator._posts`."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Any

from aiogram.types import CallbackQuery, ChatMemberUpdated, Message, User

from ._moderation import member_now
from ._objects import (
    admin_rights,
    chat_obj,
    dump,
    invite_obj,
    join_request_obj,
    member_obj,
    message_kind,
)
from ._state import (
    JSON,
    CallbackRec,
    ChatRec,
    ControlError,
    InviteRec,
    JoinRequestRec,
    Membership,
    MessageRec,
    World,
)


def acting_user(world: World, chat: ChatRec, by: Any) -> User:
    """The acting user: ``by`` if given, else the chat's creator."""
    if by is None:
        return world.creator_of(chat)
    if not isinstance(by, int):
        raise ControlError(400, "by must be a user id")
    return world.user(by)


def group_chat(world: World, chat_id: int) -> ChatRec:
    """A group or supergroup that is still in use (not migrated); ControlError otherwise."""
    chat = world.chat(chat_id)
    if chat.type == "private":
        raise ControlError(400, f"chat {chat_id} is a private chat")
    if chat.migrated_to is not None:
        raise ControlError(400, f"chat {chat_id} was migrated to {chat.migrated_to}")
    return chat


def _is_command_for_bot(world: World, text: str | None) -> bool:
    if not text or not text.startswith("/"):
        return False
    command = text.split(maxsplit=1)[0]
    if "@" in command:
        return command.split("@", 1)[1].lower() == world.bot_username.lower()
    return True


def visible_to_bot(world: World, chat: ChatRec, message: Message, *, service: bool) -> bool:
    """Telegram's privacy-mode rules for whether a group message reaches the bot."""
    bot = chat.member(world.bot_id)
    if chat.type == "private":
        return True
    if not bot.present:
        return False
    if service or not world.privacy_mode or bot.is_admin:
        return True
    if _is_command_for_bot(world, message.text) or _is_command_for_bot(world, message.caption):
        return True
    reply = message.reply_to_message
    return reply is not None and reply.from_user is not None and reply.from_user.id == world.bot_id


def post_message(
    world: World, chat: ChatRec, fields: dict[str, Any], *, sender: User, service: bool = False
) -> tuple[Message, int | None]:
    """Store a message from a user in ``chat``; queue a ``message`` update if the bot sees it."""
    message = Message(
        message_id=chat.alloc_message_id(),
        date=world.clock.dt(),
        chat=chat_obj(chat),
        from_user=sender,
        **fields,
    )
    kind = "service" if service else message_kind(message)
    world.store_message(chat, MessageRec(message=message, from_bot=False, kind=kind))
    update_id = None
    if visible_to_bot(world, chat, message, service=service):
        update_id = world.queue("message", dump(message))
    return message, update_id


def member_changed(
    world: World,
    chat: ChatRec,
    user: User,
    old: Membership,
    new: Membership,
    by: User,
    invite: InviteRec | None = None,
    *,
    via_join_request: bool = False,
) -> int | None:
    """Apply a membership change and queue its update: ``my_chat_member`` when ``user`` is
    the bot, ``chat_member`` when the bot is an admin there (none otherwise).

    ``invite`` is the link the user joined through (shown masked unless the bot created it);
    ``via_join_request`` marks an approved request sent without a link. Telegram sets the
    update's ``via_join_request`` to false when a link is shown and omits it otherwise."""
    world.set_membership(chat, user.id, new)
    if user.id == world.bot_id:
        kind = "my_chat_member"
    elif chat.member(world.bot_id).is_admin:
        kind = "chat_member"
    else:
        return None
    update = ChatMemberUpdated(
        chat=chat_obj(chat),
        from_user=by,
        date=world.clock.dt(),
        old_chat_member=member_obj(user, old),
        new_chat_member=member_obj(user, new),
        invite_link=(
            invite_obj(invite, world.user(invite.creator_id), viewer_id=world.bot_id)
            if invite
            else None
        ),
        via_join_request=True if via_join_request else (False if invite else None),
    )
    return world.queue(kind, dump(update))


def set_bot_status(world: World, chat_id: int, data: JSON) -> list[int]:
    """Change the bot's membership; emits my_chat_member (+ new_chat_members when added)."""
    chat = group_chat(world, chat_id)
    status = data.get("status")
    if status not in ("member", "administrator", "left", "kicked"):
        raise ControlError(400, "status must be member, administrator, left or kicked")
    by = acting_user(world, chat, data.get("by"))
    old = chat.member(world.bot_id)
    new = Membership(status)
    if status == "administrator":
        new.rights = admin_rights(data.get("rights"))
    elif data.get("rights") is not None:
        raise ControlError(400, "rights only apply to status administrator")
    bot = world.bot_user()
    ids: list[int] = []
    update_id = member_changed(world, chat, bot, old, new, by)
    if update_id is not None:  # never None: the bot hears of its own membership
        ids.append(update_id)
    if not old.present and new.present:
        _, update_id = post_message(
            world, chat, {"new_chat_members": [bot]}, sender=by, service=True
        )
        if update_id is not None:
            ids.append(update_id)
    return ids


def set_member(world: World, chat_id: int, data: JSON) -> int | None:
    """Set a membership: silently (seeding; the default), or with `silent: false` as a change
    made by `by` (default: the creator), with its `chat_member` update when the bot is an admin.
    """
    chat = group_chat(world, chat_id)
    user = world.user(int_field(data, "user_id"))
    status = data.get("status", "member")
    if status not in ("creator", "administrator", "member", "left", "kicked"):
        raise ControlError(400, "status must be creator, administrator, member, left or kicked")
    membership = Membership(status)
    if status == "administrator":
        membership.rights = admin_rights(data.get("rights"))
    if data.get("silent", True):
        world.set_membership(chat, user.id, membership)
        return None
    old = member_now(world, chat, user.id)
    by = acting_user(world, chat, data.get("by"))
    return member_changed(world, chat, user, old, membership, by)


def int_field(data: JSON, key: str) -> int:
    """The integer ``key`` of a control request body; ControlError 400 otherwise."""
    value = data.get(key)
    if not isinstance(value, int) or isinstance(value, bool):
        raise ControlError(400, f"{key} must be an integer")
    return value


def _usable_invite(world: World, chat: ChatRec, link: Any) -> InviteRec:
    """The chat's invite link ``link``, if a user can still join through it."""
    invite = world.invites.get(str(link))
    if invite is None or invite.chat_id != chat.id:
        raise ControlError(404, f"invite link {link} not found for chat {chat.id}")
    if invite.is_revoked:
        raise ControlError(400, "invite link is revoked")
    if invite.expire_date is not None and invite.expire_date <= world.clock.now():
        raise ControlError(400, "invite link has expired")
    if invite.member_limit is not None and invite.join_count >= invite.member_limit:
        raise ControlError(400, "invite link member limit reached")
    return invite


def _may_join(world: World, chat: ChatRec, user: User, *, added: bool) -> None:
    """Refuse a user who may not join now: a member, or a banned user unless an admin adds
    them (a ban whose until_date has passed is over: the user may come back)."""
    old = member_now(world, chat, user.id)
    if old.present:
        raise ControlError(400, f"user {user.id} is already a member of chat {chat.id}")
    if old.status == "kicked" and not added:
        until = f" until {old.until_date}" if old.until_date else " for good"
        raise ControlError(
            403, f"user {user.id} is banned in chat {chat.id}{until}; unban them first"
        )


def admit(
    world: World,
    chat: ChatRec,
    user: User,
    *,
    by: User,
    sender: User,
    invite: InviteRec | None = None,
    via_join_request: bool = False,
) -> tuple[list[int], Message]:
    """``user`` becomes a member: the change made by ``by`` (its ``chat_member`` update when
    the bot is an admin) and the ``new_chat_members`` service message from ``sender``. A
    restricted user who had left comes back still restricted, as in Telegram."""
    old = member_now(world, chat, user.id)
    new = Membership("member")
    if old.status == "restricted":
        new = old.copy()
        new.is_member = True
    ids: list[int] = []
    update_id = member_changed(
        world, chat, user, old, new, by, invite, via_join_request=via_join_request
    )
    if update_id is not None:
        ids.append(update_id)
    message, msg_update = post_message(
        world, chat, {"new_chat_members": [user]}, sender=sender, service=True
    )
    if msg_update is not None:
        ids.append(msg_update)
    return ids, message


@dataclass
class JoinOutcome:
    """What a join attempt did: the user joined (``message`` is the service message) or only
    asked to (``request`` is the pending join request); ``update_ids`` were queued."""

    update_ids: list[int]
    message: Message | None = None
    request: JoinRequestRec | None = None


def join(world: World, chat_id: int, data: JSON) -> JoinOutcome:
    """A user joins (via invite link or added by ``by``), or asks to: through a link that
    creates join requests the user only files a request (see :func:`ask_to_join`)."""
    chat = group_chat(world, chat_id)
    user = world.user(int_field(data, "user_id"))
    added = data.get("by") is not None
    _may_join(world, chat, user, added=added)
    invite: InviteRec | None = None
    if data.get("invite_link") is not None:
        invite = _usable_invite(world, chat, data["invite_link"])
        if invite.creates_join_request:
            if added:
                raise ControlError(400, "nobody adds a user through a link that asks for approval")
            return ask_to_join(world, chat, user, invite, _bio(data))
        invite.join_count += 1
    by = world.user(int_field(data, "by")) if added else user
    ids, message = admit(world, chat, user, by=by, sender=by, invite=invite)
    return JoinOutcome(ids, message=message)


def _bio(data: JSON) -> str | None:
    bio = data.get("bio")
    if bio is not None and not isinstance(bio, str):
        raise ControlError(400, "bio must be a string")
    return bio


def ask_to_join(
    world: World, chat: ChatRec, user: User, invite: InviteRec | None, bio: str | None
) -> JoinOutcome:
    """Store the user's join request and queue ``chat_join_request`` when the bot may handle
    it (an administrator with can_invite_users, as Telegram requires)."""
    if (chat.id, user.id) in world.join_requests:
        raise ControlError(400, f"user {user.id} already asked to join chat {chat.id}")
    rec = JoinRequestRec(
        chat_id=chat.id,
        user_id=user.id,
        date=world.clock.now(),
        invite_link=invite.link if invite is not None else None,
        bio=bio,
    )
    world.add_join_request(rec)
    ids: list[int] = []
    if chat.member(world.bot_id).has_right("can_invite_users"):
        ids.append(world.queue("chat_join_request", dump(join_request_obj(world, rec))))
    return JoinOutcome(ids, request=rec)


def request_join(world: World, chat_id: int, data: JSON) -> JoinOutcome:
    """A user asks to join without a link (a chat that approves new members).

    The emulator does not model that chat setting: any group takes the request."""
    chat = group_chat(world, chat_id)
    user = world.user(int_field(data, "user_id"))
    _may_join(world, chat, user, added=False)
    return ask_to_join(world, chat, user, None, _bio(data))


def leave(world: World, chat_id: int, data: JSON, *, kick: bool) -> tuple[list[int], Message]:
    """A user leaves, or is kicked by ``by``. A restricted member who leaves stays restricted
    (``is_member`` false), as in Telegram: coming back does not lift the restriction."""
    chat = group_chat(world, chat_id)
    user = world.user(int_field(data, "user_id"))
    old = member_now(world, chat, user.id)
    if not old.present:
        raise ControlError(400, f"user {user.id} is not a member of chat {chat.id}")
    if old.status == "creator" and kick:
        raise ControlError(400, "the creator can't be kicked")
    by = acting_user(world, chat, data.get("by")) if kick else user
    new = Membership("kicked") if kick else Membership("left")
    if old.status == "restricted" and not kick:
        new = old.copy()
        new.is_member = False
    ids: list[int] = []
    update_id = member_changed(world, chat, user, old, new, by)
    if update_id is not None:
        ids.append(update_id)
    message, msg_update = post_message(
        world, chat, {"left_chat_member": user}, sender=by, service=True
    )
    if msg_update is not None:
        ids.append(msg_update)
    return ids, message


def press(world: World, chat_id: int, data: JSON) -> tuple[str, int]:
    """A user presses an inline button with ``data`` on a bot message."""
    chat = world.chat(chat_id)
    user = world.user(int_field(data, "user_id"))
    message_id = int_field(data, "message_id")
    callback_data = data.get("data")
    if not isinstance(callback_data, str):
        raise ControlError(400, "data must be a string")
    rec = chat.live_message(message_id)
    if rec is None:
        raise ControlError(404, f"message {message_id} not found in chat {chat.id}")
    if not rec.from_bot:
        raise ControlError(400, f"message {message_id} was not sent by the bot")
    markup = rec.message.reply_markup
    buttons = [b for row in markup.inline_keyboard for b in row] if markup else []
    if not any(b.callback_data == callback_data for b in buttons):
        raise ControlError(400, f"message {message_id} has no button with data {callback_data!r}")
    query_id = str(secrets.randbits(63))
    query = CallbackQuery(
        id=query_id,
        from_user=user,
        message=rec.message,
        chat_instance=chat.chat_instance,
        data=callback_data,
    )
    world.callbacks[query_id] = CallbackRec(query_id, chat.id, message_id, user.id, callback_data)
    return query_id, world.queue("callback_query", dump(query))


def migrate(world: World, chat_id: int, data: JSON) -> tuple[int, list[int]]:
    """Upgrade a basic group to a supergroup with a new id."""
    old_chat = group_chat(world, chat_id)
    if old_chat.type != "group":
        raise ControlError(400, f"chat {chat_id} is not a basic group")
    by = acting_user(world, old_chat, data.get("by"))
    new_chat = world.add_chat({"type": "supergroup", "title": old_chat.title})
    new_chat.username = old_chat.username
    new_chat.members = {uid: m.copy() for uid, m in old_chat.members.items()}
    new_chat.migrated_from = old_chat.id
    ids: list[int] = []
    _, first = post_message(
        world, old_chat, {"migrate_to_chat_id": new_chat.id}, sender=by, service=True
    )
    old_chat.migrated_to = new_chat.id
    _, second = post_message(
        world, new_chat, {"migrate_from_chat_id": old_chat.id}, sender=by, service=True
    )
    ids.extend(i for i in (first, second) if i is not None)
    return new_chat.id, ids
