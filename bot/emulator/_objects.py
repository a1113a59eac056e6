"""Builders of aiogram objects (chats, members, media, entities) from emulator state."""

from __future__ import annotations

import secrets
from typing import Any, get_args

from aiogram.types import (
    AcceptedGiftTypes,
    Animation,
    Audio,
    Chat,
    ChatAdministratorRights,
    ChatFullInfo,
    ChatInviteLink,
    ChatJoinRequest,
    ChatMemberAdministrator,
    ChatMemberBanned,
    ChatMemberLeft,
    ChatMemberMember,
    ChatMemberOwner,
    ChatMemberRestricted,
    ChatPermissions,
    Contact,
    Dice,
    Document,
    Location,
    Message,
    PhotoSize,
    Poll,
    PollOption,
    Sticker,
    User,
    Video,
    VideoNote,
    Voice,
)
from aiogram.types.base import TelegramObject

from ._entities import entities_for
from ._state import (
    JSON,
    ChatRec,
    ControlError,
    InviteRec,
    JoinRequestRec,
    Membership,
    World,
    as_dt,
)
from .client import MessageKind

ChatMemberT = (
    ChatMemberOwner
    | ChatMemberAdministrator
    | ChatMemberMember
    | ChatMemberRestricted
    | ChatMemberLeft
    | ChatMemberBanned
)

#: Rights that only make sense in channels; never reported for groups.
_CHANNEL_ONLY_RIGHTS = frozenset(
    {"can_post_messages", "can_edit_messages", "can_manage_direct_messages"}
)
ADMIN_RIGHTS = tuple(
    name for name in ChatAdministratorRights.model_fields if name not in _CHANNEL_ONLY_RIGHTS
)
DEFAULT_ADMIN_RIGHTS = frozenset(
    {
        "can_manage_chat",
        "can_delete_messages",
        "can_invite_users",
        "can_restrict_members",
        "can_pin_messages",
        "can_change_info",
    }
)
PERMISSIONS = tuple(ChatPermissions.model_fields)

GROUP_ANONYMOUS_BOT = User(
    id=1087968824, is_bot=True, first_name="Group", username="GroupAnonymousBot"
)
CHANNEL_BOT = User(id=136817688, is_bot=True, first_name="Channel", username="Channel_Bot")

MESSAGE_KINDS: frozenset[str] = frozenset(get_args(MessageKind))
CAPTION_KINDS = frozenset({"photo", "video", "voice", "audio", "document", "animation"})


def dump(obj: TelegramObject) -> JSON:
    """Serialise an aiogram object exactly like the Bot API would."""
    return obj.model_dump(mode="json", exclude_none=True, by_alias=True)


def admin_rights(overrides: Any = None) -> dict[str, bool]:
    """Full administrator rights dict: defaults, overridden by ``overrides``."""
    rights = {name: name in DEFAULT_ADMIN_RIGHTS for name in ADMIN_RIGHTS}
    rights["is_anonymous"] = False
    if overrides is None:
        return rights
    if not isinstance(overrides, dict):
        raise ControlError(400, "rights must be an object")
    for key, value in overrides.items():
        if key not in rights:
            raise ControlError(400, f"unknown administrator right: {key}")
        rights[key] = bool(value)
    return rights


def permissions_from(data: Any) -> dict[str, bool]:
    """ChatPermissions dict; unspecified permissions are False, as Telegram does."""
    if not isinstance(data, dict):
        raise ValueError("permissions must be an object")
    return {name: bool(data.get(name, False)) for name in PERMISSIONS}


def chat_obj(chat: ChatRec) -> Chat:
    """The short Chat object used inside messages."""
    if chat.type == "private":
        return Chat(
            id=chat.id,
            type="private",
            first_name=chat.first_name,
            last_name=chat.last_name,
            username=chat.username,
        )
    return Chat(id=chat.id, type=chat.type, title=chat.title, username=chat.username)


def chat_full(chat: ChatRec, world: World) -> ChatFullInfo:
    """The ChatFullInfo returned by getChat."""
    pinned = None
    for mid in reversed(chat.pinned):
        rec = chat.live_message(mid)
        if rec is not None:
            pinned = rec.message
            break
    extra: dict[str, Any] = {}
    if chat.type != "private":
        extra["permissions"] = ChatPermissions(**{name: True for name in PERMISSIONS})
        extra["has_visible_history"] = True
    return ChatFullInfo(
        **chat_obj(chat).model_dump(exclude_none=True),  # the short Chat, and more
        accent_color_id=abs(chat.id) % 7,
        max_reaction_count=11,
        accepted_gift_types=AcceptedGiftTypes(
            **dict.fromkeys(AcceptedGiftTypes.model_fields, False)
        ),
        pinned_message=pinned,
        **extra,
    )


def member_obj(user: User, membership: Membership) -> ChatMemberT:
    """The ChatMember variant for ``membership``."""
    status = membership.status
    if status == "creator":
        return ChatMemberOwner(user=user, is_anonymous=False)
    if status == "administrator":
        rights = admin_rights(None)
        rights.update(membership.rights)
        return ChatMemberAdministrator.model_validate(
            {"user": user, "can_be_edited": False, **rights}
        )
    if status == "member":
        return ChatMemberMember(user=user)
    if status == "restricted":
        perms = {name: membership.permissions.get(name, False) for name in PERMISSIONS}
        return ChatMemberRestricted.model_validate(
            {
                "user": user,
                "is_member": membership.is_member,
                "until_date": as_dt(membership.until_date),
                **perms,
            }
        )
    if status == "kicked":
        return ChatMemberBanned(user=user, until_date=as_dt(membership.until_date))
    return ChatMemberLeft(user=user)


#: How much of an invite link's secret part Telegram shows an administrator who did not create
#: the link. The Bot API says only that "the second part of the link will be replaced with
#: '…'"; the emulator keeps the first five characters of the part after "/" (or "/+").
MASKED_KEEP = 5


def masked_invite_link(link: str) -> str:
    """``link`` as a bot sees it when another administrator created it:
    ``https://t.me/+AbCdEfGhIjKlMnOp`` becomes ``https://t.me/+AbCdE…``."""
    base, _, tail = link.rpartition("/")
    lead = "+" if tail.startswith("+") else ""
    return f"{base}/{lead}{tail[len(lead) : len(lead) + MASKED_KEEP]}…"


def invite_obj(invite: InviteRec, creator: User, *, viewer_id: int) -> ChatInviteLink:
    """The ChatInviteLink object for a stored link, as ``viewer_id`` sees it: the full link
    only when the viewer created it (the bot, or the human admin the control API speaks for)."""
    link = invite.link if creator.id == viewer_id else masked_invite_link(invite.link)
    return ChatInviteLink(
        invite_link=link,
        creator=creator,
        creates_join_request=invite.creates_join_request,
        is_primary=invite.is_primary,
        is_revoked=invite.is_revoked,
        name=invite.name,
        expire_date=None if invite.expire_date is None else as_dt(invite.expire_date),
        member_limit=invite.member_limit,
    )


def join_request_obj(world: World, rec: JoinRequestRec) -> ChatJoinRequest:
    """The ChatJoinRequest the bot receives (the link masked unless the bot created it)."""
    invite = world.invites.get(rec.invite_link) if rec.invite_link is not None else None
    return ChatJoinRequest(
        chat=chat_obj(world.chat(rec.chat_id)),
        from_user=world.user(rec.user_id),
        user_chat_id=rec.user_id,
        date=as_dt(rec.date),
        bio=rec.bio,
        invite_link=(
            invite_obj(invite, world.user(invite.creator_id), viewer_id=world.bot_id)
            if invite is not None
            else None
        ),
    )


def new_invite_link() -> str:
    """A unique-looking t.me invite link."""
    return "https://t.me/+" + secrets.token_urlsafe(12)[:16]


def photo_sizes(world: World, file_id: str | None = None) -> list[PhotoSize]:
    """Three PhotoSize entries; the largest reuses ``file_id`` when given."""
    sizes = []
    for width, height in ((90, 60), (320, 213), (800, 533)):
        fid, uid = world.new_file_id("photo")
        sizes.append(
            PhotoSize(
                file_id=fid, file_unique_id=uid, width=width, height=height, file_size=width * 40
            )
        )
    if file_id is not None:
        last = sizes[-1]
        sizes[-1] = PhotoSize(
            file_id=file_id, file_unique_id=last.file_unique_id, width=800, height=533
        )
    return sizes


def media_fields(world: World, kind: str, data: JSON) -> dict[str, Any]:
    """Message fields for a user message of ``kind`` (text, photo, poll, ...)."""
    if kind not in MESSAGE_KINDS:
        raise ControlError(400, f"unknown message kind: {kind}")
    fields: dict[str, Any] = {}
    if kind == "text":
        text = data.get("text", "hello")
        if not isinstance(text, str) or not text:
            raise ControlError(400, "text must be a non-empty string")
        fields["text"] = text
        fields["entities"] = entities_for(text, data.get("entities"))
        return fields
    caption = data.get("caption")
    if caption is not None:
        if kind not in CAPTION_KINDS:
            raise ControlError(400, f"kind {kind} has no caption")
        fields["caption"] = str(caption)
        fields["caption_entities"] = entities_for(str(caption), data.get("entities"))
    elif data.get("entities") is not None:
        raise ControlError(400, "entities need a text or a caption")
    fid, uid = world.new_file_id(kind)
    if kind == "photo":
        fields["photo"] = photo_sizes(world)
    elif kind == "video":
        fields["video"] = Video(file_id=fid, file_unique_id=uid, width=640, height=360, duration=5)
    elif kind == "sticker":
        fields["sticker"] = Sticker(
            file_id=fid,
            file_unique_id=uid,
            type="regular",
            width=512,
            height=512,
            is_animated=False,
            is_video=False,
            emoji="🙂",
        )
    elif kind == "voice":
        fields["voice"] = Voice(file_id=fid, file_unique_id=uid, duration=3, mime_type="audio/ogg")
    elif kind == "audio":
        fields["audio"] = Audio(file_id=fid, file_unique_id=uid, duration=180, title="Track")
    elif kind == "document":
        fields["document"] = Document(file_id=fid, file_unique_id=uid, file_name="file.pdf")
    elif kind == "animation":
        fields["animation"] = Animation(
            file_id=fid, file_unique_id=uid, width=320, height=240, duration=2
        )
        fields["document"] = Document(file_id=fid, file_unique_id=uid, file_name="anim.mp4")
    elif kind == "video_note":
        fields["video_note"] = VideoNote(file_id=fid, file_unique_id=uid, length=240, duration=4)
    elif kind == "poll":
        fields["poll"] = Poll(
            id=str(secrets.randbits(60)),
            question=str(data.get("text") or "Poll?"),
            options=[
                PollOption(persistent_id=str(i), text=text, voter_count=0)
                for i, text in enumerate(("Yes", "No"))
            ],
            total_voter_count=0,
            is_closed=False,
            is_anonymous=True,
            type="regular",
            allows_multiple_answers=False,
            allows_revoting=False,
            members_only=False,
        )
    elif kind == "location":
        fields["location"] = Location(latitude=52.37, longitude=4.89)
    elif kind == "contact":
        fields["contact"] = Contact(phone_number="+10000000000", first_name="Contact")
    else:
        fields["dice"] = Dice(emoji="🎲", value=4)
    return fields


def strip_reply(message: Message) -> Message:
    """A copy without nested reply_to_message (Telegram nests replies one level only)."""
    if message.reply_to_message is None:
        return message
    return message.model_copy(update={"reply_to_message": None})


def message_kind(message: Message) -> str:
    """The content kind of a stored message."""
    for kind in ("text", *sorted(MESSAGE_KINDS - {"text"})):
        if getattr(message, kind, None) is not None:
            return kind
    return "service"
