"""The emulated Telegram world: bot, users, chats, memberships, messages, updates, calls, clock."""

from __future__ import annotations

import asyncio
import contextlib
import math
import re
import secrets
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from aiogram.types import Message, User

JSON = dict[str, Any]

TOKEN_RE = re.compile(r"^(\d{1,20}):[A-Za-z0-9_-]{1,100}$")

#: Update types that are only delivered when explicitly listed in ``allowed_updates``.
OPT_IN_UPDATES = frozenset({"chat_member", "message_reaction", "message_reaction_count"})

PRESENT_STATUSES = frozenset({"creator", "administrator", "member"})
ADMIN_STATUSES = frozenset({"creator", "administrator"})
GROUP_TYPES = frozenset({"group", "supergroup"})


def as_dt(unix: int) -> datetime:
    """A unix timestamp as an aware UTC datetime (aiogram serialises it back to the int)."""
    return datetime.fromtimestamp(unix, tz=UTC)


class ApiError(Exception):
    """A Telegram-shaped error: HTTP status == error_code, description, optional parameters."""

    def __init__(self, code: int, description: str, parameters: JSON | None = None) -> None:
        super().__init__(description)
        self.code = code
        self.description = description
        self.parameters = parameters

    def payload(self) -> JSON:
        """The JSON body Telegram would return for this error."""
        body: JSON = {"ok": False, "error_code": self.code, "description": self.description}
        if self.parameters:
            body["parameters"] = self.parameters
        return body


class ControlError(Exception):
    """An error of the control API, rendered as ``{"error": message}`` with ``status``."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass
class Membership:
    """The status of one user (or the bot) in one chat."""

    status: str = "left"
    rights: dict[str, bool] = field(default_factory=dict)
    permissions: dict[str, bool] = field(default_factory=dict)
    until_date: int = 0
    is_member: bool = False

    @property
    def present(self) -> bool:
        """Whether the user is currently in the chat (receives and may send messages)."""
        return self.status in PRESENT_STATUSES or (self.status == "restricted" and self.is_member)

    @property
    def is_admin(self) -> bool:
        """Whether the user is the creator or an administrator."""
        return self.status in ADMIN_STATUSES

    def has_right(self, right: str) -> bool:
        """Creator has every right; administrators have what their rights say."""
        if self.status == "creator":
            return True
        return self.status == "administrator" and self.rights.get(right, False)

    def copy(self) -> Membership:
        """An independent copy."""
        return Membership(
            self.status, dict(self.rights), dict(self.permissions), self.until_date, self.is_member
        )


@dataclass
class MessageRec:
    """A message stored in a chat, with the bookkeeping the control API reports."""

    message: Message
    from_bot: bool
    kind: str
    parse_mode: str | None = None
    reply_markup: JSON | None = None
    deleted: bool = False
    pinned: bool = False
    edit_count: int = 0


@dataclass
class ChatRec:
    """A chat (private, group or supergroup)."""

    id: int
    type: str
    title: str | None = None
    username: str | None = None
    first_name: str | None = None
    last_name: str | None = None
    members: dict[int, Membership] = field(default_factory=dict)
    messages: dict[int, MessageRec] = field(default_factory=dict)
    next_message_id: int = 1
    pinned: list[int] = field(default_factory=list)
    migrated_to: int | None = None
    migrated_from: int | None = None
    chat_instance: str = field(default_factory=lambda: str(secrets.randbits(62)))

    def member(self, user_id: int) -> Membership:
        """The membership of ``user_id`` (a fresh "left" one if unknown)."""
        return self.members.get(user_id) or Membership()

    def alloc_message_id(self) -> int:
        """Next message id of this chat."""
        mid = self.next_message_id
        self.next_message_id += 1
        return mid

    def live_message(self, message_id: int) -> MessageRec | None:
        """A message that exists and is not deleted."""
        rec = self.messages.get(message_id)
        return None if rec is None or rec.deleted else rec


@dataclass
class UpdateRec:
    """An update produced by the emulator and its delivery state."""

    update_id: int
    type: str
    payload: JSON
    delivered: bool = False
    confirmed: bool = False
    dropped: bool = False

    def as_json(self) -> JSON:
        """Control API representation."""
        return {
            "update_id": self.update_id,
            "type": self.type,
            "update": self.payload,
            "delivered": self.delivered,
            "confirmed": self.confirmed,
            "dropped": self.dropped,
        }


@dataclass
class InviteRec:
    """An invite link of a chat."""

    link: str
    chat_id: int
    creator_id: int
    name: str | None = None
    expire_date: int | None = None
    member_limit: int | None = None
    creates_join_request: bool = False
    is_primary: bool = False
    is_revoked: bool = False
    join_count: int = 0


@dataclass
class JoinRequestRec:
    """A user's pending request to join a chat (through a link that asks for approval, or
    through the chat's own "approve new members" setting when ``invite_link`` is None)."""

    chat_id: int
    user_id: int
    date: int
    invite_link: str | None = None
    bio: str | None = None


#: How long a bot may write to a user who asked to join one of its chats (ChatJoinRequest's
#: user_chat_id: "for 5 minutes ... until the join request is processed").
REQUESTER_WRITE_WINDOW = 300


@dataclass
class CallRec:
    """A Bot API call the bot made."""

    seq: int
    method: str
    params: JSON
    at: int
    ok: bool = False
    error_code: int | None = None
    description: str | None = None

    def as_json(self) -> JSON:
        """Control API representation."""
        data: JSON = {
            "seq": self.seq,
            "method": self.method,
            "params": self.params,
            "ok": self.ok,
            "at": self.at,
        }
        if not self.ok:
            data["error_code"] = self.error_code
            data["description"] = self.description
        return data


@dataclass
class FaultRec:
    """An injected failure for the next ``times`` calls of ``method``."""

    method: str
    error_code: int
    description: str
    times: int = 1
    retry_after: int | None = None
    chat_id: str | None = None


@dataclass
class CallbackRec:
    """A callback query produced by a button press, and the bot's answer."""

    id: str
    chat_id: int
    message_id: int
    user_id: int
    data: str
    answer: JSON | None = None


class Clock:
    """Real time by default; can be frozen at a value and advanced.

    ``on_change`` is called after every set, advance and return to real time."""

    def __init__(self, on_change: Callable[[], None] = lambda: None) -> None:
        self.frozen: float | None = None
        self.offset: float = 0.0
        self.on_change = on_change

    def now(self) -> int:
        """Current unix time in seconds."""
        if self.frozen is not None:
            return int(self.frozen)
        return int(time.time() + self.offset)

    def dt(self, offset: int = 0) -> datetime:
        """Current time (plus ``offset`` seconds) as an aware datetime for aiogram objects."""
        return as_dt(self.now() + offset)

    def set(self, value: float) -> None:
        """Freeze the clock at ``value``."""
        self.frozen = value
        self.on_change()

    def advance(self, seconds: float) -> None:
        """Move the clock forward (frozen or not)."""
        if self.frozen is not None:
            self.frozen += seconds
        else:
            self.offset += seconds
        self.on_change()

    def real(self) -> None:
        """Back to real time."""
        self.frozen = None
        self.offset = 0.0
        self.on_change()


class RateLimiter:
    """Telegram-like flood limits: 30 msg/s overall, 20/min per group, 1/s per chat."""

    def __init__(self) -> None:
        self.enabled = False
        self.overall: deque[float] = deque()
        self.per_group: dict[int, deque[float]] = {}
        self.last_per_chat: dict[int, float] = {}

    def retry_after(self, chat_id: int | None) -> int | None:
        """Seconds to wait before the next message may be sent, or None if allowed now."""
        if not self.enabled:
            return None
        now = time.monotonic()
        waits: list[float] = []
        while self.overall and now - self.overall[0] >= 1.0:
            self.overall.popleft()
        if len(self.overall) >= 30:
            waits.append(1.0 - (now - self.overall[0]))
        if chat_id is not None:
            last = self.last_per_chat.get(chat_id)
            if last is not None and now - last < 1.0:
                waits.append(1.0 - (now - last))
            if chat_id < 0:
                window = self.per_group.setdefault(chat_id, deque())
                while window and now - window[0] >= 60.0:
                    window.popleft()
                if len(window) >= 20:
                    waits.append(60.0 - (now - window[0]))
        if not waits:
            return None
        return max(1, math.ceil(max(waits)))

    def hit(self, chat_id: int | None) -> None:
        """Record a successful send."""
        if not self.enabled:
            return
        now = time.monotonic()
        self.overall.append(now)
        if chat_id is not None:
            self.last_per_chat[chat_id] = now
            if chat_id < 0:
                self.per_group.setdefault(chat_id, deque()).append(now)


class World:
    """All emulator state. Mutated synchronously from the single event loop.

    ``version`` counts the changes a chat viewer would see (messages stored, edited, deleted,
    pinned; memberships; join requests; chats; users; updates; answered callbacks; the clock):
    every such change calls :meth:`bump`, and :meth:`changed` waits for the next one."""

    def __init__(self, token: str, bot_username: str, bot_first_name: str) -> None:
        match = TOKEN_RE.match(token)
        if match is None:
            raise ValueError(f"malformed bot token: {token!r}")
        self.token = token
        self.bot_id = int(match.group(1))
        self.bot_username = bot_username
        self.bot_first_name = bot_first_name
        self.privacy_mode = True
        self.version = 0
        self._change = asyncio.Event()
        self.clock = Clock(on_change=self.bump)
        self.rate_limiter = RateLimiter()
        self._wakeup = asyncio.Event()
        self.poll_generation = 0
        self.closing = False
        self.reset()

    def reset(self) -> None:
        """Empty world (keeps token, bot identity and clock)."""
        self.users: dict[int, User] = {}
        self.started: set[int] = set()
        self.chats: dict[int, ChatRec] = {}
        self.updates: list[UpdateRec] = []
        self.next_update_id = 1
        self.invites: dict[str, InviteRec] = {}
        self.join_requests: dict[tuple[int, int], JoinRequestRec] = {}
        self.calls: list[CallRec] = []
        self.faults: list[FaultRec] = []
        self.callbacks: dict[str, CallbackRec] = {}
        self.commands: dict[str, list[JSON]] = {}
        self.webhook_url = ""
        self.allowed_updates: list[str] | None = None
        self.next_file_no = 1
        self.next_user_id = 1000
        self.next_group_seq = 1
        self.next_supergroup_seq = 1
        self.rate_limiter = RateLimiter()
        self.poll_generation += 1
        self.notify()
        self.bump()

    # ----- changes ----------------------------------------------------------------------
    def bump(self) -> None:
        """Count a change a chat viewer would see and wake every :meth:`changed` waiter."""
        self.version += 1
        self._change.set()
        self._change = asyncio.Event()

    async def changed(
        self,
        since: int,
        timeout: float,  # noqa: ASYNC109  (a long poll's wait, like getUpdates' timeout)
    ) -> int:
        """The current version as soon as it is past ``since``, else after ``timeout`` seconds.

        A ``since`` ahead of the current version (a viewer of an earlier process) is answered
        at once, so the viewer can start over from what it gets."""
        deadline = time.monotonic() + timeout
        while self.version == since and not self.closing:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._change.wait(), remaining)
        return self.version

    def close(self) -> None:
        """The server is stopping: end every long poll and every :meth:`changed` wait."""
        self.closing = True
        self.notify()
        self._change.set()
        self._change = asyncio.Event()

    # ----- snapshots ----------------------------------------------------------------------
    # _snapshot builds on this module's records, hence the imports inside the methods.
    def snapshot(self) -> bytes:
        """The whole state as versioned JSON (see :mod:`bot.emulator._snapshot`)."""
        from . import _snapshot

        return _snapshot.snapshot(self)

    def restore(self, data: bytes) -> None:
        """Replace the state by a :meth:`snapshot`'s; ValueError naming the problem if the
        snapshot is corrupt or of an unknown format (and then nothing changes)."""
        from . import _snapshot

        _snapshot.restore(self, data)

    @classmethod
    def from_snapshot(cls, data: bytes) -> World:
        """A world in a :meth:`snapshot`'s state, with the snapshot's token and bot identity."""
        from . import _snapshot

        return _snapshot.world_from(data)

    # ----- identities -------------------------------------------------------------------
    def bot_user(self) -> User:
        """The bot as it appears in messages (``from``) and memberships."""
        return User(
            id=self.bot_id,
            is_bot=True,
            first_name=self.bot_first_name,
            username=self.bot_username,
        )

    def me(self) -> User:
        """The bot as returned by getMe."""
        return User(
            id=self.bot_id,
            is_bot=True,
            first_name=self.bot_first_name,
            username=self.bot_username,
            can_join_groups=True,
            can_read_all_group_messages=not self.privacy_mode,
            supports_inline_queries=False,
            can_connect_to_business=False,
            has_main_web_app=False,
        )

    def user(self, user_id: int) -> User:
        """A known user (or the bot); raises ControlError 404 otherwise."""
        if user_id == self.bot_id:
            return self.bot_user()
        found = self.users.get(user_id)
        if found is None:
            raise ControlError(404, f"user {user_id} not found")
        return found

    def add_user(self, data: JSON) -> User:
        """Create (or replace) a user; ``id`` auto-assigned from 1000 upward."""
        user_id = data.get("id")
        if user_id is None:
            while self.next_user_id in self.users or self.next_user_id == self.bot_id:
                self.next_user_id += 1
            user_id = self.next_user_id
            self.next_user_id += 1
        if not isinstance(user_id, int) or user_id <= 0 or user_id == self.bot_id:
            raise ControlError(400, "id must be a positive integer other than the bot's id")
        fields = {k: data[k] for k in ("last_name", "username", "language_code") if k in data}
        user = User(
            id=user_id,
            is_bot=bool(data.get("is_bot", False)),
            first_name=str(data.get("first_name") or f"User{user_id}"),
            **fields,
        )
        self.users[user_id] = user
        self.bump()
        return user

    def add_chat(self, data: JSON) -> ChatRec:
        """Create a group or supergroup; ids auto-assigned in Telegram's ranges."""
        chat_type = data.get("type", "supergroup")
        if chat_type not in GROUP_TYPES:
            raise ControlError(400, "type must be 'group' or 'supergroup'")
        chat_id = data.get("id")
        if chat_id is None:
            while True:
                if chat_type == "group":
                    chat_id = -(4000000000 + self.next_group_seq)
                    self.next_group_seq += 1
                else:
                    chat_id = -(1001000000000 + self.next_supergroup_seq)
                    self.next_supergroup_seq += 1
                if chat_id not in self.chats:
                    break
        if not isinstance(chat_id, int) or chat_id >= 0:
            raise ControlError(400, "chat id must be a negative integer")
        if chat_id in self.chats:
            raise ControlError(400, f"chat {chat_id} already exists")
        title = data.get("title")
        if not isinstance(title, str) or not title:
            raise ControlError(400, "title is required")
        username = data.get("username")
        if username is not None and not isinstance(username, str):
            raise ControlError(400, "username must be a string")
        chat = ChatRec(id=chat_id, type=chat_type, title=title, username=username)
        chat.members[self.bot_id] = Membership("left")
        self.chats[chat_id] = chat
        self.bump()
        return chat

    def private_chat(self, user: User) -> ChatRec:
        """The private chat between the bot and ``user`` (created on first use)."""
        chat = self.chats.get(user.id)
        if chat is None:
            chat = ChatRec(
                id=user.id,
                type="private",
                username=user.username,
                first_name=user.first_name,
                last_name=user.last_name,
            )
            chat.members[user.id] = Membership("member")
            chat.members[self.bot_id] = Membership("member")
            self.chats[user.id] = chat
            self.bump()
        return chat

    def chat(self, chat_id: int) -> ChatRec:
        """A known chat; raises ControlError 404 otherwise."""
        found = self.chats.get(chat_id)
        if found is None:
            raise ControlError(404, f"chat {chat_id} not found")
        return found

    def creator_of(self, chat: ChatRec) -> User:
        """The chat's creator; one is generated (silently) if the chat has none."""
        for uid, membership in chat.members.items():
            if membership.status == "creator" and uid in self.users:
                return self.users[uid]
        user = self.add_user({"first_name": "Owner", "username": f"owner_{abs(chat.id)}"})
        self.set_membership(chat, user.id, Membership("creator"))
        return user

    def set_membership(self, chat: ChatRec, user_id: int, membership: Membership) -> None:
        """Every membership change (join, leave, kick, promote, restrict, seeding) goes here.

        A member or a banned user has no pending join request, as in Telegram: one that was
        pending is gone."""
        chat.members[user_id] = membership
        if membership.present or membership.status == "kicked":
            self.join_requests.pop((chat.id, user_id), None)
        self.bump()

    def add_join_request(self, rec: JoinRequestRec) -> None:
        """Store a pending join request (the update, if any, is queued by the caller)."""
        self.join_requests[rec.chat_id, rec.user_id] = rec
        self.bump()

    def take_join_request(self, chat_id: int, user_id: int) -> JoinRequestRec | None:
        """Remove and return the pending join request of ``user_id`` in ``chat_id``, if any."""
        rec = self.join_requests.pop((chat_id, user_id), None)
        if rec is not None:
            self.bump()
        return rec

    def may_write_to_requester(self, user_id: int) -> bool:
        """Whether the bot may message ``user_id`` without a /start: the user asked, less than
        five minutes ago, to join a chat whose join requests the bot receives."""
        now = self.clock.now()
        for rec in self.join_requests.values():
            if rec.user_id != user_id or now - rec.date >= REQUESTER_WRITE_WINDOW:
                continue
            chat = self.chats.get(rec.chat_id)
            if chat is not None and chat.member(self.bot_id).has_right("can_invite_users"):
                return True
        return False

    def store_message(self, chat: ChatRec, rec: MessageRec) -> None:
        """Every new message, from a user or from the bot, goes here."""
        chat.messages[rec.message.message_id] = rec
        self.bump()

    def new_file_id(self, kind: str) -> tuple[str, str]:
        """A fresh (file_id, file_unique_id) pair."""
        n = self.next_file_no
        self.next_file_no += 1
        token = secrets.token_hex(6)
        return f"EMU{kind.upper()}{n:06d}{token}", f"u{n:06d}{token[:6]}"

    # ----- updates ----------------------------------------------------------------------
    def notify(self) -> None:
        """Wake every long-polling getUpdates."""
        self._wakeup.set()
        self._wakeup = asyncio.Event()

    @property
    def wakeup(self) -> asyncio.Event:
        """The event the next :meth:`notify` sets."""
        return self._wakeup

    def queue(self, update_type: str, payload: JSON) -> int:
        """Append an update with the next update_id and wake pollers."""
        update_id = self.next_update_id
        self.next_update_id += 1
        self.updates.append(
            UpdateRec(update_id, update_type, {"update_id": update_id, update_type: payload})
        )
        self.notify()
        self.bump()
        return update_id

    def allows(self, update_type: str) -> bool:
        """Whether the bot's current allowed_updates let this type through."""
        if not self.allowed_updates:
            return update_type not in OPT_IN_UPDATES
        return update_type in self.allowed_updates

    def pending(self) -> list[UpdateRec]:
        """Updates not yet confirmed nor dropped."""
        return [u for u in self.updates if not u.confirmed and not u.dropped]

    def confirm_below(self, offset: int) -> None:
        """Confirm (forget) every update with ``update_id < offset``."""
        for rec in self.updates:
            if rec.update_id < offset and not rec.dropped:
                rec.confirmed = True

    def stats(self) -> JSON:
        """Counts of pending/delivered/confirmed updates."""
        confirmed = [u.update_id for u in self.updates if u.confirmed]
        return {
            "pending": len(self.pending()),
            "delivered": sum(1 for u in self.updates if u.delivered),
            "confirmed": len(confirmed),
            "dropped": sum(1 for u in self.updates if u.dropped),
            "last_confirmed_update_id": max(confirmed) if confirmed else None,
        }

    # ----- calls and faults ---------------------------------------------------------------
    def record_call(self, method: str, params: JSON) -> CallRec:
        """Append a call record (result filled in by the caller)."""
        rec = CallRec(seq=len(self.calls) + 1, method=method, params=params, at=self.clock.now())
        self.calls.append(rec)
        return rec

    def take_fault(self, method: str, chat_id: str | None) -> ApiError | None:
        """Consume the first matching fault, if any."""
        for fault in self.faults:
            if fault.method != method.lower():
                continue
            if fault.chat_id is not None and fault.chat_id != chat_id:
                continue
            fault.times -= 1
            if fault.times <= 0:
                self.faults.remove(fault)
            params = {"retry_after": fault.retry_after} if fault.retry_after else None
            return ApiError(fault.error_code, fault.description, params)
        return None
