"""Bot API handlers for chats, members, invite links and bot commands."""

from __future__ import annotations

from typing import Any

from aiogram.types import BotCommand
from pydantic import ValidationError

from ._botapi import bad, method, require_right, resolve_chat, user_param
from ._events import member_changed
from ._moderation import implied, member_now, until_date
from ._objects import chat_full, dump, invite_obj, member_obj, new_invite_link, permissions_from
from ._params import Params
from ._state import ChatRec, InviteRec, Membership, World


# ----- chats and members -----------------------------------------------------------------
@method("getChat", reads=True)
async def get_chat(w: World, p: Params) -> Any:
    return dump(chat_full(resolve_chat(w, p), w))


@method("getChatMember", reads=True)
async def get_chat_member(w: World, p: Params) -> Any:
    chat = resolve_chat(w, p)
    user_id = user_param(w, p)
    return dump(member_obj(w.user(user_id), member_now(w, chat, user_id)))


@method("getChatAdministrators", reads=True)
async def get_chat_administrators(w: World, p: Params) -> Any:
    chat = resolve_chat(w, p)
    if chat.type == "private":
        raise bad("there are no administrators in the private chat")
    admins = []
    for uid, membership in chat.members.items():
        if not membership.is_admin:
            continue
        user = w.user(uid)
        if user.is_bot and uid != w.bot_id:
            continue
        admins.append(dump(member_obj(user, membership)))
    return admins


@method("getChatMemberCount", reads=True)
async def get_chat_member_count(w: World, p: Params) -> Any:
    chat = resolve_chat(w, p)
    return sum(1 for m in chat.members.values() if m.present)


def _group_admin_action(w: World, p: Params, right: str, what: str) -> ChatRec:
    chat = resolve_chat(w, p)
    if chat.type == "private":
        raise bad("chat member status can't be changed in private chats")
    require_right(w, chat, right, f"not enough rights to {what}")
    return chat


@method("createChatInviteLink")
async def create_chat_invite_link(w: World, p: Params) -> Any:
    chat = _group_admin_action(w, p, "can_invite_users", "manage chat invite link")
    member_limit = p.int_("member_limit")
    if member_limit is not None and not 1 <= member_limit <= 99999:
        raise bad("invalid member limit specified")
    creates_join_request = p.bool_("creates_join_request")
    if creates_join_request and member_limit is not None:
        raise bad("can't combine request to join with member limit")
    name = p.str_("name")
    if name is not None and len(name) > 32:
        raise bad("invite link name is too long")
    invite = InviteRec(
        link=new_invite_link(),
        chat_id=chat.id,
        creator_id=w.bot_id,
        name=name,
        expire_date=p.int_("expire_date"),
        member_limit=member_limit,
        creates_join_request=creates_join_request,
    )
    w.invites[invite.link] = invite
    return dump(invite_obj(invite, w.bot_user(), viewer_id=w.bot_id))


@method("revokeChatInviteLink")
async def revoke_chat_invite_link(w: World, p: Params) -> Any:
    chat = _group_admin_action(w, p, "can_invite_users", "manage chat invite link")
    invite = w.invites.get(p.str_("invite_link", empty="invite link is empty") or "")
    if invite is None or invite.chat_id != chat.id:
        raise bad("INVITE_HASH_EXPIRED")
    invite.is_revoked = True
    return dump(invite_obj(invite, w.user(invite.creator_id), viewer_id=w.bot_id))


def _changeable_target(w: World, chat: ChatRec, user_id: int) -> Membership:
    if user_id == w.bot_id:
        raise bad("can't restrict self")
    old = member_now(w, chat, user_id)
    if old.status == "creator":
        raise bad("can't remove chat owner")
    if old.status == "administrator":
        raise bad("user is an administrator of the chat")
    return old


@method("banChatMember")
async def ban_chat_member(w: World, p: Params) -> Any:
    chat = _group_admin_action(w, p, "can_restrict_members", "restrict/unrestrict chat member")
    user_id = user_param(w, p)
    old = _changeable_target(w, chat, user_id)
    until = until_date(p.int_("until_date"), w.clock.now())
    member_changed(
        w, chat, w.user(user_id), old, Membership("kicked", until_date=until), w.bot_user()
    )
    return True


@method("unbanChatMember")
async def unban_chat_member(w: World, p: Params) -> Any:
    chat = _group_admin_action(w, p, "can_restrict_members", "restrict/unrestrict chat member")
    user_id = user_param(w, p)
    old = member_now(w, chat, user_id)
    if old.status != "kicked":
        # Telegram: unbanning a non-banned user removes them unless only_if_banned is set;
        # the emulator keeps present members (as with only_if_banned) and ignores the rest.
        return True
    member_changed(w, chat, w.user(user_id), old, Membership("left"), w.bot_user())
    return True


@method("restrictChatMember")
async def restrict_chat_member(w: World, p: Params) -> Any:
    chat = _group_admin_action(w, p, "can_restrict_members", "restrict/unrestrict chat member")
    if chat.type != "supergroup":
        raise bad("method is available only for supergroups")
    user_id = user_param(w, p)
    old = _changeable_target(w, chat, user_id)
    raw = p.json_("permissions")
    if raw is None:
        raise bad("permissions are empty")
    try:
        perms = permissions_from(raw)
    except ValueError:
        raise bad("can't parse permissions JSON object") from None
    perms = implied(perms, independent=p.bool_("use_independent_chat_permissions"))
    until = until_date(p.int_("until_date"), w.clock.now())
    present = old.present
    if all(perms.values()):  # "Pass True for all permissions to lift restrictions"
        new = Membership("member" if present else "left")
    else:
        new = Membership("restricted", permissions=perms, until_date=until, is_member=present)
    member_changed(w, chat, w.user(user_id), old, new, w.bot_user())
    return True


# ----- commands --------------------------------------------------------------------------
def _commands_key(p: Params) -> str:
    scope = p.json_("scope") or {"type": "default"}
    if not isinstance(scope, dict):
        raise bad("can't parse BotCommandScope JSON object")
    return f"{sorted(scope.items())}|{p.str_('language_code') or ''}"


@method("setMyCommands")
async def set_my_commands(w: World, p: Params) -> Any:
    raw = p.json_("commands")
    if not isinstance(raw, list):
        raise bad("can't parse commands JSON object")
    try:
        commands = [dump(BotCommand.model_validate(c)) for c in raw]
    except ValidationError:
        raise bad("can't parse BotCommand JSON object") from None
    w.commands[_commands_key(p)] = commands
    return True


@method("getMyCommands", reads=True)
async def get_my_commands(w: World, p: Params) -> Any:
    return w.commands.get(_commands_key(p), [])


@method("deleteMyCommands")
async def delete_my_commands(w: World, p: Params) -> Any:
    w.commands.pop(_commands_key(p), None)
    return True
