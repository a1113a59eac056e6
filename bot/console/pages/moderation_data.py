"""The moderation page's data: a group's mode, its figures over the last 30 days (what /stats
and /moderation show: `Analytics.moderation`), and a page of its moderation log, each action
with the member, who acted, why, how it ended and, for a deletion by the first-message
checks, their verdicts, the deleted text and whether admins may still decide on it.

Times are kept as stored (UTC); `as_dict` gives them as ISO text in the group's time zone, the
clock the page shows them by.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, tzinfo
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.db import MODERATION_ACTIONS, MODERATION_GROUPS, MODERATION_VERDICTS, people
from bot.moderation.checks import Judgement
from bot.moderation.service import Moderation
from bot.moderation.store import Action
from bot.stats.service import Analytics, ModerationFigures

PER_PAGE = 50
STATES = ("done", "dry", "failed", "undone")
ACTORS = ("sop", "checks", "admin")  # `by` is sop:<id>, checks or admin:<user id>


def state_of(action: Action) -> str:
    """How an action ended, as /modlog says it: undone by an admin, recorded in dry mode,
    failed, or done."""
    if action.undone_at is not None:
        return "undone"
    if action.dry:
        return "dry"
    return "done" if action.ok else "failed"


def actor_of(by: str) -> tuple[str, str | None]:
    """(kind, id) of an action's `by`: ("sop", "flood"), ("checks", None), ("admin", "42")."""
    kind, _, who = by.partition(":")
    return kind, who or None


def reviewable(action: Action) -> bool:
    """A deletion the first-message checks made and carried out: what admins are asked to
    confirm with "Not spam" or "Ban" (a dry run's or a failed one never reached them)."""
    return (
        action.action == "delete"
        and action.by == "checks"
        and action.ok
        and not action.dry
        and action.user_id is not None
    )


@dataclass(frozen=True, slots=True)
class LogRow:
    """One action of the log as the page lists it."""

    action: Action
    member: str | None  # the member's name; None for an action on no member
    member_known: bool  # the bot knows them in the group (their member page exists)
    actor: str  # sop | checks | admin (or what else `by` names)
    actor_id: str | None  # the SOP's id or the admin's user id
    actor_name: str | None  # the admin's name
    undone_by: str | None  # the name of the admin who undid it
    state: str
    judgement: Judgement | None  # the checks' verdicts on the deleted message
    decidable: bool  # "Not spam" and "Ban" apply: reviewable, not undone, not banned since


@dataclass(slots=True)
class Overview:
    """Everything the moderation page shows of one group."""

    chat_id: int
    zone: tzinfo
    figures: ModerationFigures
    mode_changed_at: datetime | None
    mode_changed_by: int | None
    mode_changed_by_name: str | None
    rows: list[LogRow]
    total: int
    page: int
    pages: int

    @property
    def mode(self) -> str:
        return self.figures.mode

    def local(self, at: datetime | None) -> str | None:
        """A moment as ISO text in the group's time zone."""
        return None if at is None else at.astimezone(self.zone).isoformat()

    def row_dict(self, row: LogRow) -> dict[str, Any]:
        a = row.action
        judgement = row.judgement
        return {
            "id": a.id,
            "at": self.local(a.at),
            "action": a.action,
            "user_id": a.user_id,
            "member": row.member,
            "by": a.by,
            "by_kind": row.actor,
            "by_id": row.actor_id,
            "by_name": row.actor_name,
            "reason": a.reason,
            "check": a.check,
            "state": row.state,
            "error": a.error,
            "until": self.local(a.until),
            "message_id": a.message_id,
            "text": a.text,
            "undone_at": self.local(a.undone_at),
            "undone_by": a.undone_by,
            "undone_by_name": row.undone_by,
            "verdicts": None
            if judgement is None
            else [
                {"check": v.check, "spam": v.spam, "detail": v.detail} for v in judgement.verdicts
            ],
            "known_good": None if judgement is None else judgement.known_good,
            "decidable": row.decidable,
        }

    def as_dict(self) -> dict[str, Any]:
        return {
            "chat_id": self.chat_id,
            "timezone": str(self.zone),
            "mode": self.mode,
            "mode_changed_at": self.local(self.mode_changed_at),
            "mode_changed_by": self.mode_changed_by,
            "mode_changed_by_name": self.mode_changed_by_name,
            "figures": self.figures.as_json(),
            "actions": [self.row_dict(row) for row in self.rows],
            "total": self.total,
            "page": self.page,
            "pages": self.pages,
            "per_page": PER_PAGE,
        }


async def overview(
    moderation: Moderation, analytics: Analytics, chat_id: int, page: int = 1
) -> Overview:
    """The group's mode, its 30-day figures and page `page` of its log (the newest first;
    a page past the last shows the last)."""
    engine = moderation.store.engine
    figures = await analytics.moderation(chat_id)
    log = MODERATION_ACTIONS.c
    async with engine.connect() as conn:
        total = int(
            (await conn.execute(select(func.count()).where(log.chat_id == chat_id))).scalar_one()
        )
        changed = (
            await conn.execute(
                select(MODERATION_GROUPS.c.changed_at, MODERATION_GROUPS.c.changed_by).where(
                    MODERATION_GROUPS.c.chat_id == chat_id
                )
            )
        ).first()
    pages = max(1, -(-total // PER_PAGE))
    page = min(page, pages)
    actions = await moderation.store.latest(chat_id, PER_PAGE, (page - 1) * PER_PAGE)
    changed_at, changed_by = (changed[0], changed[1]) if changed is not None else (None, None)
    people = {action.user_id for action in actions if action.user_id is not None}
    for action in actions:
        for by in (action.by, action.undone_by or ""):
            kind, who = actor_of(by)
            if kind == "admin" and who is not None and who.lstrip("-").isdigit():
                people.add(int(who))
    if changed_by is not None:
        people.add(int(changed_by))
    names = await member_names(engine, chat_id, people)
    judgements = await _judgements(engine, [action.id for action in actions if reviewable(action)])
    banned = await _banned_since(engine, chat_id, actions)
    rows = [_row(action, names, judgements, banned) for action in actions]
    return Overview(
        chat_id=chat_id,
        zone=moderation.zones(chat_id),
        figures=figures,
        mode_changed_at=changed_at,
        mode_changed_by=None if changed_by is None else int(changed_by),
        mode_changed_by_name=None if changed_by is None else _name(names, int(changed_by)),
        rows=rows,
        total=total,
        page=page,
        pages=pages,
    )


def _name(names: dict[int, str], user_id: int) -> str:
    return names.get(user_id, str(user_id))


def _admin_name(names: dict[int, str], by: str | None) -> str | None:
    kind, who = actor_of(by or "")
    if kind != "admin" or who is None or not who.lstrip("-").isdigit():
        return None
    return _name(names, int(who))


def _row(
    action: Action,
    names: dict[int, str],
    judgements: dict[int, Judgement],
    banned: dict[int, list[int]],
) -> LogRow:
    kind, who = actor_of(action.by)
    state = state_of(action)
    later_bans = banned.get(action.user_id or 0, [])
    decidable = (
        reviewable(action)
        and state == "done"
        and not any(ban_id > action.id for ban_id in later_bans)
    )
    return LogRow(
        action=action,
        member=None if action.user_id is None else _name(names, action.user_id),
        member_known=action.user_id is not None and action.user_id in names,
        actor=kind,
        actor_id=who,
        actor_name=_admin_name(names, action.by),
        undone_by=_admin_name(names, action.undone_by),
        state=state,
        judgement=judgements.get(action.id),
        decidable=decidable,
    )


async def member_names(
    engine: AsyncEngine, chat_id: int, user_ids: Iterable[int]
) -> dict[int, str]:
    """The names the group knows of these people (members, or once members)."""
    async with engine.connect() as conn:
        return await people.names(conn, chat_id, set(user_ids))


async def _judgements(engine: AsyncEngine, action_ids: list[int]) -> dict[int, Judgement]:
    """The checks' verdicts behind these actions (by action id; the latest when several)."""
    if not action_ids:
        return {}
    v = MODERATION_VERDICTS.c
    async with engine.connect() as conn:
        rows = await conn.execute(
            select(v.action_id, v.judgement).where(v.action_id.in_(action_ids)).order_by(v.id)
        )
        return {int(action_id): Judgement.from_json(data or {}) for action_id, data in rows}


async def _banned_since(
    engine: AsyncEngine, chat_id: int, actions: list[Action]
) -> dict[int, list[int]]:
    """The admins' bans of the members of reviewable actions, by member: a ban after the
    deletion decided it (as `Review.decide` sees it)."""
    members = sorted({a.user_id for a in actions if reviewable(a) and a.user_id is not None})
    if not members:
        return {}
    a = MODERATION_ACTIONS.c
    async with engine.connect() as conn:
        rows = await conn.execute(
            select(a.user_id, a.id).where(
                a.chat_id == chat_id,
                a.user_id.in_(members),
                a.action == "ban",
                a.by.like("admin:%"),
                a.ok.is_(True),
            )
        )
        found: dict[int, list[int]] = {}
        for user_id, action_id in rows:
            found.setdefault(int(user_id), []).append(int(action_id))
        return found
