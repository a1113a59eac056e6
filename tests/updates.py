"""Builders of aiogram updates for tests and benchmarks (no network involved)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from aiogram.types import (
    Chat,
    ChatMemberLeft,
    ChatMemberMember,
    ChatMemberUpdated,
    Message,
    Update,
    User,
)

GROUP = Chat(id=-1001000000001, type="supergroup", title="Tea lovers")


def user(user_id: int, name: str | None = None, *, is_bot: bool = False) -> User:
    return User(id=user_id, is_bot=is_bot, first_name=name or f"User{user_id}")


def group_message(
    message_id: int,
    sender: User,
    when: datetime,
    *,
    chat: Chat = GROUP,
    text: str | None = "hello",
    **fields: Any,
) -> Message:
    return Message(
        message_id=message_id, date=when, chat=chat, from_user=sender, text=text, **fields
    )


def join_update(
    update_id: int, member: User, when: datetime, *, chat: Chat = GROUP, link: str | None = None
) -> Update:
    from aiogram.types import ChatInviteLink

    invite = (
        ChatInviteLink(
            invite_link=link,
            creator=user(1, "Owner"),
            creates_join_request=False,
            is_primary=False,
            is_revoked=False,
        )
        if link
        else None
    )
    return Update(
        update_id=update_id,
        chat_member=ChatMemberUpdated(
            chat=chat,
            from_user=member,
            date=when,
            old_chat_member=ChatMemberLeft(user=member),
            new_chat_member=ChatMemberMember(user=member),
            invite_link=invite,
        ),
    )
