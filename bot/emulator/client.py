"""Async client for the emulator's control API (one method per control route)."""

from __future__ import annotations

from typing import Any, Literal

import aiohttp

JSON = dict[str, Any]

BotStatus = Literal["member", "administrator", "left", "kicked"]
MemberStatus = Literal["creator", "administrator", "member", "left", "kicked"]
MessageKind = Literal[
    "text",
    "photo",
    "video",
    "sticker",
    "voice",
    "audio",
    "document",
    "animation",
    "video_note",
    "poll",
    "location",
    "contact",
    "dice",
]


class EmulatorError(Exception):
    """A control API call failed; ``status`` is the HTTP status, ``message`` the error text."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"{status}: {message}")
        self.status = status
        self.message = message


def _drop_none(**kwargs: Any) -> JSON:
    return {k: v for k, v in kwargs.items() if v is not None}


class EmulatorClient:
    """Control-API client. Use as ``async with EmulatorClient(base_url) as c:`` or call close()."""

    def __init__(self, base_url: str, session: aiohttp.ClientSession | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self._session = session
        self._owns_session = session is None

    async def __aenter__(self) -> EmulatorClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def close(self) -> None:
        """Close the underlying HTTP session (if this client created it)."""
        if self._session is not None and self._owns_session:
            await self._session.close()
        self._session = None

    async def _request(
        self,
        method: str,
        path: str,
        body: JSON | None = None,
        params: dict[str, str] | None = None,
    ) -> Any:
        if self._session is None:
            self._session = aiohttp.ClientSession()
            self._owns_session = True
        url = f"{self.base_url}/control/{path}"
        async with self._session.request(method, url, json=body, params=params) as resp:
            data = await resp.json(content_type=None)
            if resp.status >= 400:
                message = data.get("error") if isinstance(data, dict) else None
                raise EmulatorError(resp.status, str(message or data))
            return data

    async def _post(self, path: str, **fields: Any) -> JSON:
        """POST the fields that are set (not None); return the answer."""
        result: JSON = await self._request("POST", path, _drop_none(**fields))
        return result

    # ----- world ----------------------------------------------------------------------------
    async def reset(self) -> None:
        """Empty the world (keeps the token)."""
        await self._request("POST", "reset")

    async def changes(
        self,
        since: int = 0,
        timeout: float = 0,  # noqa: ASYNC109  (the server's long-poll wait, GET /changes)
    ) -> int:
        """The world's version once it is past ``since``, or after ``timeout`` seconds (at most
        30) anyway: wait with the last version seen to hear of the next change."""
        params = {"since": str(since), "timeout": str(timeout)}
        result: JSON = await self._request("GET", "changes", params=params)
        return int(result["version"])

    async def get_bot(self) -> JSON:
        """Bot identity and settings: id, username, first_name, privacy_mode, webhook_url, ..."""
        result: JSON = await self._request("GET", "bot")
        return result

    async def set_bot(
        self,
        *,
        privacy_mode: bool | None = None,
        username: str | None = None,
        first_name: str | None = None,
    ) -> JSON:
        """Change the bot's privacy mode / username / first name."""
        return await self._post(
            "bot", privacy_mode=privacy_mode, username=username, first_name=first_name
        )

    async def now(self) -> int:
        """The emulator clock (unix seconds)."""
        result: JSON = await self._request("GET", "clock")
        return int(result["now"])

    async def set_clock(self, unix_seconds: float) -> int:
        """Freeze the clock at ``unix_seconds``; returns the new now."""
        result: JSON = await self._request("POST", "clock", {"set": unix_seconds})
        return int(result["now"])

    async def advance_clock(self, seconds: float) -> int:
        """Move the clock forward by ``seconds``; returns the new now."""
        result: JSON = await self._request("POST", "clock", {"advance": seconds})
        return int(result["now"])

    async def real_clock(self) -> int:
        """Back to real time; returns now."""
        result: JSON = await self._request("POST", "clock", {"real": True})
        return int(result["now"])

    async def create_user(
        self,
        first_name: str,
        *,
        id: int | None = None,
        last_name: str | None = None,
        username: str | None = None,
        is_bot: bool = False,
        language_code: str | None = None,
    ) -> JSON:
        """Create a user; returns the User JSON (ids auto-assigned from 1000)."""
        return await self._post(
            "users",
            id=id,
            first_name=first_name,
            last_name=last_name,
            username=username,
            language_code=language_code,
            is_bot=is_bot,
        )

    async def list_users(self) -> list[JSON]:
        """All users."""
        result: list[JSON] = await self._request("GET", "users")
        return result

    async def start(self, user_id: int, payload: str | None = None) -> JSON:
        """The user sends /start [payload] in private; returns {message, update_id}."""
        return await self._post(f"users/{user_id}/start", payload=payload)

    async def create_chat(
        self,
        title: str,
        *,
        type: Literal["group", "supergroup"] = "supergroup",
        id: int | None = None,
        username: str | None = None,
    ) -> JSON:
        """Create a group or supergroup; returns the Chat JSON."""
        return await self._post("chats", id=id, type=type, title=title, username=username)

    async def get_chat(self, chat_id: int) -> JSON:
        """Internal state of a chat: chat, members (status, rights, is_member, permissions,
        until_date), migrated_to/from, pinned."""
        result: JSON = await self._request("GET", f"chats/{chat_id}")
        return result

    async def member(self, chat_id: int, user_id: int) -> JSON:
        """A user's membership in force now: {chat_id, user_id, status, is_member (in the chat
        now), rights, permissions, until_date (0: for good)}. A restriction or ban whose
        until_date has passed is over, as in Telegram: status member (or left)."""
        result: JSON = await self._request("GET", f"chats/{chat_id}/members/{user_id}")
        return result

    # ----- chat events ----------------------------------------------------------------------
    async def set_bot_status(
        self,
        chat_id: int,
        status: BotStatus,
        *,
        rights: dict[str, bool] | None = None,
        by: int | None = None,
    ) -> list[int]:
        """Add/promote/remove the bot; emits my_chat_member (+ new_chat_members when added)."""
        result = await self._post(f"chats/{chat_id}/bot", status=status, rights=rights, by=by)
        return list(result["update_ids"])

    async def set_member(
        self,
        chat_id: int,
        user_id: int,
        status: MemberStatus = "member",
        *,
        rights: dict[str, bool] | None = None,
        silent: bool = True,
        by: int | None = None,
    ) -> int | None:
        """Set a membership silently (no update), for seeding pre-existing groups; or, with
        `silent=False`, as a change made by `by` (a promotion): the `chat_member` update's id."""
        result = await self._post(
            f"chats/{chat_id}/members",
            user_id=user_id,
            status=status,
            rights=rights,
            silent=silent,
            by=by,
        )
        update_id = result.get("update_id")
        return None if update_id is None else int(update_id)

    async def join(
        self,
        chat_id: int,
        user_id: int,
        *,
        invite_link: str | None = None,
        by: int | None = None,
        bio: str | None = None,
    ) -> JSON:
        """A user joins (optionally via an invite link or added by ``by``).

        Returns {requested, update_ids, message, join_request}. Through a link made with
        ``creates_join_request`` the user only asks to join, as in Telegram: ``requested`` is
        true, ``message`` None, ``join_request`` the pending request (see
        :meth:`join_requests`; ``bio`` goes into it), and ``update_ids`` holds the
        ``chat_join_request`` update when the bot is an admin with can_invite_users.
        Otherwise ``requested`` is false, ``join_request`` None and ``message`` the
        new_chat_members service message. A banned user is refused (EmulatorError 403) unless
        ``by`` adds them; one unbanned, or whose ban's until_date has passed, may join again.
        A restricted user who left comes back still restricted, as in Telegram.
        """
        return await self._post(
            f"chats/{chat_id}/join", user_id=user_id, invite_link=invite_link, by=by, bio=bio
        )

    async def request_join(self, chat_id: int, user_id: int, *, bio: str | None = None) -> JSON:
        """A user asks to join without a link (a chat that approves new members); returns
        what :meth:`join` returns for a request: {requested: true, update_ids, message: None,
        join_request}. The bot's approval then says ``via_join_request``."""
        return await self._post(f"chats/{chat_id}/join_requests", user_id=user_id, bio=bio)

    async def join_requests(self, chat_id: int) -> list[JSON]:
        """The chat's pending join requests, oldest first: {chat_id, user_id, user_chat_id,
        date, invite_link (in full, or None), bio}."""
        result: list[JSON] = await self._request("GET", f"chats/{chat_id}/join_requests")
        return result

    async def approve_join_request(
        self, chat_id: int, user_id: int, *, by: int | None = None
    ) -> JSON:
        """A human admin ``by`` (default: the creator) approves a pending request, as from a
        Telegram app; returns {update_ids, message} like :meth:`join` (404 if none pending)."""
        return await self._post(f"chats/{chat_id}/join_requests/{user_id}/approve", by=by)

    async def decline_join_request(
        self, chat_id: int, user_id: int, *, by: int | None = None
    ) -> None:
        """A human admin ``by`` (default: the creator) declines a pending request (404 if none
        pending); nothing else changes and the bot hears nothing, as in Telegram."""
        await self._post(f"chats/{chat_id}/join_requests/{user_id}/decline", by=by)

    async def leave(self, chat_id: int, user_id: int) -> JSON:
        """A user leaves; returns {update_ids, message}."""
        return await self._post(f"chats/{chat_id}/leave", user_id=user_id)

    async def kick(self, chat_id: int, user_id: int, *, by: int | None = None) -> JSON:
        """``by`` (default: the creator) kicks a user; returns {update_ids, message}."""
        return await self._post(f"chats/{chat_id}/kick", user_id=user_id, by=by)

    async def send_message(
        self,
        chat_id: int,
        user_id: int | None = None,
        text: str | None = None,
        *,
        kind: MessageKind = "text",
        caption: str | None = None,
        reply_to_message_id: int | None = None,
        forward_from_user_id: int | None = None,
        forward_from_chat_id: int | None = None,
        forward_from_chat_title: str | None = None,
        forward_from_chat_username: str | None = None,
        forward_from_message_id: int | None = None,
        sender_chat_id: int | None = None,
        entities: list[JSON] | None = None,
    ) -> JSON:
        """A user posts a message; returns {message, update_id (None if the bot can't see it)}.

        The text or caption carries the entities Telegram finds in it (mentions, hashtags, bot
        commands, URLs, e-mails; UTF-16 offsets), merged with ``entities`` passed here (a
        ``text_link`` with its hidden ``url``, bold, ...). ``forward_from_user_id`` or
        ``forward_from_chat_id`` (a channel: ``forward_from_chat_title``, default "Channel",
        ``forward_from_chat_username``, ``forward_from_message_id``, default 1) make it a
        forward with that ``forward_origin``. A member who is restricted from sending this
        kind of message is refused: EmulatorError 403 "user … is restricted in chat …: can't
        send messages" (photos, stickers, ...), and nothing is posted."""
        return await self._post(
            f"chats/{chat_id}/messages",
            user_id=user_id,
            kind=kind,
            text=text,
            caption=caption,
            reply_to_message_id=reply_to_message_id,
            forward_from_user_id=forward_from_user_id,
            forward_from_chat_id=forward_from_chat_id,
            forward_from_chat_title=forward_from_chat_title,
            forward_from_chat_username=forward_from_chat_username,
            forward_from_message_id=forward_from_message_id,
            sender_chat_id=sender_chat_id,
            entities=entities,
        )

    async def edit_message(
        self,
        chat_id: int,
        message_id: int,
        text: str | None = None,
        *,
        caption: str | None = None,
        entities: list[JSON] | None = None,
    ) -> JSON:
        """The author of a user's message edits its text (or its caption, "" to remove it);
        returns {message, update_id}: the ``edited_message`` update, None if the bot can't see
        it. A restricted member may still edit; "message is not modified" (400) when nothing
        changes."""
        return await self._post(
            f"chats/{chat_id}/messages/{message_id}/edit",
            text=text,
            caption=caption,
            entities=entities,
        )

    async def messages(self, chat_id: int) -> list[JSON]:
        """The chat's messages as its members see them now, oldest first (deleted ones are
        gone): the rows of :meth:`sent` plus from_bot, user_id, sender_chat_id, entities and
        edit_date."""
        result: list[JSON] = await self._request("GET", f"chats/{chat_id}/messages")
        return result

    async def press(self, chat_id: int, user_id: int, message_id: int, data: str) -> JSON:
        """A user presses an inline button; returns {callback_query_id, update_id}."""
        return await self._post(
            f"chats/{chat_id}/press", user_id=user_id, message_id=message_id, data=data
        )

    async def migrate(self, chat_id: int, *, by: int | None = None) -> JSON:
        """Upgrade a group to a supergroup; returns {new_chat_id, update_ids}."""
        return await self._post(f"chats/{chat_id}/migrate", by=by)

    async def create_invite_link(
        self,
        chat_id: int,
        *,
        name: str | None = None,
        by: int | None = None,
        member_limit: int | None = None,
        expire_date: int | None = None,
        creates_join_request: bool = False,
    ) -> JSON:
        """An invite link created by a human admin (default: the creator); ChatInviteLink JSON
        with the full link. The bot sees such a link masked (``masked_invite_link``), as
        Telegram shows a bot links other administrators made."""
        return await self._post(
            f"chats/{chat_id}/invite_links",
            name=name,
            by=by,
            member_limit=member_limit,
            expire_date=expire_date,
            creates_join_request=creates_join_request,
        )

    async def callback_answer(self, callback_query_id: str) -> JSON | None:
        """The bot's answerCallbackQuery for a press, or None if not answered (yet)."""
        try:
            result: JSON = await self._request("GET", f"callback_answers/{callback_query_id}")
        except EmulatorError as exc:
            if exc.status == 404:
                return None
            raise
        return result

    # ----- inspection -----------------------------------------------------------------------
    async def calls(
        self, *, method: str | None = None, chat_id: int | None = None, since: int | None = None
    ) -> list[JSON]:
        """Bot API calls the bot made: {seq, method, params, ok, error_code?, description?, at}."""
        params = {
            k: str(v)
            for k, v in {"method": method, "chat_id": chat_id, "since": since}.items()
            if v is not None
        }
        result: list[JSON] = await self._request("GET", "calls", params=params)
        return result

    async def sent(self, chat_id: int | None = None) -> list[JSON]:
        """Messages the bot sent, in their current state (text, reply_markup, pinned, ...)."""
        params = {"chat_id": str(chat_id)} if chat_id is not None else None
        result: list[JSON] = await self._request("GET", "sent", params=params)
        return result

    async def updates(self) -> list[JSON]:
        """Every update produced: {update_id, type, update, delivered, confirmed, dropped}."""
        result: list[JSON] = await self._request("GET", "updates")
        return result

    async def stats(self) -> JSON:
        """{pending, delivered, confirmed, dropped, last_confirmed_update_id}."""
        result: JSON = await self._request("GET", "stats")
        return result

    async def add_fault(
        self,
        method: str,
        error_code: int,
        description: str,
        *,
        retry_after: int | None = None,
        times: int = 1,
        chat_id: int | None = None,
    ) -> None:
        """Make the next ``times`` calls of ``method`` (optionally in ``chat_id``) fail."""
        await self._post(
            "faults",
            method=method,
            error_code=error_code,
            description=description,
            retry_after=retry_after,
            times=times,
            chat_id=chat_id,
        )

    async def clear_faults(self) -> None:
        """Remove every injected fault."""
        await self._request("DELETE", "faults")

    async def set_rate_limits(self, enabled: bool) -> None:
        """Switch Telegram-like flood limits on or off (off by default)."""
        await self._request("POST", "rate_limits", {"enabled": enabled})
