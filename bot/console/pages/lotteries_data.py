"""The lotteries pages' data: the lotteries of the viewer's groups, one lottery's entrants and
picks, its verification (`LotteryStore.verify`, as `tidepool lottery verify`) and its audit
trail (`bot.lottery.audit`, as `tidepool export lotteries`).

An open lottery's seed is its secret until the draw: it is never in what these return (the
commitment is public from the start), as in the audit trail.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, and_, func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.console.pages.members_data import safe_cell
from bot.db import LOTTERIES, LOTTERY_ENTRIES, LOTTERY_PICKS, MEMBERS, LotteryStatus, PickOutcome
from bot.db.people import name_of
from bot.lottery import audit
from bot.lottery.rules import Refusal
from bot.lottery.store import Lottery, LotteryStore, Verification

PER_PAGE = 50
ENTRANTS_SHOWN = 1000
STATUSES = tuple(status.value for status in LotteryStatus)


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


@dataclass(frozen=True, slots=True)
class Listed:
    rows: list[dict[str, Any]]
    total: int
    page: int
    pages: int


async def listing(
    db: AsyncEngine,
    chat_ids: Sequence[int],
    *,
    status: str | None = None,
    page: int = 1,
    per_page: int = PER_PAGE,
) -> Listed:
    """A page of the lotteries of `chat_ids` (of one `status`), the newest first, each with
    its current winners' count."""
    if not chat_ids:
        return Listed([], 0, 1, 1)
    conditions: list[ColumnElement[bool]] = [LOTTERIES.c.chat_id.in_(list(chat_ids))]
    if status is not None:
        conditions.append(LOTTERIES.c.status == status)
    columns = [column for column in LOTTERIES.c if column.name not in ("seed", "rules")]
    async with db.connect() as conn:
        total = int((await conn.execute(select(func.count()).where(*conditions))).scalar_one())
        pages = max(1, -(-total // per_page))
        page = min(page, pages)
        rows = [
            dict(row)
            for row in (
                await conn.execute(
                    select(*columns)
                    .where(*conditions)
                    .order_by(LOTTERIES.c.id.desc())
                    .limit(per_page)
                    .offset((page - 1) * per_page)
                )
            ).mappings()
        ]
        won: dict[int, int] = {}
        if rows:
            won = {
                int(lottery_id): int(count)
                for lottery_id, count in await conn.execute(
                    select(LOTTERY_PICKS.c.lottery_id, func.count())
                    .where(
                        LOTTERY_PICKS.c.lottery_id.in_([row["id"] for row in rows]),
                        LOTTERY_PICKS.c.outcome == PickOutcome.WON.value,
                    )
                    .group_by(LOTTERY_PICKS.c.lottery_id)
                )
            }
    listed = [
        {
            "id": int(row["id"]),
            "chat_id": int(row["chat_id"]),
            "prize": row["prize"],
            "status": row["status"],
            "winners": int(row["winners"]),
            "won": won.get(int(row["id"]), 0),
            "entry_count": int(row["entry_count"]),
            "entry_cost": int(row["entry_cost"]),
            "entrants": row["entrants"],
            "source": row["source"],
            "created_at": row["created_at"],
            "draws_at": row["draws_at"],
            "drawn_at": row["drawn_at"],
        }
        for row in rows
    ]
    return Listed(listed, total, page, pages)


def plain(row: dict[str, Any]) -> dict[str, Any]:
    """A row with its times as ISO text (for JSON)."""
    return {
        key: _iso(value) if isinstance(value, datetime) else value for key, value in row.items()
    }


def lottery_dict(lottery: Lottery) -> dict[str, Any]:
    """What the console shows of a lottery: everything but the seed until it is drawn."""
    return {
        "id": lottery.id,
        "chat_id": lottery.chat_id,
        "prize": lottery.prize,
        "winners": lottery.winners,
        "status": lottery.status.value,
        "rules": lottery.rules.model_dump(mode="json", exclude_defaults=True),
        "entry_count": lottery.entry_count,
        "claim": lottery.claim,
        "seed": lottery.seed if lottery.status == LotteryStatus.DRAWN else None,
        "commitment": lottery.commitment,
        "source": lottery.source,
        "created_by": lottery.created_by,
        "created_at": lottery.created_at,
        "draws_at": lottery.draws_at,
        "drawn_at": lottery.drawn_at,
        "entrants": lottery.entrants,
        "entrants_digest": lottery.entrants_digest,
        "announced_at": lottery.announced_at,
    }


@dataclass(slots=True)
class Detail:
    lottery: Lottery
    entrants: list[dict[str, Any]]  # the first ENTRANTS_SHOWN, in the order they entered
    picks: list[dict[str, Any]]  # every pick of the draw, in order
    verification: dict[str, Any] | None  # None: not drawn (open or cancelled)

    def as_dict(self) -> dict[str, Any]:
        return {
            "lottery": plain(lottery_dict(self.lottery)),
            "entrants": [plain(row) for row in self.entrants],
            "entrants_shown": len(self.entrants),
            "picks": [plain(row) for row in self.picks],
            "verification": self.verification,
        }


def verification_dict(found: Verification | Refusal) -> dict[str, Any] | None:
    """`LotteryStore.verify`'s answer: each check and whether it held, and the verdict."""
    if isinstance(found, Refusal):
        return None
    return {
        "ok": found.ok,
        "checks": [{"check": name, "held": held} for name, held in found.checks],
        "entrants": len(found.entrants),
        "winners": found.winners,
    }


async def detail(db: AsyncEngine, store: LotteryStore, lottery_id: int) -> Detail | None:
    """A lottery with its entrants, its picks and, once drawn, its verification."""
    lottery = await store.get(lottery_id)
    if lottery is None:
        return None
    member = and_(
        MEMBERS.c.chat_id == lottery.chat_id, MEMBERS.c.user_id == LOTTERY_ENTRIES.c.user_id
    )
    async with db.connect() as conn:
        entrants = [
            {
                "user_id": int(row.user_id),
                "name": name_of(row.first_name, row.last_name, row.username, int(row.user_id)),
                "username": row.username,
                "entered_at": row.entered_at,
                "cost": int(row.cost),
                "in_draw": row.in_draw,
                "out_reason": row.out_reason,
            }
            for row in await conn.execute(
                select(
                    LOTTERY_ENTRIES,
                    MEMBERS.c.first_name,
                    MEMBERS.c.last_name,
                    MEMBERS.c.username,
                )
                .select_from(LOTTERY_ENTRIES.outerjoin(MEMBERS, member))
                .where(LOTTERY_ENTRIES.c.lottery_id == lottery_id)
                .order_by(LOTTERY_ENTRIES.c.entered_at, LOTTERY_ENTRIES.c.user_id)
                .limit(ENTRANTS_SHOWN)
            )
        ]
        picked = await store.picks(lottery_id)
        names: dict[int, str] = {}
        if picked:
            for row in await conn.execute(
                select(
                    MEMBERS.c.user_id, MEMBERS.c.first_name, MEMBERS.c.last_name, MEMBERS.c.username
                ).where(
                    MEMBERS.c.chat_id == lottery.chat_id,
                    MEMBERS.c.user_id.in_(sorted({p.user_id for p in picked})),
                )
            ):
                names[int(row.user_id)] = name_of(
                    row.first_name, row.last_name, row.username, int(row.user_id)
                )
    picks = [
        {
            "pick": pick.pick,
            "user_id": pick.user_id,
            "name": names.get(pick.user_id, str(pick.user_id)),
            "outcome": pick.outcome.value,
            "reason": pick.reason,
            "at": pick.at,
            "by": pick.by,
            "replaces": pick.replaces,
        }
        for pick in picked
    ]
    verified = None
    if lottery.status == LotteryStatus.DRAWN:
        verified = verification_dict(await store.verify(lottery_id))
    return Detail(lottery, entrants, picks, verified)


def _cell(value: Any) -> Any:
    if isinstance(value, dict | list):
        value = json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str)
    return safe_cell(value)


async def audit_csv(db: AsyncEngine, lottery: Lottery) -> str:
    """The lottery's audit trail (bot.lottery.audit) as CSV with a header row."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(audit.COLUMNS)
    async for row in audit.audit_rows(db, group=lottery.chat_id, since=lottery.created_at):
        if row["lottery_id"] == lottery.id:
            writer.writerow([_cell(row[column]) for column in audit.COLUMNS])
    return out.getvalue()
