"""What moderation keeps in the database: groups' modes, newcomers' approval, the moderation
log, the checks' verdicts and the not-spam samples. Plain reads and writes; no Telegram."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import and_, bindparam, func, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.db import (
    MODERATION_ACTIONS,
    MODERATION_GROUPS,
    MODERATION_MEMBERS,
    MODERATION_SAMPLES,
    MODERATION_VERDICTS,
)
from bot.db.engine import insert_for

# What an admin may undo, and what undoing it is called in the log.
UNDOABLE = ("restrict", "mute", "ban", "delete", "kick", "warn")


@dataclass(frozen=True, slots=True)
class Action:
    """A row of the moderation log."""

    id: int
    chat_id: int
    user_id: int | None
    action: str
    by: str
    reason: str
    check: str | None
    message_id: int | None
    text: str | None
    until: datetime | None
    dry: bool
    ok: bool
    error: str | None
    at: datetime
    undone_at: datetime | None
    undone_by: str | None

    @classmethod
    def of(cls, row: Any) -> Action:
        return cls(**{name: getattr(row, name) for name in cls.__slots__})


@dataclass(frozen=True, slots=True)
class Honesty:
    """A group's automatic actions over a period and the share admins undid."""

    actions: int  # done, not dry (SOPs' and the checks')
    undone: int
    dry: int  # recorded in dry mode

    @property
    def false_positive_rate(self) -> float | None:
        return self.undone / self.actions if self.actions else None


class ModerationStore:
    """Reads and writes the moderation tables."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    # -- modes --------------------------------------------------------------------------------

    async def modes(self) -> dict[int, str]:
        async with self.engine.connect() as conn:
            rows = await conn.execute(select(MODERATION_GROUPS.c.chat_id, MODERATION_GROUPS.c.mode))
            return {chat_id: mode for chat_id, mode in rows}

    async def set_mode(self, chat_id: int, mode: str, by: int | None, now: datetime) -> None:
        values = {"mode": mode, "changed_at": now, "changed_by": by}
        await self._group(chat_id, values)

    async def _group(self, chat_id: int, values: dict[str, Any]) -> None:
        async with self.engine.begin() as conn:
            stmt = insert_for(conn, MODERATION_GROUPS).values(chat_id=chat_id, **values)
            await conn.execute(stmt.on_conflict_do_update(index_elements=["chat_id"], set_=values))

    async def group_marks(self, chat_id: int) -> tuple[datetime | None, datetime | None]:
        """(last dry summary, when the admins were told of missing rights)."""
        async with self.engine.connect() as conn:
            row = (
                await conn.execute(
                    select(
                        MODERATION_GROUPS.c.summary_at, MODERATION_GROUPS.c.rights_told_at
                    ).where(MODERATION_GROUPS.c.chat_id == chat_id)
                )
            ).first()
        return (row[0], row[1]) if row is not None else (None, None)

    async def mark_summary(self, chat_id: int, at: datetime) -> None:
        await self._group(chat_id, {"summary_at": at})

    async def mark_rights_told(self, chat_id: int, at: datetime | None) -> None:
        await self._group(chat_id, {"rights_told_at": at})

    # -- newcomers ----------------------------------------------------------------------------

    async def pending(self) -> dict[tuple[int, int], int]:
        """Newcomers not approved yet, with how many messages of theirs passed so far."""
        m = MODERATION_MEMBERS.c
        async with self.engine.connect() as conn:
            rows = await conn.execute(
                select(m.chat_id, m.user_id, m.checked).where(m.approved_at.is_(None))
            )
            return {(chat_id, user_id): checked for chat_id, user_id, checked in rows}

    async def joined(self, chat_id: int, user_id: int, now: datetime) -> int | None:
        """A member joined: a newcomer to check unless approved before. How many of their
        messages passed so far; None when approved."""
        m = MODERATION_MEMBERS.c
        async with self.engine.begin() as conn:
            stmt = insert_for(conn, MODERATION_MEMBERS).values(
                chat_id=chat_id, user_id=user_id, joined_at=now, checked=0
            )
            await conn.execute(stmt.on_conflict_do_nothing())
            approved_at, checked = (
                await conn.execute(
                    select(m.approved_at, m.checked).where(
                        m.chat_id == chat_id, m.user_id == user_id
                    )
                )
            ).one()
        return int(checked) if approved_at is None else None

    async def approve(self, chat_id: int, user_id: int, by: str, now: datetime) -> None:
        async with self.engine.begin() as conn:
            values = {"approved_at": now, "approved_by": by}
            stmt = insert_for(conn, MODERATION_MEMBERS).values(
                chat_id=chat_id, user_id=user_id, checked=0, **values
            )
            await conn.execute(
                stmt.on_conflict_do_update(index_elements=["chat_id", "user_id"], set_=values)
            )

    async def passed(
        self, verdicts: list[dict[str, Any]], checked: dict[tuple[int, int], int]
    ) -> None:
        """Write verdicts of messages that passed, and newcomers' counts of them, at once."""
        m = MODERATION_MEMBERS.c
        async with self.engine.begin() as conn:
            if verdicts:
                await conn.execute(MODERATION_VERDICTS.insert(), verdicts)
            if checked:
                await conn.execute(
                    update(MODERATION_MEMBERS)
                    .where(
                        m.chat_id == bindparam("c"),
                        m.user_id == bindparam("u"),
                        m.approved_at.is_(None),
                    )
                    .values(checked=bindparam("n")),
                    [{"c": c, "u": u, "n": n} for (c, u), n in checked.items()],
                )

    async def approved_among(self, chat_id: int, user_ids: Iterable[int]) -> set[int]:
        """Those of `user_ids` with an approval row (the migration approved earlier members)."""
        m = MODERATION_MEMBERS.c
        wanted = list(user_ids)
        if not wanted:
            return set()
        async with self.engine.connect() as conn:
            rows = await conn.execute(
                select(m.user_id).where(
                    m.chat_id == chat_id, m.user_id.in_(wanted), m.approved_at.is_not(None)
                )
            )
            return {user_id for (user_id,) in rows}

    # -- the log ------------------------------------------------------------------------------

    async def record(self, **values: Any) -> int:
        """Write one action to the log; its id."""
        values.setdefault("reason", "")
        values.setdefault("dry", False)
        values.setdefault("ok", True)
        async with self.engine.begin() as conn:
            result = await conn.execute(
                MODERATION_ACTIONS.insert().values(**values).returning(MODERATION_ACTIONS.c.id)
            )
            return int(result.scalar_one())

    async def action(self, action_id: int) -> Action | None:
        async with self.engine.connect() as conn:
            row = (
                await conn.execute(
                    select(MODERATION_ACTIONS).where(MODERATION_ACTIONS.c.id == action_id)
                )
            ).first()
        return Action.of(row) if row is not None else None

    async def undo(self, action_ids: Iterable[int], by: str, now: datetime) -> int:
        """Mark actions undone by an admin (once); how many were not undone before."""
        a = MODERATION_ACTIONS.c
        ids = list(action_ids)
        if not ids:
            return 0
        async with self.engine.begin() as conn:
            result = await conn.execute(
                update(MODERATION_ACTIONS)
                .where(a.id.in_(ids), a.undone_at.is_(None))
                .values(undone_at=now, undone_by=by)
            )
            return result.rowcount or 0

    async def standing(
        self, chat_id: int, user_id: int, actions: Iterable[str], *, by: str | None = None
    ) -> list[Action]:
        """The member's actions of these kinds (by `by` only, when given) that were done and
        not undone, newest first (what "Not spam" or /unban undoes)."""
        a = MODERATION_ACTIONS.c
        whose = [a.by == by] if by is not None else []
        async with self.engine.connect() as conn:
            rows = await conn.execute(
                select(MODERATION_ACTIONS)
                .where(
                    a.chat_id == chat_id,
                    a.user_id == user_id,
                    a.action.in_(list(actions)),
                    a.ok.is_(True),
                    a.dry.is_(False),
                    a.undone_at.is_(None),
                    *whose,
                )
                .order_by(a.id.desc())
            )
            return [Action.of(row) for row in rows]

    async def warnings(self, chat_id: int, user_id: int, since: datetime) -> int:
        a = MODERATION_ACTIONS.c
        async with self.engine.connect() as conn:
            count = await conn.execute(
                select(func.count()).where(
                    a.chat_id == chat_id,
                    a.user_id == user_id,
                    a.action == "warn",
                    a.ok.is_(True),
                    a.dry.is_(False),
                    a.undone_at.is_(None),
                    a.at >= since,
                )
            )
            return int(count.scalar_one())

    async def latest(self, chat_id: int, limit: int = 10, offset: int = 0) -> list[Action]:
        a = MODERATION_ACTIONS.c
        async with self.engine.connect() as conn:
            rows = await conn.execute(
                select(MODERATION_ACTIONS)
                .where(a.chat_id == chat_id)
                .order_by(a.id.desc())
                .limit(limit)
                .offset(offset)
            )
            return [Action.of(row) for row in rows]

    async def between(self, chat_id: int, start: datetime, end: datetime) -> list[Action]:
        a = MODERATION_ACTIONS.c
        async with self.engine.connect() as conn:
            rows = await conn.execute(
                select(MODERATION_ACTIONS)
                .where(a.chat_id == chat_id, a.at >= start, a.at < end)
                .order_by(a.id)
            )
            return [Action.of(row) for row in rows]

    async def honesty(self, chat_ids: Iterable[int], since: datetime) -> dict[int, Honesty]:
        """Per group since `since`: automatic actions done, how many admins undid, dry ones.
        Admins' own actions are not counted: only what the bot decided."""
        a = MODERATION_ACTIONS.c
        wanted = list(chat_ids)
        automatic = and_(a.by.not_like("admin:%"), a.ok.is_(True), a.action.in_(UNDOABLE))
        counted = and_(automatic, a.dry.is_(False))
        stmt = (
            select(
                a.chat_id,
                func.count().filter(counted),
                func.count().filter(and_(counted, a.undone_at.is_not(None))),
                func.count().filter(and_(automatic, a.dry.is_(True))),
            )
            .where(a.chat_id.in_(wanted), a.at >= since)
            .group_by(a.chat_id)
        )
        async with self.engine.connect() as conn:
            rows = await conn.execute(stmt)
            found = {chat_id: Honesty(done, undone, dry) for chat_id, done, undone, dry in rows}
        return {chat_id: found.get(chat_id, Honesty(0, 0, 0)) for chat_id in wanted}

    # -- verdicts and samples -----------------------------------------------------------------

    async def verdict(self, **values: Any) -> int:
        async with self.engine.begin() as conn:
            result = await conn.execute(
                MODERATION_VERDICTS.insert().values(**values).returning(MODERATION_VERDICTS.c.id)
            )
            return int(result.scalar_one())

    async def samples(self, kind: str = "not_spam") -> list[str]:
        s = MODERATION_SAMPLES.c
        async with self.engine.connect() as conn:
            rows = await conn.execute(select(s.text).where(s.kind == kind).order_by(s.id))
            return [text for (text,) in rows]

    async def add_sample(
        self, text: str, kind: str, chat_id: int | None, by: int | None, now: datetime
    ) -> None:
        async with self.engine.begin() as conn:
            await conn.execute(
                MODERATION_SAMPLES.insert().values(
                    text=text, kind=kind, chat_id=chat_id, added_by=by, at=now
                )
            )
