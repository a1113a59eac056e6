"""Control API (/control/...): drive the emulated world and inspect what the bot did."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from loguru import logger
from pydantic import ValidationError

from . import _events as events
from . import _joinrequests as join_requests
from . import _posts as posts
from ._moderation import in_force, member_now
from ._objects import chat_obj, dump, invite_obj, new_invite_link
from ._state import (
    JSON,
    ChatRec,
    ControlError,
    FaultRec,
    InviteRec,
    JoinRequestRec,
    Membership,
    World,
)

RouteHandler = Callable[[web.Request], Awaitable[web.StreamResponse]]

#: The longest a GET /control/changes waits, whatever timeout it asks for.
MAX_CHANGES_WAIT = 30.0


def _json(data: Any, status: int = 200) -> web.Response:
    return web.json_response(data, status=status)


async def _body(request: web.Request) -> JSON:
    if not request.can_read_body:
        return {}
    text = await request.text()
    if not text.strip():
        return {}
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise ControlError(400, f"invalid JSON body: {exc}") from exc
    if not isinstance(data, dict):
        raise ControlError(400, "JSON body must be an object")
    return data


def _path_int(request: web.Request, name: str) -> int:
    try:
        return int(request.match_info[name])
    except ValueError:
        raise ControlError(400, f"{name} must be an integer") from None


def _query_int(request: web.Request, name: str) -> int | None:
    value = request.query.get(name)
    if value is None or value == "":
        return None
    try:
        return int(value)
    except ValueError:
        raise ControlError(400, f"{name} must be an integer") from None


@web.middleware
async def control_errors(request: web.Request, handler: RouteHandler) -> web.StreamResponse:
    """Render every control error as JSON ``{"error": ...}``; never a traceback page."""
    if not request.path.startswith("/control/"):
        return await handler(request)
    try:
        return await handler(request)
    except ControlError as exc:
        return _json({"error": exc.message}, exc.status)
    except web.HTTPException as exc:
        return _json({"error": exc.reason}, exc.status)
    except (ValidationError, ValueError, TypeError, KeyError) as exc:
        return _json({"error": f"bad request: {exc}"}, 400)
    except Exception as exc:
        logger.exception("emulator: control error on {}", request.path)
        return _json({"error": f"internal error: {type(exc).__name__}: {exc}"}, 500)


def _sent_json(chat: ChatRec, mid: int) -> JSON:
    rec = chat.messages[mid]
    message = rec.message
    return {
        "chat_id": chat.id,
        "message_id": mid,
        "kind": rec.kind,
        "text": message.text,
        "caption": message.caption,
        "reply_markup": rec.reply_markup,
        "parse_mode": rec.parse_mode,
        "reply_to_message_id": (
            message.reply_to_message.message_id if message.reply_to_message else None
        ),
        "pinned": rec.pinned,
        "deleted": rec.deleted,
        "date": int(message.date.timestamp()),
        "edit_count": rec.edit_count,
    }


def _message_json(chat: ChatRec, mid: int) -> JSON:
    """A message as the chat shows it, whoever wrote it: what the bot's ``sent`` rows say,
    plus its author and entities."""
    message = chat.messages[mid].message
    data = _sent_json(chat, mid)
    data["from_bot"] = chat.messages[mid].from_bot
    data["user_id"] = message.from_user.id if message.from_user else None
    data["sender_chat_id"] = message.sender_chat.id if message.sender_chat else None
    data["entities"] = [dump(e) for e in message.entities or message.caption_entities or []]
    data["edit_date"] = message.edit_date
    return data


def _member_json(chat_id: int, user_id: int, membership: Membership) -> JSON:
    """A membership as the control API shows it (the one in force: a restriction or ban whose
    until_date has passed is over)."""
    return {
        "chat_id": chat_id,
        "user_id": user_id,
        "status": membership.status,
        "is_member": membership.present,
        "rights": membership.rights,
        "permissions": membership.permissions,
        "until_date": membership.until_date,
    }


def _join_request_json(rec: JoinRequestRec) -> JSON:
    """A pending join request as the control API shows it (the link in full)."""
    return {
        "chat_id": rec.chat_id,
        "user_id": rec.user_id,
        "user_chat_id": rec.user_id,
        "date": rec.date,
        "invite_link": rec.invite_link,
        "bio": rec.bio,
    }


def _join_json(outcome: events.JoinOutcome) -> JSON:
    return {
        "requested": outcome.request is not None,
        "update_ids": outcome.update_ids,
        "message": None if outcome.message is None else dump(outcome.message),
        "join_request": None if outcome.request is None else _join_request_json(outcome.request),
    }


class ControlApi:
    """Route handlers bound to one :class:`World`."""

    def __init__(self, world: World) -> None:
        self.w = world

    def routes(self) -> list[web.RouteDef]:
        """All control routes."""
        c = "/control"
        chat = c + "/chats/{chat_id}"
        return [
            web.post(c + "/reset", self.reset),
            web.get(c + "/changes", self.changes),
            web.get(c + "/bot", self.get_bot),
            web.post(c + "/bot", self.set_bot),
            web.get(c + "/clock", self.get_clock),
            web.post(c + "/clock", self.set_clock),
            web.get(c + "/users", self.list_users),
            web.post(c + "/users", self.add_user),
            web.post(c + "/users/{user_id}/start", self.start),
            web.post(c + "/chats", self.add_chat),
            web.get(chat, self.get_chat),
            web.post(chat + "/bot", self.set_bot_status),
            web.post(chat + "/members", self.set_member),
            web.get(chat + "/members/{user_id}", self.get_member),
            web.post(chat + "/join", self.join),
            web.get(chat + "/join_requests", self.join_requests),
            web.post(chat + "/join_requests", self.request_join),
            web.post(chat + "/join_requests/{user_id}/approve", self.approve_join_request),
            web.post(chat + "/join_requests/{user_id}/decline", self.decline_join_request),
            web.post(chat + "/leave", self.leave),
            web.post(chat + "/kick", self.kick),
            web.get(chat + "/messages", self.messages),
            web.post(chat + "/messages", self.message),
            web.post(chat + "/messages/{message_id}/edit", self.edit_message),
            web.post(chat + "/press", self.press),
            web.post(chat + "/migrate", self.migrate),
            web.post(chat + "/invite_links", self.invite_link),
            web.get(c + "/callback_answers/{query_id}", self.callback_answer),
            web.get(c + "/calls", self.calls),
            web.get(c + "/sent", self.sent),
            web.get(c + "/updates", self.updates),
            web.get(c + "/stats", self.stats),
            web.post(c + "/faults", self.add_fault),
            web.delete(c + "/faults", self.clear_faults),
            web.post(c + "/rate_limits", self.rate_limits),
        ]

    # ----- world --------------------------------------------------------------------------
    async def reset(self, request: web.Request) -> web.Response:
        self.w.reset()
        return _json({"ok": True})

    async def changes(self, request: web.Request) -> web.Response:
        since = _query_int(request, "since") or 0
        try:
            timeout = float(request.query.get("timeout") or 0)
        except ValueError:
            raise ControlError(400, "timeout must be a number") from None
        timeout = min(max(timeout, 0.0), MAX_CHANGES_WAIT)
        return _json({"version": await self.w.changed(since, timeout)})

    def _bot_json(self) -> JSON:
        return {
            "id": self.w.bot_id,
            "username": self.w.bot_username,
            "first_name": self.w.bot_first_name,
            "privacy_mode": self.w.privacy_mode,
            "webhook_url": self.w.webhook_url,
            "allowed_updates": self.w.allowed_updates,
            "commands": self.w.commands,
        }

    async def get_bot(self, request: web.Request) -> web.Response:
        return _json(self._bot_json())

    async def set_bot(self, request: web.Request) -> web.Response:
        data = await _body(request)
        if "privacy_mode" in data:
            self.w.privacy_mode = bool(data["privacy_mode"])
        if "username" in data:
            self.w.bot_username = str(data["username"])
        if "first_name" in data:
            self.w.bot_first_name = str(data["first_name"])
        self.w.bump()
        return _json(self._bot_json())

    async def get_clock(self, request: web.Request) -> web.Response:
        return _json({"now": self.w.clock.now(), "frozen": self.w.clock.frozen is not None})

    async def set_clock(self, request: web.Request) -> web.Response:
        data = await _body(request)
        if data.get("real"):
            self.w.clock.real()
        elif "set" in data:
            if not isinstance(data["set"], int | float):
                raise ControlError(400, "set must be a number")
            self.w.clock.set(float(data["set"]))
        elif "advance" in data:
            if not isinstance(data["advance"], int | float):
                raise ControlError(400, "advance must be a number")
            self.w.clock.advance(float(data["advance"]))
        else:
            raise ControlError(400, "expected one of set, advance, real")
        return await self.get_clock(request)

    async def list_users(self, request: web.Request) -> web.Response:
        return _json([dump(u) for u in self.w.users.values()])

    async def add_user(self, request: web.Request) -> web.Response:
        return _json(dump(self.w.add_user(await _body(request))))

    async def start(self, request: web.Request) -> web.Response:
        data = await _body(request)
        message, update_id = posts.start(self.w, _path_int(request, "user_id"), data.get("payload"))
        return _json({"message": dump(message), "update_id": update_id})

    async def add_chat(self, request: web.Request) -> web.Response:
        return _json(dump(chat_obj(self.w.add_chat(await _body(request)))))

    async def get_chat(self, request: web.Request) -> web.Response:
        chat = self.w.chat(_path_int(request, "chat_id"))
        now = self.w.clock.now()
        members = {}
        for uid, stored in chat.members.items():
            m = in_force(stored, now)
            members[str(uid)] = {
                "status": m.status,
                "rights": m.rights,
                "is_member": m.is_member,
                "permissions": m.permissions,
                "until_date": m.until_date,
            }
        return _json(
            {
                "chat": dump(chat_obj(chat)),
                "members": members,
                "migrated_to": chat.migrated_to,
                "migrated_from": chat.migrated_from,
                "pinned": chat.pinned,
            }
        )

    # ----- chat events --------------------------------------------------------------------
    async def set_bot_status(self, request: web.Request) -> web.Response:
        data = await _body(request)
        ids = events.set_bot_status(self.w, _path_int(request, "chat_id"), data)
        return _json({"update_ids": ids})

    async def set_member(self, request: web.Request) -> web.Response:
        data = await _body(request)
        update_id = events.set_member(self.w, _path_int(request, "chat_id"), data)
        return _json({"ok": True, "update_id": update_id})

    async def join(self, request: web.Request) -> web.Response:
        data = await _body(request)
        return _json(_join_json(events.join(self.w, _path_int(request, "chat_id"), data)))

    async def join_requests(self, request: web.Request) -> web.Response:
        chat = self.w.chat(_path_int(request, "chat_id"))
        pending = [r for r in self.w.join_requests.values() if r.chat_id == chat.id]
        return _json([_join_request_json(r) for r in pending])

    async def request_join(self, request: web.Request) -> web.Response:
        data = await _body(request)
        return _json(_join_json(events.request_join(self.w, _path_int(request, "chat_id"), data)))

    async def approve_join_request(self, request: web.Request) -> web.Response:
        return await self._decide(request, approved=True)

    async def decline_join_request(self, request: web.Request) -> web.Response:
        return await self._decide(request, approved=False)

    async def _decide(self, request: web.Request, *, approved: bool) -> web.Response:
        data = await _body(request)
        chat_id, user_id = _path_int(request, "chat_id"), _path_int(request, "user_id")
        ids, message = join_requests.decide(self.w, chat_id, user_id, data, approved=approved)
        return _json({"update_ids": ids, "message": None if message is None else dump(message)})

    async def leave(self, request: web.Request) -> web.Response:
        data = await _body(request)
        ids, message = events.leave(self.w, _path_int(request, "chat_id"), data, kick=False)
        return _json({"update_ids": ids, "message": dump(message)})

    async def kick(self, request: web.Request) -> web.Response:
        data = await _body(request)
        ids, message = events.leave(self.w, _path_int(request, "chat_id"), data, kick=True)
        return _json({"update_ids": ids, "message": dump(message)})

    async def get_member(self, request: web.Request) -> web.Response:
        chat = self.w.chat(_path_int(request, "chat_id"))
        user_id = _path_int(request, "user_id")
        self.w.user(user_id)
        return _json(_member_json(chat.id, user_id, member_now(self.w, chat, user_id)))

    async def messages(self, request: web.Request) -> web.Response:
        chat = self.w.chat(_path_int(request, "chat_id"))
        live = [mid for mid, rec in chat.messages.items() if not rec.deleted]
        return _json([_message_json(chat, mid) for mid in live])

    async def message(self, request: web.Request) -> web.Response:
        data = await _body(request)
        message, update_id = posts.user_message(self.w, _path_int(request, "chat_id"), data)
        return _json({"message": dump(message), "update_id": update_id})

    async def edit_message(self, request: web.Request) -> web.Response:
        data = await _body(request)
        chat_id, message_id = _path_int(request, "chat_id"), _path_int(request, "message_id")
        message, update_id = posts.edit_message(self.w, chat_id, message_id, data)
        return _json({"message": dump(message), "update_id": update_id})

    async def press(self, request: web.Request) -> web.Response:
        data = await _body(request)
        query_id, update_id = events.press(self.w, _path_int(request, "chat_id"), data)
        return _json({"callback_query_id": query_id, "update_id": update_id})

    async def migrate(self, request: web.Request) -> web.Response:
        data = await _body(request)
        new_id, ids = events.migrate(self.w, _path_int(request, "chat_id"), data)
        return _json({"new_chat_id": new_id, "update_ids": ids})

    async def invite_link(self, request: web.Request) -> web.Response:
        data = await _body(request)
        chat = self.w.chat(_path_int(request, "chat_id"))
        if chat.type == "private":
            raise ControlError(400, "private chats have no invite links")
        creator = self.w.creator_of(chat) if data.get("by") is None else self.w.user(data["by"])
        creates_join_request = bool(data.get("creates_join_request", False))
        if creates_join_request and data.get("member_limit") is not None:
            raise ControlError(400, "a link that asks for approval has no member limit")
        invite = InviteRec(
            link=new_invite_link(),
            chat_id=chat.id,
            creator_id=creator.id,
            name=data.get("name"),
            member_limit=data.get("member_limit"),
            expire_date=data.get("expire_date"),
            creates_join_request=creates_join_request,
        )
        # Its creator sees the link in full; validates before storing.
        result = dump(invite_obj(invite, creator, viewer_id=creator.id))
        self.w.invites[invite.link] = invite
        return _json(result)

    async def callback_answer(self, request: web.Request) -> web.Response:
        rec = self.w.callbacks.get(request.match_info["query_id"])
        if rec is None:
            raise ControlError(404, "callback query not found")
        if rec.answer is None:
            raise ControlError(404, "callback query not answered yet")
        return _json(rec.answer)

    # ----- inspection ---------------------------------------------------------------------
    async def calls(self, request: web.Request) -> web.Response:
        method = (request.query.get("method") or "").lower()
        chat_id = request.query.get("chat_id")
        since = _query_int(request, "since") or 0
        out = [
            c.as_json()
            for c in self.w.calls
            if c.seq > since
            and (not method or c.method.lower() == method)
            and (chat_id is None or str(c.params.get("chat_id")) == chat_id)
        ]
        return _json(out)

    async def sent(self, request: web.Request) -> web.Response:
        chat_id = _query_int(request, "chat_id")
        out: list[JSON] = []
        for chat in self.w.chats.values():
            if chat_id is not None and chat.id != chat_id:
                continue
            out.extend(_sent_json(chat, mid) for mid, rec in chat.messages.items() if rec.from_bot)
        return _json(out)

    async def updates(self, request: web.Request) -> web.Response:
        return _json([u.as_json() for u in self.w.updates])

    async def stats(self, request: web.Request) -> web.Response:
        return _json(self.w.stats())

    async def add_fault(self, request: web.Request) -> web.Response:
        data = await _body(request)
        method = data.get("method")
        code = data.get("error_code")
        description = data.get("description")
        if not isinstance(method, str) or not isinstance(code, int):
            raise ControlError(400, "method (string) and error_code (int) are required")
        if not isinstance(description, str):
            raise ControlError(400, "description (string) is required")
        times = data.get("times", 1)
        retry_after = data.get("retry_after")
        if not isinstance(times, int) or times < 1:
            raise ControlError(400, "times must be a positive integer")
        if retry_after is not None and not isinstance(retry_after, int):
            raise ControlError(400, "retry_after must be an integer")
        chat_id = data.get("chat_id")
        self.w.faults.append(
            FaultRec(
                method=method.lower(),
                error_code=code,
                description=description,
                times=times,
                retry_after=retry_after,
                chat_id=None if chat_id is None else str(chat_id),
            )
        )
        return _json({"ok": True, "faults": len(self.w.faults)})

    async def clear_faults(self, request: web.Request) -> web.Response:
        self.w.faults.clear()
        return _json({"ok": True})

    async def rate_limits(self, request: web.Request) -> web.Response:
        data = await _body(request)
        enabled = data.get("enabled")
        if not isinstance(enabled, bool):
            raise ControlError(400, "enabled must be a boolean")
        self.w.rate_limiter.enabled = enabled
        return _json({"enabled": enabled})
