"""Bot API method handlers: POST /bot{token}/{method} with Telegram's semantics and errors."""

from __future__ import annotations

import asyncio
import contextlib
import html
import re
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiogram.types import InlineKeyboardMarkup, Message, MessageEntity
from aiohttp import web
from loguru import logger
from pydantic import ValidationError

from ._objects import (
    chat_obj,
    dump,
    photo_sizes,
    strip_reply,
)
from ._params import Params
from ._state import TOKEN_RE, ApiError, ChatRec, MessageRec, World

Handler = Callable[[World, Params], Awaitable[Any]]
HANDLERS: dict[str, Handler] = {}
#: Methods that change nothing a chat viewer sees; every other successful call bumps the
#: world's version (edits, deletes, pins, callback answers, bans, ...).
READS: set[str] = set()

NOT_MODIFIED = (
    "message is not modified: specified new message content and reply markup are exactly "
    "the same as a current content and reply markup of the message"
)
_MARKUP_KEYS = ("inline_keyboard", "keyboard", "remove_keyboard", "force_reply")


def method(name: str, *, reads: bool = False) -> Callable[[Handler], Handler]:
    """Register a handler under the (case-insensitive) Bot API method name; ``reads`` marks
    a method that changes nothing a chat viewer would see."""

    def register(fn: Handler) -> Handler:
        HANDLERS[name.lower()] = fn
        if reads:
            READS.add(name.lower())
        return fn

    return register


def bad(description: str, parameters: dict[str, Any] | None = None) -> ApiError:
    """A 400 Bad Request error."""
    return ApiError(400, f"Bad Request: {description}", parameters)


# ----- helpers ---------------------------------------------------------------------------
def resolve_chat(w: World, p: Params, *, need_member: bool = True) -> ChatRec:
    """Find ``chat_id`` and check the bot may act there (Telegram's 400/403 errors)."""
    raw = p.chat_id()
    chat: ChatRec | None
    if isinstance(raw, str):
        name = raw[1:].lower()
        chat = next((c for c in w.chats.values() if (c.username or "").lower() == name), None)
    else:
        chat = w.chats.get(raw)
        if chat is None and raw in w.users:
            if not w.may_write_to_requester(raw):
                raise ApiError(403, "Forbidden: bot can't initiate conversation with a user")
            chat = w.private_chat(w.users[raw])
    if chat is None:
        raise bad("chat not found")
    if chat.migrated_to is not None:
        raise bad(
            "group chat was upgraded to a supergroup chat",
            {"migrate_to_chat_id": chat.migrated_to},
        )
    if chat.type == "private":
        if chat.id not in w.started and not w.may_write_to_requester(chat.id):
            raise ApiError(403, "Forbidden: bot can't initiate conversation with a user")
        return chat
    bot = chat.member(w.bot_id)
    if need_member and not bot.present:
        kind = "supergroup chat" if chat.type == "supergroup" else "group chat"
        if bot.status == "kicked":
            raise ApiError(403, f"Forbidden: bot was kicked from the {kind}")
        raise ApiError(403, f"Forbidden: bot is not a member of the {kind}")
    return chat


def require_right(w: World, chat: ChatRec, right: str, description: str) -> None:
    """In groups the bot must be an admin with ``right``."""
    if chat.type != "private" and not chat.member(w.bot_id).has_right(right):
        raise bad(description)


def require_pin_right(w: World, chat: ChatRec) -> None:
    require_right(
        w, chat, "can_pin_messages", "not enough rights to manage pinned messages in the chat"
    )


def parse_markup(p: Params) -> dict[str, Any] | None:
    """reply_markup as a dict (any keyboard type), validated."""
    markup = p.json_("reply_markup", error="can't parse reply keyboard markup JSON object")
    if markup is None:
        return None
    if not isinstance(markup, dict) or not any(k in markup for k in _MARKUP_KEYS):
        raise bad("can't parse reply keyboard markup JSON object")
    if "inline_keyboard" in markup:
        try:
            return dump(InlineKeyboardMarkup.model_validate(markup))
        except ValidationError:
            raise bad("can't parse inline keyboard button") from None
    return markup


def inline_markup(markup: dict[str, Any] | None) -> InlineKeyboardMarkup | None:
    """The InlineKeyboardMarkup part of a markup (the only kind a Message carries)."""
    if markup is None or "inline_keyboard" not in markup:
        return None
    return InlineKeyboardMarkup.model_validate(markup)


def parse_entities(p: Params, name: str) -> list[MessageEntity] | None:
    """entities / caption_entities."""
    data = p.json_(name)
    if data is None:
        return None
    try:
        return [MessageEntity.model_validate(e) for e in data]
    except (ValidationError, TypeError):
        raise bad(f"can't parse {name} JSON object") from None


def reply_target(chat: ChatRec, p: Params) -> Message | None:
    """reply_parameters / reply_to_message_id resolved to the replied message."""
    params = p.json_("reply_parameters")
    message_id = p.int_("reply_to_message_id")
    allow_missing = p.bool_("allow_sending_without_reply")
    if isinstance(params, dict):
        if params.get("chat_id") not in (None, chat.id, str(chat.id)):
            raise bad("replies to other chats are not supported by the emulator")
        message_id = params.get("message_id")
        allow_missing = bool(params.get("allow_sending_without_reply", allow_missing))
        if not isinstance(message_id, int):
            raise bad("message to be replied not found")
    elif params is not None:
        raise bad("can't parse reply parameters JSON object")
    if message_id is None:
        return None
    rec = chat.live_message(message_id)
    if rec is None:
        if allow_missing:
            return None
        raise bad("message to be replied not found")
    return strip_reply(rec.message)


def send(w: World, chat: ChatRec, p: Params, kind: str, fields: dict[str, Any]) -> Any:
    """Store a message from the bot and return it serialised."""
    markup = parse_markup(p)
    message = Message(
        message_id=chat.alloc_message_id(),
        date=w.clock.dt(),
        chat=chat_obj(chat),
        from_user=w.bot_user(),
        reply_to_message=reply_target(chat, p),
        reply_markup=inline_markup(markup),
        **fields,
    )
    w.store_message(
        chat,
        MessageRec(
            message=message,
            from_bot=True,
            kind=kind,
            parse_mode=p.str_("parse_mode"),
            reply_markup=markup,
        ),
    )
    return dump(message)


def target_message(w: World, p: Params, action: str) -> tuple[ChatRec, MessageRec]:
    """chat_id + message_id of a live message, or Telegram's 'message to X not found'."""
    if p.present("inline_message_id") and not p.present("chat_id"):
        raise bad("inline messages are not supported by the emulator")
    chat = resolve_chat(w, p)
    message_id = p.int_("message_id", empty="message identifier is not specified")
    assert message_id is not None
    rec = chat.live_message(message_id)
    if rec is None:
        raise bad(f"message to {action} not found")
    return chat, rec


def user_param(w: World, p: Params) -> int:
    """``user_id`` of a known user."""
    user_id = p.int_("user_id", empty="user_id is empty")
    assert user_id is not None
    if user_id != w.bot_id and user_id not in w.users:
        raise bad("user not found")
    return user_id


# ----- identity, updates, webhook ------------------------------------------------------
@method("getMe", reads=True)
async def get_me(w: World, p: Params) -> Any:
    return dump(w.me())


@method("getUpdates", reads=True)
async def get_updates(w: World, p: Params) -> Any:
    if w.webhook_url:
        raise ApiError(
            409,
            "Conflict: can't use getUpdates method while webhook is active; "
            "use deleteWebhook to delete the webhook first",
        )
    offset = p.int_("offset")
    limit = p.int_("limit") or 100
    limit = max(1, min(limit, 100))
    timeout = max(0, p.int_("timeout") or 0)
    allowed = p.json_("allowed_updates")
    if allowed is not None:
        if not isinstance(allowed, list) or not all(isinstance(a, str) for a in allowed):
            raise bad("can't parse allowed updates")
        w.allowed_updates = list(allowed)
    w.poll_generation += 1
    generation = w.poll_generation
    w.notify()
    deadline = time.monotonic() + timeout
    while True:
        if w.poll_generation != generation:
            raise ApiError(
                409,
                "Conflict: terminated by other getUpdates request; "
                "make sure that only one bot instance is running",
            )
        if w.closing:
            return []
        wakeup = w.wakeup
        if offset is not None:
            if offset < 0:
                pending = w.pending()
                for rec in pending[: max(0, len(pending) + offset)]:
                    rec.confirmed = True
            else:
                w.confirm_below(offset)
        for rec in w.pending():
            if not w.allows(rec.type):
                rec.dropped = True
        batch = w.pending()[:limit]
        remaining = deadline - time.monotonic()
        if batch or remaining <= 0:
            for rec in batch:
                rec.delivered = True
            return [rec.payload for rec in batch]
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(wakeup.wait(), remaining)


@method("setWebhook")
async def set_webhook(w: World, p: Params) -> Any:
    url = p.str_("url") or ""
    if url and not url.startswith("https://"):
        raise bad("bad webhook: An HTTPS URL must be provided for webhook")
    w.webhook_url = url
    allowed = p.json_("allowed_updates")
    if isinstance(allowed, list):
        w.allowed_updates = [str(a) for a in allowed]
    if p.bool_("drop_pending_updates"):
        for rec in w.pending():
            rec.dropped = True
    w.poll_generation += 1
    w.notify()
    return True


@method("deleteWebhook")
async def delete_webhook(w: World, p: Params) -> Any:
    w.webhook_url = ""
    if p.bool_("drop_pending_updates"):
        for rec in w.pending():
            rec.dropped = True
    return True


@method("getWebhookInfo", reads=True)
async def get_webhook_info(w: World, p: Params) -> Any:
    info: dict[str, Any] = {
        "url": w.webhook_url,
        "has_custom_certificate": False,
        "pending_update_count": len(w.pending()),
    }
    if w.allowed_updates:
        info["allowed_updates"] = w.allowed_updates
    return info


# ----- messages --------------------------------------------------------------------------
def shown_length(text: str, parse_mode: str | None) -> int:
    """What Telegram's 4096 limit counts: UTF-16 units of the text once its HTML is parsed."""
    if (parse_mode or "").upper() == "HTML":
        text = html.unescape(re.sub(r"<[^>]*>", "", text))
    return len(text.encode("utf-16-le")) // 2


@method("sendMessage")
async def send_message(w: World, p: Params) -> Any:
    chat = resolve_chat(w, p)
    text = p.str_("text", empty="message text is empty")
    assert text is not None
    if not text.strip():
        raise bad("message text is empty")
    if shown_length(text, p.str_("parse_mode")) > 4096:
        raise bad("message is too long")
    return send(w, chat, p, "text", {"text": text, "entities": parse_entities(p, "entities")})


@method("sendPhoto")
async def send_photo(w: World, p: Params) -> Any:
    chat = resolve_chat(w, p)
    upload = p.upload("photo")
    photo = (
        None if upload is not None else p.str_("photo", empty="there is no photo in the request")
    )
    if photo is not None and photo.startswith(("http://", "https://")):
        photo = None
    caption = p.str_("caption")
    if caption is not None and len(caption) > 1024:
        raise bad("message caption is too long")
    fields = {
        "photo": photo_sizes(w, photo),
        "caption": caption,
        "caption_entities": parse_entities(p, "caption_entities"),
    }
    return send(w, chat, p, "photo", fields)


@method("sendChatAction", reads=True)
async def send_chat_action(w: World, p: Params) -> Any:
    resolve_chat(w, p)
    p.str_("action", empty="action is empty")
    return True


def _edit(w: World, p: Params, rec: MessageRec, changes: dict[str, Any], same: bool) -> Any:
    markup = parse_markup(p)
    if same and markup == rec.reply_markup:
        raise bad(NOT_MODIFIED)
    changes["reply_markup"] = inline_markup(markup)
    changes["edit_date"] = w.clock.now()
    rec.message = rec.message.model_copy(update=changes)
    rec.reply_markup = markup
    rec.edit_count += 1
    if p.present("parse_mode") or "text" in changes or "caption" in changes:
        rec.parse_mode = p.str_("parse_mode")
    return dump(rec.message)


@method("editMessageText")
async def edit_message_text(w: World, p: Params) -> Any:
    _, rec = target_message(w, p, "edit")
    if not rec.from_bot:
        raise bad("message can't be edited")
    text = p.str_("text", empty="message text is empty")
    assert text is not None
    if rec.message.text is None:
        raise bad("there is no text in the message to edit")
    if shown_length(text, p.str_("parse_mode")) > 4096:
        raise bad("message is too long")
    entities = parse_entities(p, "entities")
    same = text == rec.message.text and entities == rec.message.entities
    return _edit(w, p, rec, {"text": text, "entities": entities}, same)


@method("editMessageCaption")
async def edit_message_caption(w: World, p: Params) -> Any:
    _, rec = target_message(w, p, "edit")
    if not rec.from_bot:
        raise bad("message can't be edited")
    if rec.message.text is not None:
        raise bad("there is no caption in the message to edit")
    caption = p.str_("caption")
    same = caption == rec.message.caption
    return _edit(w, p, rec, {"caption": caption}, same)


@method("editMessageReplyMarkup")
async def edit_message_reply_markup(w: World, p: Params) -> Any:
    _, rec = target_message(w, p, "edit")
    if not rec.from_bot:
        raise bad("message can't be edited")
    return _edit(w, p, rec, {}, True)


@method("deleteMessage")
async def delete_message(w: World, p: Params) -> Any:
    chat, rec = target_message(w, p, "delete")
    if not rec.from_bot:
        require_right(w, chat, "can_delete_messages", "not enough rights to delete the message")
    rec.deleted = True
    if rec.pinned:
        rec.pinned = False
        chat.pinned = [m for m in chat.pinned if m != rec.message.message_id]
    return True


@method("pinChatMessage")
async def pin_chat_message(w: World, p: Params) -> Any:
    chat, rec = target_message(w, p, "pin")
    require_pin_right(w, chat)
    rec.pinned = True
    mid = rec.message.message_id
    chat.pinned = [m for m in chat.pinned if m != mid] + [mid]
    return True


@method("unpinChatMessage")
async def unpin_chat_message(w: World, p: Params) -> Any:
    chat = resolve_chat(w, p)
    require_pin_right(w, chat)
    message_id = p.int_("message_id")
    if message_id is None:
        if not chat.pinned:
            return True
        message_id = chat.pinned[-1]
    rec = chat.live_message(message_id)
    if rec is None or not rec.pinned:
        raise bad("message to unpin not found")
    rec.pinned = False
    chat.pinned = [m for m in chat.pinned if m != message_id]
    return True


@method("unpinAllChatMessages")
async def unpin_all_chat_messages(w: World, p: Params) -> Any:
    chat = resolve_chat(w, p)
    require_pin_right(w, chat)
    for mid in chat.pinned:
        if mid in chat.messages:
            chat.messages[mid].pinned = False
    chat.pinned = []
    return True


@method("answerCallbackQuery")
async def answer_callback_query(w: World, p: Params) -> Any:
    query_id = p.str_("callback_query_id", empty="query_id is empty")
    assert query_id is not None
    rec = w.callbacks.get(query_id)
    if rec is None or rec.answer is not None:
        raise bad("query is too old and response timeout expired or query ID is invalid")
    text = p.str_("text")
    if text is not None and len(text) > 200:
        raise bad("MESSAGE_TOO_LONG")
    rec.answer = {
        "callback_query_id": query_id,
        "text": text,
        "show_alert": p.bool_("show_alert"),
        "url": p.str_("url"),
        "cache_time": p.int_("cache_time") or 0,
        "at": w.clock.now(),
    }
    return True


# ----- dispatch --------------------------------------------------------------------------
def _rate_limited(name: str) -> bool:
    return name.startswith(("send", "edit")) and name != "sendchataction"


def _response(code: int, body: dict[str, Any]) -> web.Response:
    return web.json_response(body, status=code)


async def handle(w: World, request: web.Request) -> web.Response:
    """Authenticate, decode, apply faults and rate limits, run the handler, log the call."""
    token = request.match_info.get("token", "")
    if not TOKEN_RE.match(token):
        return _response(404, ApiError(404, "Not Found").payload())
    if token != w.token:
        return _response(401, ApiError(401, "Unauthorized").payload())
    name = request.match_info.get("method", "")
    handler = HANDLERS.get(name.lower())
    try:
        params = await Params.from_request(request)
    except ApiError as exc:
        return _response(exc.code, exc.payload())
    call = w.record_call(name, params.decoded())
    try:
        if handler is None:
            raise ApiError(404, "Not Found")
        fault = w.take_fault(name, params.chat_key())
        if fault is not None:
            raise fault
        chat_key: int | None = None
        limited = _rate_limited(name.lower())
        if limited:
            key = params.chat_key()
            chat_key = int(key) if key and key.lstrip("-").isdigit() else None
            retry = w.rate_limiter.retry_after(chat_key)
            if retry is not None:
                raise ApiError(
                    429, f"Too Many Requests: retry after {retry}", {"retry_after": retry}
                )
        result = await handler(w, params)
        if limited:
            w.rate_limiter.hit(chat_key)
        if name.lower() not in READS:
            w.bump()
    except ApiError as exc:
        call.error_code, call.description = exc.code, exc.description
        return _response(exc.code, exc.payload())
    except (ValidationError, ValueError, TypeError) as exc:
        logger.debug("emulator: bad request in {}: {}", name, exc)
        error = bad(str(exc).splitlines()[0] if str(exc) else "invalid parameters")
        call.error_code, call.description = error.code, error.description
        return _response(error.code, error.payload())
    except Exception as exc:
        logger.exception("emulator: internal error in {}", name)
        error = ApiError(500, f"Internal Server Error: {type(exc).__name__}")
        call.error_code, call.description = error.code, error.description
        return _response(error.code, error.payload())
    call.ok = True
    return _response(200, {"ok": True, "result": result})
