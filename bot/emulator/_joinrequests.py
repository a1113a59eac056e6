"""Join requests: an administrator (the bot through the Bot API, a human through the control
API) approves or declines a user's pending request to join a chat."""

from __future__ import annotations

from typing import Any

from aiogram.types import Message, User

from ._botapi import bad, method, require_right, resolve_chat, user_param
from ._events import acting_user, admit, group_chat
from ._params import Params
from ._state import JSON, ChatRec, ControlError, JoinRequestRec, World


def approve(
    world: World, chat: ChatRec, user: User, rec: JoinRequestRec, by: User
) -> tuple[list[int], Message]:
    """Admit the requester of ``rec`` (already taken from the world), approved by ``by``.

    As in Telegram: the link's join_count rises; the ``chat_member`` update comes from the
    approver and carries the link, or ``via_join_request`` when there was none; the service
    message comes from the new member."""
    invite = world.invites.get(rec.invite_link) if rec.invite_link is not None else None
    if invite is not None:
        invite.join_count += 1
    return admit(
        world, chat, user, by=by, sender=user, invite=invite, via_join_request=invite is None
    )


def decide(
    world: World, chat_id: int, user_id: int, data: JSON, *, approved: bool
) -> tuple[list[int], Message | None]:
    """A human administrator (``by``, default the creator) approves or declines a pending
    request; the updates queued and the service message (None when declined)."""
    chat = group_chat(world, chat_id)
    user = world.user(user_id)
    by = acting_user(world, chat, data.get("by"))
    if not chat.member(by.id).has_right("can_invite_users"):
        raise ControlError(400, f"user {by.id} may not manage join requests of chat {chat.id}")
    rec = world.take_join_request(chat.id, user.id)
    if rec is None:
        raise ControlError(404, f"user {user.id} has no pending join request in chat {chat.id}")
    if not approved:
        return [], None
    return approve(world, chat, user, rec, by)


def _pending(w: World, p: Params) -> tuple[ChatRec, int, JoinRequestRec | None]:
    """The chat, the user and their pending request, after Telegram's checks of the bot."""
    chat = resolve_chat(w, p)
    if chat.type == "private":
        raise bad("the chat can't have join requests")
    require_right(w, chat, "can_invite_users", "not enough rights to manage chat join requests")
    user_id = user_param(w, p)
    return chat, user_id, w.join_requests.get((chat.id, user_id))


@method("approveChatJoinRequest")
async def approve_chat_join_request(w: World, p: Params) -> Any:
    chat, user_id, rec = _pending(w, p)
    if rec is None:
        if chat.member(user_id).present:
            raise bad("USER_ALREADY_PARTICIPANT")
        raise bad("HIDE_REQUESTER_MISSING")
    w.take_join_request(chat.id, user_id)
    approve(w, chat, w.user(user_id), rec, w.bot_user())
    return True


@method("declineChatJoinRequest")
async def decline_chat_join_request(w: World, p: Params) -> Any:
    chat, user_id, rec = _pending(w, p)
    if rec is None:
        raise bad("HIDE_REQUESTER_MISSING")
    w.take_join_request(chat.id, user_id)
    return True
