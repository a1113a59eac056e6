"""Snapshots of the emulated world as versioned JSON, so an emulator can carry on after a restart.

Format 1 is one JSON object::

    {"format": 1, "version": V,
     "bot": {token, username, first_name, privacy_mode, webhook_url, allowed_updates, commands},
     "users": [User], "started": [user id],
     "chats": [{id, type, title, username, first_name, last_name, next_message_id, pinned,
                migrated_to, migrated_from, chat_instance,
                "members": [{user_id, status, rights, permissions, until_date, is_member}],
                "messages": [{message: Message, from_bot, kind, parse_mode, reply_markup,
                              deleted, pinned, edit_count}]}],
     "updates": [{update_id, type, payload, delivered, confirmed, dropped}], "next_update_id",
     "invites": [InviteRec], "join_requests": [JoinRequestRec],
     "callbacks": [CallbackRec], "calls": [CallRec], "faults": [FaultRec],
     "rate_limits": bool,
     "counters": {file, user, group, supergroup},
     "clock": {frozen, offset}}

Users and messages are the Bot API's own JSON (what ``getUpdates`` would carry); the other
records are their dataclass fields. Fields a record does not know are ignored and fields it
lacks take their defaults, so a snapshot outlives small changes of the records.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any, TypeVar

from aiogram.types import Message, User

from ._state import (
    JSON,
    TOKEN_RE,
    CallbackRec,
    CallRec,
    ChatRec,
    FaultRec,
    InviteRec,
    JoinRequestRec,
    Membership,
    MessageRec,
    RateLimiter,
    UpdateRec,
    World,
)

FORMAT = 1

Rec = TypeVar("Rec")


def _dump(obj: User | Message) -> JSON:
    return obj.model_dump(mode="json", exclude_none=True, by_alias=True)


def _fields(rec: Any, *skip: str) -> JSON:
    return {f.name: getattr(rec, f.name) for f in dataclasses.fields(rec) if f.name not in skip}


def _chat_json(chat: ChatRec) -> JSON:
    data = _fields(chat, "members", "messages")
    data["members"] = [{"user_id": uid, **_fields(m)} for uid, m in chat.members.items()]
    data["messages"] = [
        {"message": _dump(rec.message), **_fields(rec, "message")} for rec in chat.messages.values()
    ]
    return data


def snapshot(world: World) -> bytes:
    """Everything needed to carry on: the bot, users, chats, updates, records, counters, clock."""
    data: JSON = {
        "format": FORMAT,
        "version": world.version,
        "bot": {
            "token": world.token,
            "username": world.bot_username,
            "first_name": world.bot_first_name,
            "privacy_mode": world.privacy_mode,
            "webhook_url": world.webhook_url,
            "allowed_updates": world.allowed_updates,
            "commands": world.commands,
        },
        "users": [_dump(u) for u in world.users.values()],
        "started": sorted(world.started),
        "chats": [_chat_json(c) for c in world.chats.values()],
        "updates": [_fields(u) for u in world.updates],
        "next_update_id": world.next_update_id,
        "invites": [_fields(i) for i in world.invites.values()],
        "join_requests": [_fields(r) for r in world.join_requests.values()],
        "callbacks": [_fields(c) for c in world.callbacks.values()],
        "calls": [_fields(c) for c in world.calls],
        "faults": [_fields(f) for f in world.faults],
        "rate_limits": world.rate_limiter.enabled,
        "counters": {
            "file": world.next_file_no,
            "user": world.next_user_id,
            "group": world.next_group_seq,
            "supergroup": world.next_supergroup_seq,
        },
        "clock": {"frozen": world.clock.frozen, "offset": world.clock.offset},
    }
    return json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode()


def _record(cls: type[Rec], data: Any) -> Rec:
    """A dataclass record from its fields (unknown keys ignored, missing ones defaulted)."""
    if not isinstance(data, dict):
        raise TypeError(f"a {cls.__name__} must be an object, not {type(data).__name__}")
    known = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    return cls(**{k: v for k, v in data.items() if k in known})


def _chat(data: Any) -> ChatRec:
    chat = _record(ChatRec, {k: v for k, v in data.items() if k not in ("members", "messages")})
    for row in data["members"]:
        chat.members[int(row["user_id"])] = _record(Membership, row)
    for row in data["messages"]:
        rec = _record(MessageRec, {**row, "message": Message.model_validate(row["message"])})
        chat.messages[rec.message.message_id] = rec
    return chat


def _token(bot: Any) -> str:
    token = bot["token"]
    if not isinstance(token, str) or TOKEN_RE.match(token) is None:
        raise ValueError(f"malformed bot token: {token!r}")
    return token


def _parse(data: Any) -> JSON:
    """World attributes from format 1 (raises KeyError/TypeError/ValueError when damaged)."""
    bot, counters, clock = data["bot"], data["counters"], data["clock"]
    token = _token(bot)
    users = [User.model_validate(u) for u in data["users"]]
    chats = [_chat(c) for c in data["chats"]]
    rate_limiter = RateLimiter()
    rate_limiter.enabled = bool(data.get("rate_limits", False))
    return {
        "version": int(data["version"]),
        "token": token,
        "bot_id": int(token.split(":", 1)[0]),
        "bot_username": str(bot["username"]),
        "bot_first_name": str(bot["first_name"]),
        "privacy_mode": bool(bot["privacy_mode"]),
        "webhook_url": str(bot.get("webhook_url") or ""),
        "allowed_updates": bot.get("allowed_updates"),
        "commands": dict(bot.get("commands") or {}),
        "users": {u.id: u for u in users},
        "started": {int(uid) for uid in data["started"]},
        "chats": {c.id: c for c in chats},
        "updates": [_record(UpdateRec, u) for u in data["updates"]],
        "next_update_id": int(data["next_update_id"]),
        "invites": {i.link: i for i in (_record(InviteRec, r) for r in data["invites"])},
        "join_requests": {
            (r.chat_id, r.user_id): r
            for r in (_record(JoinRequestRec, j) for j in data.get("join_requests", []))
        },
        "callbacks": {c.id: c for c in (_record(CallbackRec, r) for r in data["callbacks"])},
        "calls": [_record(CallRec, c) for c in data.get("calls", [])],
        "faults": [_record(FaultRec, f) for f in data.get("faults", [])],
        "rate_limiter": rate_limiter,
        "next_file_no": int(counters["file"]),
        "next_user_id": int(counters["user"]),
        "next_group_seq": int(counters["group"]),
        "next_supergroup_seq": int(counters["supergroup"]),
        "clock": (
            None if clock["frozen"] is None else float(clock["frozen"]),
            float(clock["offset"]),
        ),
    }


def load(raw: bytes) -> JSON:
    """Read a snapshot into World attributes; a clear ValueError if it can't be used."""
    try:
        data = json.loads(raw)
    except ValueError as exc:  # also UnicodeDecodeError
        raise ValueError(f"emulator snapshot is not valid JSON: {exc}") from exc
    if not isinstance(data, dict) or "format" not in data:
        raise ValueError("emulator snapshot has no format version (not an emulator snapshot?)")
    if data["format"] != FORMAT:
        raise ValueError(
            f"emulator snapshot format {data['format']!r} is not supported "
            f"(this emulator reads format {FORMAT})"
        )
    try:
        return _parse(data)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise ValueError(
            f"emulator snapshot (format {FORMAT}) is damaged: {type(exc).__name__}: {exc}"
        ) from exc


def _apply(world: World, attrs: JSON) -> None:
    frozen, offset = attrs.pop("clock")
    saved_version = attrs.pop("version")
    for name, value in attrs.items():
        setattr(world, name, value)
    world.clock.frozen, world.clock.offset = frozen, offset
    world.version = max(world.version, saved_version)
    world.poll_generation += 1
    world.notify()
    world.bump()


def restore(world: World, raw: bytes) -> None:
    """Replace ``world``'s state by the snapshot's (nothing changes if it can't be read).

    The version goes on from the larger of the two, so viewers of this world see a change."""
    _apply(world, load(raw))


def world_from(raw: bytes) -> World:
    """A new world in the snapshot's state (with its token and bot identity)."""
    attrs = load(raw)
    world = World(attrs["token"], attrs["bot_username"], attrs["bot_first_name"])
    _apply(world, attrs)
    return world
