"""What users write: their messages (replies, forwards from users and channels, entities),
/start in private, and edits of their own messages, refused or passed as Telegram would."""

from __future__ import annotations

from typing import Any

from aiogram.types import Chat, Message, MessageOriginChannel, MessageOriginUser, User

from ._entities import entities_for
from ._events import post_message, visible_to_bot
from ._moderation import check_may_send, member_now
from ._objects import (
    CAPTION_KINDS,
    CHANNEL_BOT,
    GROUP_ANONYMOUS_BOT,
    chat_obj,
    dump,
    media_fields,
    strip_reply,
)
from ._state import JSON, ChatRec, ControlError, World

#: How long before it is forwarded the emulator dates a forwarded message's original.
FORWARD_AGE = 60


def user_message(world: World, chat_id: int, data: JSON) -> tuple[Message, int | None]:
    """A user (or an anonymous admin / channel) posts a message; a member whose restriction
    forbids this kind of message is refused (ControlError 403) and nothing is posted."""
    chat = world.chat(chat_id)
    if chat.migrated_to is not None:
        raise ControlError(400, f"chat {chat_id} was migrated to {chat.migrated_to}")
    kind = str(data.get("kind", "text"))
    fields = media_fields(world, kind, data)
    sender = _sender(world, chat, data, fields, kind)
    reply_id = data.get("reply_to_message_id")
    if reply_id is not None:
        target = chat.live_message(reply_id) if isinstance(reply_id, int) else None
        if target is None:
            raise ControlError(400, f"message {reply_id} not found in chat {chat.id}")
        fields["reply_to_message"] = strip_reply(target.message)
    origin = _forward_origin(world, data)
    if origin is not None:
        fields["forward_origin"] = origin
    return post_message(world, chat, fields, sender=sender)


def _sender(world: World, chat: ChatRec, data: JSON, fields: dict[str, Any], kind: str) -> User:
    """Who posts: an anonymous admin or a channel (``sender_chat_id``), else ``user_id``, who
    must be in the chat and allowed to send this kind of message."""
    sender_chat_id = data.get("sender_chat_id")
    if sender_chat_id is not None:
        if not isinstance(sender_chat_id, int):
            raise ControlError(400, "sender_chat_id must be an integer")
        if sender_chat_id == chat.id:
            fields["sender_chat"] = chat_obj(chat)
            return GROUP_ANONYMOUS_BOT
        fields["sender_chat"] = Chat(id=sender_chat_id, type="channel", title="Channel")
        return CHANNEL_BOT
    user_id = data.get("user_id", chat.id if chat.type == "private" else None)
    if not isinstance(user_id, int):
        raise ControlError(400, "user_id must be an integer")
    sender = world.user(user_id)
    if chat.type == "private" and user_id != chat.id:
        raise ControlError(400, "in a private chat only its user can post")
    membership = member_now(world, chat, user_id)
    if not membership.present:
        raise ControlError(
            400,
            f"user {user_id} is not a member of chat {chat.id}; "
            "add them with /join or /members first",
        )
    check_may_send(chat, user_id, membership, kind)
    return sender


def _forward_origin(world: World, data: JSON) -> MessageOriginUser | MessageOriginChannel | None:
    """Where a forwarded message comes from: a user (``forward_from_user_id``) or a channel
    (``forward_from_chat_id``, with its ``forward_from_chat_title``, optional
    ``forward_from_chat_username`` and the post's ``forward_from_message_id``)."""
    user_id = data.get("forward_from_user_id")
    channel_id = data.get("forward_from_chat_id")
    if user_id is not None and channel_id is not None:
        raise ControlError(400, "a message is forwarded from a user or from a channel, not both")
    date = world.clock.dt(-FORWARD_AGE)
    if user_id is not None:
        if not isinstance(user_id, int):
            raise ControlError(400, "forward_from_user_id must be an integer")
        return MessageOriginUser(date=date, sender_user=world.user(user_id))
    if channel_id is None:
        return None
    if not isinstance(channel_id, int) or isinstance(channel_id, bool) or channel_id >= 0:
        raise ControlError(400, "forward_from_chat_id must be a channel id (a negative integer)")
    known = world.chats.get(channel_id)
    if known is not None:
        raise ControlError(400, f"chat {channel_id} is a {known.type}, not a channel")
    title = data.get("forward_from_chat_title", "Channel")
    username = data.get("forward_from_chat_username")
    message_id = data.get("forward_from_message_id", 1)
    if not isinstance(title, str) or not title:
        raise ControlError(400, "forward_from_chat_title must be a non-empty string")
    if username is not None and not isinstance(username, str):
        raise ControlError(400, "forward_from_chat_username must be a string")
    if not isinstance(message_id, int) or message_id <= 0:
        raise ControlError(400, "forward_from_message_id must be a positive integer")
    channel = Chat(id=channel_id, type="channel", title=title, username=username)
    return MessageOriginChannel(date=date, chat=channel, message_id=message_id)


def start(world: World, user_id: int, payload: Any) -> tuple[Message, int | None]:
    """The user sends /start [payload] to the bot in private."""
    user = world.user(user_id)
    if user.is_bot:
        raise ControlError(400, "bots can't start other bots")
    chat = world.private_chat(user)
    world.started.add(user.id)
    text = "/start" if not payload else f"/start {payload}"
    return user_message(world, chat.id, {"kind": "text", "text": text, "user_id": user.id})


def edit_message(
    world: World, chat_id: int, message_id: int, data: JSON
) -> tuple[Message, int | None]:
    """The author edits the text or caption of a message (``text`` / ``caption``, optional
    ``entities``): the stored message changes, gets its ``edit_date``, and an
    ``edited_message`` update is queued when the bot sees it. As in Telegram, a restricted
    member may edit what they wrote before; one who left or was banned no longer can."""
    chat = world.chat(chat_id)
    rec = chat.live_message(message_id)
    if rec is None:
        raise ControlError(404, f"message {message_id} not found in chat {chat.id}")
    old = rec.message
    if rec.from_bot or rec.kind == "service":
        raise ControlError(400, f"message {message_id} was not written by a user")
    author = old.from_user
    by_user = chat.type != "private" and author is not None and old.sender_chat is None
    if by_user and author is not None and not member_now(world, chat, author.id).present:
        raise ControlError(400, f"user {author.id} is not a member of chat {chat.id}")
    changes = _edited_content(rec.kind, old, data)
    if all(getattr(old, key) == value for key, value in changes.items()):
        raise ControlError(400, "message is not modified")
    changes["edit_date"] = world.clock.now()
    rec.message = old.model_copy(update=changes)
    rec.edit_count += 1
    world.bump()
    update_id = None
    if visible_to_bot(world, chat, rec.message, service=False):
        update_id = world.queue("edited_message", dump(rec.message))
    return rec.message, update_id


def _edited_content(kind: str, old: Message, data: JSON) -> dict[str, Any]:
    """The new text and its entities, or the new caption and its entities."""
    if old.text is not None:
        if data.get("caption") is not None:
            raise ControlError(400, "a text message has no caption; edit its text")
        text = data.get("text")
        if not isinstance(text, str) or not text.strip():
            raise ControlError(400, "text must be a non-empty string")
        return {"text": text, "entities": entities_for(text, data.get("entities"))}
    if kind not in CAPTION_KINDS:
        raise ControlError(400, f"a {kind} message has neither text nor caption to edit")
    if data.get("text") is not None:
        raise ControlError(400, f"a {kind} message has no text; edit its caption")
    caption = data.get("caption") or None
    if caption is not None and not isinstance(caption, str):
        raise ControlError(400, "caption must be a string")
    if caption is None:
        if data.get("entities") is not None:
            raise ControlError(400, "entities need a caption")
        return {"caption": None, "caption_entities": None}
    return {"caption": caption, "caption_entities": entities_for(caption, data.get("entities"))}
