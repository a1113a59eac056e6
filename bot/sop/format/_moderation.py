"""The moderation actions (restrict, unrestrict, mute, kick, ban, delete, warn) and the names of
the first-message checks and of the permissions they use.

Each calls the bot's moderation service (`bot.moderation.protocol.Moderator`), which honours the
group's moderation mode (`/moderation on|off|dry`) and records the action in the moderation log
with its `reason`.
"""

from __future__ import annotations

import typing
from datetime import timedelta
from typing import Annotated, Literal

from pydantic import AfterValidator, Field, model_validator

from ._common import Duration, Identifier, Strict, _exactly_one

# The first-message checks a `message` trigger's `checks` may name. It must equal the names of
# `bot.moderation.checks.CHECKS` (a test ties them): the format is read without that module.
CheckName = Literal[
    "links",
    "channel_forward",
    "chat_mentions",
    "emoji",
    "stop_words",
    "spam_sample",
    "mixed_alphabet",
]
CHECK_NAMES: tuple[str, ...] = typing.get_args(CheckName)

# What a restricted member may still do: the fields of Telegram's ChatPermissions (aiogram's
# `ChatPermissions`; a test ties them). Those a `restrict` step leaves out are false.
Permission = Literal[
    "can_send_messages",
    "can_send_audios",
    "can_send_documents",
    "can_send_photos",
    "can_send_videos",
    "can_send_video_notes",
    "can_send_voice_notes",
    "can_send_polls",
    "can_send_other_messages",
    "can_add_web_page_previews",
    "can_react_to_messages",
    "can_edit_tag",
    "can_change_info",
    "can_invite_users",
    "can_pin_messages",
    "can_manage_topics",
]
PERMISSIONS: tuple[str, ...] = typing.get_args(Permission)

# Telegram takes a restriction or ban of less than 30 seconds or more than 366 days as one for
# good; a `for` outside them would silently mean "forever".
SHORTEST = timedelta(seconds=30)
LONGEST = timedelta(days=366)


def _telegram_term(value: timedelta | None) -> timedelta | None:
    if value is not None and not SHORTEST <= value <= LONGEST:
        raise ValueError(
            "must be from 30s to 366d (Telegram takes a shorter or longer one as for good; "
            "leave 'for' out for good)"
        )
    return value


Term = Annotated[Duration, AfterValidator(_telegram_term)]


class MessageChecks(Strict):
    """What a newcomer's first-message checks must have found for a `message` trigger: judged
    spam or not (`spam`), or any one of the named checks fired (`fired`)."""

    spam: bool | None = None
    fired: list[CheckName] | None = Field(default=None, min_length=1)

    @model_validator(mode="after")
    def _one(self) -> MessageChecks:
        _exactly_one(self, "spam", "fired")
        return self


class RestrictAction(Strict):
    """Restrict the member: they may do only what `permissions` allows (nothing when left out),
    `for` a while or until lifted (`unrestrict`)."""

    permissions: dict[Permission, bool] | None = None
    for_: Term | None = Field(default=None, alias="for")
    reason: str = ""


class UnrestrictAction(Strict):
    """Lift the member's restriction: they have the group's usual permissions again."""

    reason: str = ""


class MuteAction(Strict):
    """Mute the member (they may send nothing) `for` a while."""

    for_: Term = Field(alias="for")
    reason: str = ""


class KickAction(Strict):
    """Remove the member from the group; they may join again (a ban lifted at once)."""

    reason: str = ""


class BanAction(Strict):
    """Ban the member: removed, and may not join again `for` a while (left out: for good)."""

    for_: Term | None = Field(default=None, alias="for")
    reason: str = ""


class DeleteAction(Strict):
    """Delete the message that started the run (a message or flood trigger's), or the message
    that the send step `step` of this run sent."""

    step: Identifier | None = None
    reason: str = ""


class WarnAction(Strict):
    """Warn the member; warnings reaching the group's limit within its window mute them."""

    reason: str = ""
