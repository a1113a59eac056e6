"""What Telegram enforces on restricted and banned members: which permission each kind of
message needs, restrictions and bans that end at their ``until_date``, and how the Bot API
reads the permissions a bot sets."""

from __future__ import annotations

from ._state import ChatRec, ControlError, Membership, World

#: The ChatPermissions field a restricted member needs to send each kind of message, and what
#: the refusal calls it (the Bot API's ChatPermissions; dice are sent like stickers).
NEEDED_PERMISSION: dict[str, tuple[str, str]] = {
    "text": ("can_send_messages", "messages"),
    "contact": ("can_send_messages", "contacts"),
    "location": ("can_send_messages", "locations"),
    "photo": ("can_send_photos", "photos"),
    "video": ("can_send_videos", "videos"),
    "video_note": ("can_send_video_notes", "video notes"),
    "voice": ("can_send_voice_notes", "voice notes"),
    "audio": ("can_send_audios", "audio files"),
    "document": ("can_send_documents", "documents"),
    "poll": ("can_send_polls", "polls"),
    "sticker": ("can_send_other_messages", "stickers"),
    "animation": ("can_send_other_messages", "animations"),
    "dice": ("can_send_other_messages", "dice"),
}

#: What ``can_send_other_messages`` and ``can_add_web_page_previews`` imply unless the bot
#: asks for independent permissions (restrictChatMember's use_independent_chat_permissions).
_IMPLIED_BY_OTHER = (
    "can_send_messages",
    "can_send_audios",
    "can_send_documents",
    "can_send_photos",
    "can_send_videos",
    "can_send_video_notes",
    "can_send_voice_notes",
)

#: restrictChatMember and banChatMember: an until_date less than 30 seconds or more than 366
#: days away means for good.
_SHORTEST, _LONGEST = 30, 366 * 86400


def in_force(membership: Membership, now: int) -> Membership:
    """``membership`` as it stands at ``now``: a restriction or a ban whose ``until_date`` has
    passed is over, as in Telegram (the restricted member is a plain member again, or has left
    if they were not in the chat; the banned user has left and may come back)."""
    if membership.status not in ("restricted", "kicked"):
        return membership
    if not membership.until_date or membership.until_date > now:
        return membership
    if membership.status == "restricted" and membership.is_member:
        return Membership("member")
    return Membership("left")


def member_now(world: World, chat: ChatRec, user_id: int) -> Membership:
    """The membership of ``user_id`` in ``chat`` in force by the emulator's clock."""
    return in_force(chat.member(user_id), world.clock.now())


def until_date(until: int | None, now: int) -> int:
    """The until_date Telegram keeps for a restriction or ban: 0 (for good) when none is given
    or it is less than 30 seconds or more than 366 days from now."""
    if not until or until - now < _SHORTEST or until - now > _LONGEST:
        return 0
    return until


def implied(permissions: dict[str, bool], *, independent: bool) -> dict[str, bool]:
    """The permissions a restriction grants: as given when they are independent, otherwise
    with what ``can_send_other_messages`` / ``can_add_web_page_previews`` (the media kinds
    and text) and ``can_send_polls`` (text) imply, as the Bot API documents."""
    if independent:
        return permissions
    granted = dict(permissions)
    if granted.get("can_send_other_messages") or granted.get("can_add_web_page_previews"):
        granted.update(dict.fromkeys(_IMPLIED_BY_OTHER, True))
    if granted.get("can_send_polls"):
        granted["can_send_messages"] = True
    return granted


def check_may_send(chat: ChatRec, user_id: int, membership: Membership, kind: str) -> None:
    """Refuse a message of ``kind`` from a member whose restriction forbids it (HTTP 403),
    as Telegram refuses it: nothing is posted. ``membership`` is the one in force."""
    if membership.status != "restricted":
        return
    needed = NEEDED_PERMISSION.get(kind)
    if needed is None:
        return
    permission, what = needed
    if not membership.permissions.get(permission, False):
        raise ControlError(
            403, f"user {user_id} is restricted in chat {chat.id}: can't send {what}"
        )
