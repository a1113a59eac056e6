"""What the rest of the bot may ask of moderation: the actions (restrict, mute, kick, ban,
delete, warn) and who is approved, with how each action ended.

`bot.moderation.service.Moderation` implements it. SOP steps type their collaborator with this
protocol: `tidepool check` reads the step types without the service behind it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal, Protocol

Mode = Literal["on", "off", "dry"]
MODES: tuple[Mode, ...] = ("on", "off", "dry")
RIGHTS = "rights"  # `Done.error` when the bot may not do it in the group (admins were told)


@dataclass(frozen=True, slots=True)
class Done:
    """How a moderation action ended.

    `ok`: done, or in dry mode recorded as what would have been done (`dry`). `skipped`:
    moderation is off in the group, so nothing was done or recorded. `error`: `RIGHTS` when the
    bot lacks the right (the group's admins have been told, once), else what Telegram said.
    `action_id`: the action's row in the moderation log."""

    ok: bool
    dry: bool = False
    skipped: bool = False
    error: str | None = None
    action_id: int | None = None


@dataclass(frozen=True, slots=True)
class Warned:
    """A warning given: `count` warnings within the group's window, this one included;
    `muted` when it reached the limit and the member was muted for it."""

    done: Done
    count: int
    muted: Done | None = None


class Moderator(Protocol):
    """Moderation actions in groups.

    `by` says who acts: `sop:<id>` (an SOP's step), `checks` (the first-message checks) or
    `admin:<user id>`. What SOPs and the checks do honours the group's mode (off: skipped; dry:
    recorded, not done); what admins do always happens. `reason` is shown in the log; `check`
    names the check or trigger behind it (`flood`, `links`, `join_check`)."""

    def mode(self, chat_id: int) -> Mode: ...

    async def restrict(
        self,
        chat_id: int,
        user_id: int,
        *,
        by: str,
        permissions: Mapping[str, bool] | None = None,
        until: datetime | None = None,
        reason: str = "",
        check: str | None = None,
    ) -> Done: ...

    async def unrestrict(
        self, chat_id: int, user_id: int, *, by: str, reason: str = ""
    ) -> Done: ...

    async def mute(
        self,
        chat_id: int,
        user_id: int,
        *,
        duration: timedelta,
        by: str,
        reason: str = "",
        check: str | None = None,
    ) -> Done: ...

    async def kick(
        self, chat_id: int, user_id: int, *, by: str, reason: str = "", check: str | None = None
    ) -> Done: ...

    async def ban(
        self,
        chat_id: int,
        user_id: int,
        *,
        by: str,
        reason: str = "",
        check: str | None = None,
        until: datetime | None = None,
    ) -> Done: ...

    async def unban(self, chat_id: int, user_id: int, *, by: str, reason: str = "") -> Done: ...

    async def delete(
        self,
        chat_id: int,
        message_id: int,
        user_id: int | None,
        *,
        by: str,
        reason: str = "",
        check: str | None = None,
    ) -> Done: ...

    async def tidy(self, chat_id: int, message_id: int) -> Done:
        """Delete a message the bot sent: whatever the mode, not in the log."""
        ...

    async def warn(self, chat_id: int, user_id: int, *, by: str, reason: str = "") -> Warned: ...

    async def approved_among(self, chat_id: int, user_ids: Iterable[int]) -> set[int]: ...
