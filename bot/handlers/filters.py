"""Cheap async filters for hot paths (aiogram's magic filters run in a thread per call)."""

from __future__ import annotations

from aiogram.filters import Filter
from aiogram.types import ChatMemberUpdated, Message, ResultChatMemberUnion

GROUP_TYPES = frozenset({"group", "supergroup"})


def in_chat(member: ResultChatMemberUnion) -> bool:
    """Whether a chat member entry means 'is in the chat' (restricted members may be)."""
    status = member.status
    if status in ("creator", "administrator", "member"):
        return True
    return status == "restricted" and bool(getattr(member, "is_member", False))


class InGroup(Filter):
    """The update happened in a group or supergroup."""

    async def __call__(self, event: Message | ChatMemberUpdated) -> bool:
        return event.chat.type in GROUP_TYPES
