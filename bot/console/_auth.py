"""Signing in to the console through Telegram: one-time links, signed session cookies, API tokens.

No passwords. A person proves who they are by asking the bot for a link in a private chat
(`/console`), or the person running the server prints one (`tidepool console link USER_ID`).
A link is valid for `LINK_MINUTES` and opens one session; only its hash is stored. The session
cookie carries the session's id and an HMAC of it keyed by the bot token (as Telegram's Login
Widget signs with the token's hash), so every worker of one bot can check it, and a changed
token signs everyone out. Sessions end after `SESSION_DAYS` or at sign-out. Scripts use an
owner's API token instead (`Authorization: Bearer …`).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Protocol

from sqlalchemy import insert, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.db import CONSOLE_LINKS, CONSOLE_SESSIONS, CONSOLE_TOKENS, writing

LINK_MINUTES = 10
SESSION_DAYS = 7
COOKIE = "tidepool_console"


class LinkRefused(StrEnum):
    """Why a sign-in link does not open a session."""

    UNKNOWN = "unknown"
    EXPIRED = "expired"
    USED = "used"


class Refused(Exception):
    def __init__(self, why: LinkRefused) -> None:
        super().__init__(why.value)
        self.why = why


@dataclass(frozen=True)
class Session:
    """A signed-in browser, as stored."""

    id: str
    user_id: int
    name: str
    csrf: str
    expires_at: datetime
    groups: frozenset[int] | None  # None: an owner, who sees every group
    checked_at: datetime


class Now(Protocol):
    """What the sign-in store needs of a clock (the bot's, or the sandbox's shifted one)."""

    def now(self) -> datetime: ...


def digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class SignIn:
    """Links, sessions and tokens in the database; `clock` says when now is."""

    def __init__(self, db: AsyncEngine, clock: Now, bot_token: str) -> None:
        self.db = db
        self.clock = clock
        self._key = hashlib.sha256(b"tidepool console\0" + bot_token.encode()).digest()

    # ----- links ------------------------------------------------------------------------------
    async def issue_link(self, user_id: int) -> str:
        """A new one-time sign-in token for `user_id` (what goes after /signin/ in the link)."""
        token = secrets.token_urlsafe(24)
        now = self.clock.now()
        async with writing(self.db) as conn:
            await conn.execute(
                insert(CONSOLE_LINKS).values(
                    token_hash=digest(token),
                    user_id=user_id,
                    created_at=now,
                    expires_at=now + timedelta(minutes=LINK_MINUTES),
                )
            )
        return token

    async def redeem(self, token: str) -> int:
        """The user a link was issued to, marking it used; `Refused` when it cannot be used."""
        now = self.clock.now()
        key = digest(token)
        async with writing(self.db) as conn:
            row = (
                await conn.execute(select(CONSOLE_LINKS).where(CONSOLE_LINKS.c.token_hash == key))
            ).first()
            if row is None:
                raise Refused(LinkRefused.UNKNOWN)
            if row.used_at is not None:
                raise Refused(LinkRefused.USED)
            if row.expires_at <= now:
                raise Refused(LinkRefused.EXPIRED)
            done = await conn.execute(
                update(CONSOLE_LINKS)
                .where(CONSOLE_LINKS.c.token_hash == key, CONSOLE_LINKS.c.used_at.is_(None))
                .values(used_at=now)
            )
            if done.rowcount != 1:  # another worker took it in between
                raise Refused(LinkRefused.USED)
        return int(row.user_id)

    # ----- sessions ---------------------------------------------------------------------------
    async def open_session(self, user_id: int, name: str, groups: frozenset[int] | None) -> Session:
        now = self.clock.now()
        session = Session(
            id=secrets.token_urlsafe(24),
            user_id=user_id,
            name=name,
            csrf=secrets.token_urlsafe(24),
            expires_at=now + timedelta(days=SESSION_DAYS),
            groups=groups,
            checked_at=now,
        )
        async with writing(self.db) as conn:
            await conn.execute(
                insert(CONSOLE_SESSIONS).values(
                    id=session.id,
                    user_id=user_id,
                    name=name,
                    created_at=now,
                    expires_at=session.expires_at,
                    csrf=session.csrf,
                    groups=None if groups is None else sorted(groups),
                    checked_at=now,
                )
            )
        return session

    def cookie(self, session_id: str) -> str:
        """The cookie's value: the session's id and its signature."""
        return f"{session_id}.{self._sign(session_id)}"

    def session_id(self, cookie: str) -> str | None:
        """The session id a cookie carries, if its signature holds."""
        session_id, _, signature = cookie.rpartition(".")
        if not session_id or not hmac.compare_digest(signature, self._sign(session_id)):
            return None
        return session_id

    async def session(self, session_id: str) -> Session | None:
        """The session, while it has neither ended nor expired."""
        async with self.db.connect() as conn:
            row = (
                await conn.execute(
                    select(CONSOLE_SESSIONS).where(CONSOLE_SESSIONS.c.id == session_id)
                )
            ).first()
        if row is None or row.ended_at is not None or row.expires_at <= self.clock.now():
            return None
        return Session(
            id=row.id,
            user_id=int(row.user_id),
            name=row.name,
            csrf=row.csrf,
            expires_at=row.expires_at,
            groups=None if row.groups is None else frozenset(int(g) for g in row.groups),
            checked_at=row.checked_at,
        )

    async def recheck(self, session_id: str, groups: frozenset[int] | None) -> None:
        """What Telegram says now of the groups the session's admin may see."""
        async with writing(self.db) as conn:
            await conn.execute(
                update(CONSOLE_SESSIONS)
                .where(CONSOLE_SESSIONS.c.id == session_id)
                .values(
                    groups=None if groups is None else sorted(groups), checked_at=self.clock.now()
                )
            )

    async def end(self, session_id: str) -> None:
        async with writing(self.db) as conn:
            await conn.execute(
                update(CONSOLE_SESSIONS)
                .where(CONSOLE_SESSIONS.c.id == session_id, CONSOLE_SESSIONS.c.ended_at.is_(None))
                .values(ended_at=self.clock.now())
            )

    # ----- API tokens -------------------------------------------------------------------------
    async def issue_token(self, user_id: int, label: str) -> str:
        token = "tp_" + secrets.token_urlsafe(32)
        async with writing(self.db) as conn:
            await conn.execute(
                insert(CONSOLE_TOKENS).values(
                    token_hash=digest(token),
                    user_id=user_id,
                    label=label,
                    created_at=self.clock.now(),
                )
            )
        return token

    async def token_user(self, token: str) -> int | None:
        """Whose API token this is, unless revoked."""
        async with self.db.connect() as conn:
            row = (
                await conn.execute(
                    select(CONSOLE_TOKENS.c.user_id).where(
                        CONSOLE_TOKENS.c.token_hash == digest(token),
                        CONSOLE_TOKENS.c.revoked_at.is_(None),
                    )
                )
            ).first()
        return None if row is None else int(row.user_id)

    async def revoke_tokens(self, user_id: int) -> int:
        async with writing(self.db) as conn:
            done = await conn.execute(
                update(CONSOLE_TOKENS)
                .where(CONSOLE_TOKENS.c.user_id == user_id, CONSOLE_TOKENS.c.revoked_at.is_(None))
                .values(revoked_at=self.clock.now())
            )
        return int(done.rowcount)

    def _sign(self, value: str) -> str:
        return hmac.new(self._key, value.encode(), hashlib.sha256).hexdigest()
