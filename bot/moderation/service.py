"""`Moderation`: every moderation action, through the one outbound path, in the moderation log.

What SOPs and the first-message checks do honours the group's mode: `off` does nothing, `dry`
records what would have been done and changes nothing. What admins do always happens. When the
bot lacks the right to restrict or delete, nothing else is tried in its place (nobody is removed
because a restriction failed) and the group's admins are told once, until the right is back.

It also keeps who of a group's newcomers is approved: members who join are checked until their
first messages pass (`bot.moderation.screening`), unless an admin added them or approved them
before; members who were there before moderation began are approved.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping
from datetime import datetime, timedelta, tzinfo
from typing import Any

from aiogram.types import ChatPermissions
from loguru import logger

from bot.admins import Admins
from bot.clock import Clock
from bot.delivery import Delivered
from bot.events import Bus, MemberJoined, MemberLeft
from bot.moderation.protocol import MODES, RIGHTS, Done, Mode, Warned
from bot.moderation.store import ModerationStore
from bot.outbox import Outbox
from bot.sop.format import ModerationRule

DEFAULT_MODE: Mode = "on"
SOURCE = "moderation"
# How Telegram says the bot may not: not an admin with the right, or a basic group.
_NO_RIGHT = (
    "not enough rights",
    "chat_admin_required",
    "need administrator rights",
    "method is available only for supergroups",
    "can't demote chat creator",
)
PERMISSIONS = tuple(ChatPermissions.model_fields)
SEND = tuple(name for name in PERMISSIONS if name.startswith("can_send_"))
Tell = Callable[[int, str, dict[str, Any]], Awaitable[None]]


def permissions_of(granted: Mapping[str, bool] | None) -> ChatPermissions:
    """Chat permissions with only `granted` allowed (None: nothing)."""
    unknown = set(granted or {}) - set(PERMISSIONS)
    if unknown:
        raise ValueError(f"unknown permissions: {', '.join(sorted(unknown))}")
    allowed = {name: bool((granted or {}).get(name, False)) for name in PERMISSIONS}
    return ChatPermissions(**allowed)


EVERYTHING = ChatPermissions(**dict.fromkeys(PERMISSIONS, True))


def lacks_right(error: str | None) -> bool:
    return error is not None and any(sign in error.lower() for sign in _NO_RIGHT)


class Moderation:
    """Moderation actions, the groups' modes and newcomers' approval (see the module's doc)."""

    def __init__(
        self,
        store: ModerationStore,
        outbox: Outbox,
        clock: Clock,
        admins: Admins,
        bus: Bus,
        *,
        rules: Callable[[int], ModerationRule],
        zones: Callable[[int], tzinfo],
        tell_admins: Tell,
    ) -> None:
        self.store = store
        self.outbox = outbox
        self.clock = clock
        self.admins = admins
        self.rules = rules  # the group's `moderation` section (its SOPs')
        self.zones = zones  # the group's time zone
        self.tell_admins = tell_admins
        self._modes: dict[int, Mode] = {}
        self._told: set[tuple[int, str]] = set()  # (group, right) its admins know is missing
        # Newcomers not approved yet, by (chat, user): how many messages of theirs passed.
        self.pending: dict[tuple[int, int], int] = {}
        # Before the SOP engine's: a joiner's approval is known when the join check starts.
        bus.subscribe(MemberJoined, self._on_joined)
        bus.subscribe(MemberLeft, self._on_left)

    async def load(self) -> None:
        self._modes = {
            chat_id: mode for chat_id, mode in (await self.store.modes()).items() if mode in MODES
        }
        self.pending = await self.store.pending()

    # -- modes --------------------------------------------------------------------------------

    def mode(self, chat_id: int) -> Mode:
        return self._modes.get(chat_id, DEFAULT_MODE)

    def dry_groups(self) -> list[int]:
        return [chat_id for chat_id, mode in self._modes.items() if mode == "dry"]

    async def set_mode(self, chat_id: int, mode: Mode, by: int | None) -> None:
        await self.store.set_mode(chat_id, mode, by, self.clock.now())
        self._modes[chat_id] = mode

    # -- newcomers ----------------------------------------------------------------------------

    async def _on_joined(self, event: MemberJoined) -> None:
        chat_id, user_id = event.chat_id, event.user.id
        added_by = event.added_by
        # Added by an admin who is a person: the bot itself "adds" whom it let in by a request.
        if added_by is not None and (
            added_by in self.admins.owner_ids or added_by in await self.admins.people_of(chat_id)
        ):
            await self.approve(chat_id, user_id, "added")
            return
        checked = await self.store.joined(chat_id, user_id, event.at)
        if checked is not None:
            self.pending[chat_id, user_id] = checked

    async def _on_left(self, event: MemberLeft) -> None:
        self.pending.pop((event.chat_id, event.user.id), None)  # a rejoin reads it again

    async def approve(self, chat_id: int, user_id: int, by: str) -> None:
        """The member is approved: their messages are no longer checked."""
        await self.store.approve(chat_id, user_id, by, self.clock.now())
        self.pending.pop((chat_id, user_id), None)

    async def passed(self, chat_id: int, user_id: int) -> bool:
        """One more substantive message of a newcomer passed the checks; True when that
        approved them (the group's `first_messages` reached). The count is kept here; the
        screening writes it with the verdicts, in batches."""
        key = (chat_id, user_id)
        checked = self.pending.get(key, 0) + 1
        if checked >= self.rules(chat_id).first_messages:
            await self.approve(chat_id, user_id, "checks")
            return True
        self.pending[key] = checked
        return False

    async def approved_among(self, chat_id: int, user_ids: Iterable[int]) -> set[int]:
        wanted = set(user_ids)
        waiting = {user_id for user_id in wanted if (chat_id, user_id) in self.pending}
        if waiting:
            admins = await self.admins.admins_of(chat_id)
            waiting -= set(admins) | self.admins.owner_ids
        return wanted - waiting

    # -- actions ------------------------------------------------------------------------------

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
    ) -> Done:
        allowed = permissions_of(permissions)
        return await self._act(
            chat_id,
            user_id,
            "restrict",
            by,
            reason,
            check,
            lambda: self.outbox.restrict(chat_id, user_id, allowed, source=SOURCE, until=until),
            until=until,
        )

    async def unrestrict(self, chat_id: int, user_id: int, *, by: str, reason: str = "") -> Done:
        return await self._act(
            chat_id,
            user_id,
            "unrestrict",
            by,
            reason,
            None,
            lambda: self.outbox.restrict(chat_id, user_id, EVERYTHING, source=SOURCE),
        )

    async def mute(
        self,
        chat_id: int,
        user_id: int,
        *,
        duration: timedelta,
        by: str,
        reason: str = "",
        check: str | None = None,
    ) -> Done:
        until = self.clock.now() + duration
        nothing = permissions_of(None)
        return await self._act(
            chat_id,
            user_id,
            "mute",
            by,
            reason,
            check,
            lambda: self.outbox.restrict(chat_id, user_id, nothing, source=SOURCE, until=until),
            until=until,
        )

    async def kick(
        self, chat_id: int, user_id: int, *, by: str, reason: str = "", check: str | None = None
    ) -> Done:
        async def kick() -> Delivered:
            banned = await self.outbox.ban(chat_id, user_id, source=SOURCE)
            if not banned.ok:
                return banned
            return await self.outbox.unban(chat_id, user_id, source=SOURCE)  # may come back

        return await self._act(chat_id, user_id, "kick", by, reason, check, kick)

    async def ban(
        self,
        chat_id: int,
        user_id: int,
        *,
        by: str,
        reason: str = "",
        check: str | None = None,
        until: datetime | None = None,
    ) -> Done:
        return await self._act(
            chat_id,
            user_id,
            "ban",
            by,
            reason,
            check,
            lambda: self.outbox.ban(chat_id, user_id, source=SOURCE, until=until),
            until=until,
        )

    async def unban(self, chat_id: int, user_id: int, *, by: str, reason: str = "") -> Done:
        done = await self._act(
            chat_id,
            user_id,
            "unban",
            by,
            reason,
            None,
            lambda: self.outbox.unban(chat_id, user_id, source=SOURCE),
        )
        if done.ok and not done.dry:
            standing = await self.store.standing(chat_id, user_id, ("ban", "kick"))
            await self.undone(standing, by)
        return done

    async def delete(
        self,
        chat_id: int,
        message_id: int,
        user_id: int | None,
        *,
        by: str,
        reason: str = "",
        check: str | None = None,
        text: str | None = None,
    ) -> Done:
        return await self._act(
            chat_id,
            user_id,
            "delete",
            by,
            reason,
            check,
            lambda: self.outbox.delete(chat_id, message_id, source=SOURCE),
            message_id=message_id,
            text=text,
        )

    async def tidy(self, chat_id: int, message_id: int) -> Done:
        """Delete a message the bot sent (a join check's prompt): housekeeping, not moderation
        of anyone, so whatever the mode, and not in the log."""
        delivered = await self.outbox.delete(chat_id, message_id, source=SOURCE)
        if delivered.ok:
            return Done(ok=True)
        return Done(ok=False, error=delivered.error or "failed")

    async def warn(self, chat_id: int, user_id: int, *, by: str, reason: str = "") -> Warned:
        done = await self._act(chat_id, user_id, "warn", by, reason, None, None)
        if not done.ok or done.dry:
            return Warned(done, 0)
        rule = self.rules(chat_id).warnings
        count = await self.store.warnings(chat_id, user_id, self.clock.now() - rule.within)
        muted = None
        if count >= rule.limit:
            muted = await self.mute(
                chat_id,
                user_id,
                duration=rule.mute,
                by=by,
                reason=f"{count} warnings",
                check="warnings",
            )
        return Warned(done, count, muted)

    async def undone(self, actions: Iterable[Any], by: str) -> int:
        """Mark automatic actions as undone by an admin (`by`): the false positives."""
        ids = [action.id for action in actions if not action.by.startswith("admin:")]
        return await self.store.undo(ids, by, self.clock.now())

    async def _act(
        self,
        chat_id: int,
        user_id: int | None,
        action: str,
        by: str,
        reason: str,
        check: str | None,
        do: Callable[[], Awaitable[Delivered]] | None,
        *,
        until: datetime | None = None,
        message_id: int | None = None,
        text: str | None = None,
    ) -> Done:
        automatic = not by.startswith("admin:")
        mode = self.mode(chat_id)
        if automatic and mode == "off":
            return Done(ok=False, skipped=True)
        row = {
            "chat_id": chat_id,
            "user_id": user_id,
            "action": action,
            "by": by,
            "reason": reason,
            "check": check,
            "until": until,
            "message_id": message_id,
            "text": text,
            "at": self.clock.now(),
        }
        if automatic and mode == "dry":
            return Done(ok=True, dry=True, action_id=await self.store.record(**row, dry=True))
        error = None
        if do is not None:
            delivered = await do()
            if not delivered.ok:
                error = RIGHTS if lacks_right(delivered.error) else (delivered.error or "failed")
        action_id = await self.store.record(**row, ok=error is None, error=error)
        if error == RIGHTS:
            await self._missing_right(chat_id, action)
        elif error is not None:
            logger.bind(chat_id=chat_id).info("moderation: {} failed: {}", action, error)
        elif do is not None:
            self._told.discard((chat_id, _right(action)))  # back: a later loss is told again
        return Done(ok=error is None, error=error, action_id=action_id)

    async def _missing_right(self, chat_id: int, action: str) -> None:
        """Tell the admins once that the bot may not moderate here (until it may again)."""
        right = _right(action)
        if (chat_id, right) in self._told:
            return
        self._told.add((chat_id, right))
        _summary, told = await self.store.group_marks(chat_id)
        now = self.clock.now()
        if told is not None and now - told < timedelta(hours=1):
            return  # told just before a restart
        await self.store.mark_rights_told(chat_id, now)
        await self.tell_admins(chat_id, f"moderation.no_right_{right}", {})


def _right(action: str) -> str:
    """The right an action needs: deleting messages, or restricting members."""
    return "delete" if action == "delete" else "restrict"
