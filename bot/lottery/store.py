"""The lottery records: opening, admitting entries, the draw, rerolls, cancelling, verifying.

Every change is one write transaction that first locks the lottery's row (PostgreSQL) or holds
the bot's write turn (SQLite), so entries racing the cap, a draw racing a cancel, or two draws
after a restart cannot both pass: a lottery is drawn exactly once, and a draw that was cut
short by a restart left nothing behind and simply happens again, with the same result (the
draw is a function of the stored seed and entries, see bot.lottery.draw).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.engine import RowMapping
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from bot import points
from bot.db import (
    LOTTERIES,
    LOTTERY_ENTRIES,
    LOTTERY_PICKS,
    MEMBERS,
    PRESENT,
    LotteryStatus,
    PickOutcome,
    writing,
)
from bot.lottery import draw as drawing
from bot.lottery.rules import Refusal, recent_winners
from bot.sop.facts import chunks
from bot.sop.format import LotteryRules

LEFT_GROUP = "left the group"
WON_SINCE = "won another lottery of the group since entering"


@dataclass(frozen=True, slots=True)
class Lottery:
    """A lottery as stored."""

    id: int
    chat_id: int
    prize: str
    winners: int
    status: LotteryStatus
    rules: LotteryRules
    entry_count: int
    claim: str
    seed: str
    commitment: str
    source: str
    created_by: int | None
    created_at: datetime
    draws_at: datetime
    message_id: int | None
    drawn_at: datetime | None
    entrants: int | None
    entrants_digest: str | None
    announced_at: datetime | None
    announcement_id: int | None

    @classmethod
    def of(cls, row: RowMapping) -> Lottery:
        rules = LotteryRules.model_validate(row["rules"] or {})
        return cls(
            id=row["id"],
            chat_id=row["chat_id"],
            prize=row["prize"],
            winners=row["winners"],
            status=LotteryStatus(row["status"]),
            rules=rules,
            entry_count=row["entry_count"],
            claim=row["claim"],
            seed=row["seed"],
            commitment=row["commitment"],
            source=row["source"],
            created_by=row["created_by"],
            created_at=row["created_at"],
            draws_at=row["draws_at"],
            message_id=row["message_id"],
            drawn_at=row["drawn_at"],
            entrants=row["entrants"],
            entrants_digest=row["entrants_digest"],
            announced_at=row["announced_at"],
            announcement_id=row["announcement_id"],
        )


@dataclass(frozen=True, slots=True)
class Pick:
    """One pick of a draw (see bot.db.LotteryPick)."""

    pick: int
    user_id: int
    outcome: PickOutcome
    reason: str | None
    at: datetime
    by: int | None
    replaces: int | None


@dataclass(frozen=True, slots=True)
class Entered:
    """A member's new entry, and the lottery's entry count after it."""

    count: int
    cost: int


@dataclass(frozen=True, slots=True)
class Drawn:
    lottery: Lottery
    winners: list[int]


@dataclass(frozen=True, slots=True)
class Rerolled:
    lottery: Lottery
    replaced: int
    winner: int
    pick: int
    skipped: list[int]


@dataclass(slots=True)
class Verification:
    """What `verify` recomputed: each check with whether it held, and the result."""

    lottery: Lottery
    checks: list[tuple[str, bool]] = field(default_factory=list)
    entrants: list[int] = field(default_factory=list)
    winners: list[int] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return bool(self.checks) and all(held for _, held in self.checks)


async def _locked(conn: AsyncConnection, lottery_id: int) -> Lottery | None:
    query = select(LOTTERIES).where(LOTTERIES.c.id == lottery_id).with_for_update()
    row = (await conn.execute(query)).mappings().first()
    return Lottery.of(row) if row is not None else None


async def _open_one(conn: AsyncConnection, lottery_id: int) -> Lottery | Refusal:
    """The lottery, locked, if it is still open; else why not."""
    lottery = await _locked(conn, lottery_id)
    if lottery is None:
        return Refusal("unknown")
    if lottery.status != LotteryStatus.OPEN:
        return Refusal(f"already_{lottery.status.value}")
    return lottery


async def open_lottery(
    conn: AsyncConnection,
    chat_id: int,
    *,
    prize: str,
    winners: int,
    rules: LotteryRules,
    claim: str,
    source: str,
    created_by: int | None,
    now: datetime,
    draws_at: datetime,
    run_id: int | None = None,
) -> Lottery:
    """Write a new open lottery with a fresh secret seed, in the caller's transaction."""
    seed = drawing.new_seed()
    values: dict[str, Any] = {
        "chat_id": chat_id,
        "prize": prize,
        "winners": winners,
        "status": LotteryStatus.OPEN.value,
        "rules": rules.model_dump(mode="json", exclude_defaults=True),
        "entry_cost": rules.entry_cost,
        "max_entries": rules.max_entries,
        "entry_count": 0,
        "claim": claim,
        "seed": seed,
        "commitment": drawing.commitment(seed),
        "source": source,
        "created_by": created_by,
        "run_id": run_id,
        "created_at": now,
        "draws_at": draws_at,
    }
    inserted = await conn.execute(LOTTERIES.insert().values(**values))
    new_id = inserted.inserted_primary_key[0]  # type: ignore[index]
    found = await _locked(conn, int(new_id))
    assert found is not None
    return found


class LotteryStore:
    """Reads and writes lotteries, their entries and picks."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    async def get(self, lottery_id: int) -> Lottery | None:
        async with self.engine.connect() as conn:
            row = (
                (await conn.execute(select(LOTTERIES).where(LOTTERIES.c.id == lottery_id)))
                .mappings()
                .first()
            )
        return Lottery.of(row) if row is not None else None

    async def open_ones(self, chat_id: int | None = None) -> list[Lottery]:
        """Open lotteries (of one group), the soonest drawn first."""
        query = select(LOTTERIES).where(LOTTERIES.c.status == LotteryStatus.OPEN.value)
        if chat_id is not None:
            query = query.where(LOTTERIES.c.chat_id == chat_id)
        async with self.engine.connect() as conn:
            rows = await conn.execute(query.order_by(LOTTERIES.c.draws_at, LOTTERIES.c.id))
            return [Lottery.of(row) for row in rows.mappings()]

    async def due(self, now: datetime) -> list[int]:
        async with self.engine.connect() as conn:
            rows = await conn.execute(
                select(LOTTERIES.c.id)
                .where(LOTTERIES.c.status == LotteryStatus.OPEN.value, LOTTERIES.c.draws_at <= now)
                .order_by(LOTTERIES.c.draws_at)
            )
            return [row.id for row in rows]

    async def next_due(self) -> datetime | None:
        async with self.engine.connect() as conn:
            found: datetime | None = (
                await conn.execute(
                    select(func.min(LOTTERIES.c.draws_at)).where(
                        LOTTERIES.c.status == LotteryStatus.OPEN.value
                    )
                )
            ).scalar_one()
            return found

    async def unannounced(self) -> list[int]:
        """Drawn lotteries whose announcement is not recorded as sent."""
        async with self.engine.connect() as conn:
            rows = await conn.execute(
                select(LOTTERIES.c.id).where(
                    LOTTERIES.c.status == LotteryStatus.DRAWN.value,
                    LOTTERIES.c.announcement_id.is_(None),
                )
            )
            return [row.id for row in rows]

    async def unposted(self, now: datetime) -> list[int]:
        """Open lotteries, not yet due, whose post is not recorded as sent."""
        async with self.engine.connect() as conn:
            rows = await conn.execute(
                select(LOTTERIES.c.id).where(
                    LOTTERIES.c.status == LotteryStatus.OPEN.value,
                    LOTTERIES.c.message_id.is_(None),
                    LOTTERIES.c.draws_at > now,
                )
            )
            return [row.id for row in rows]

    async def set_values(self, lottery_id: int, **values: Any) -> None:
        async with writing(self.engine) as conn:
            await conn.execute(
                update(LOTTERIES).where(LOTTERIES.c.id == lottery_id).values(**values)
            )

    async def picks(self, lottery_id: int) -> list[Pick]:
        async with self.engine.connect() as conn:
            rows = await conn.execute(
                select(LOTTERY_PICKS)
                .where(LOTTERY_PICKS.c.lottery_id == lottery_id)
                .order_by(LOTTERY_PICKS.c.pick)
            )
            return [
                Pick(
                    row.pick,
                    row.user_id,
                    PickOutcome(row.outcome),
                    row.reason,
                    row.at,
                    row.by,
                    row.replaces,
                )
                for row in rows
            ]

    async def winners(self, lottery_id: int) -> list[int]:
        """The current winners, in the order of their picks."""
        return [p.user_id for p in await self.picks(lottery_id) if p.outcome == PickOutcome.WON]

    async def admit(
        self, lottery_id: int, user_ids: Sequence[int], now: datetime
    ) -> dict[int, Entered | Refusal]:
        """Enter these members (already found eligible) in one transaction.

        Each member gets an entry or a refusal: closed (past the deadline or drawn), entered
        (already), full (the cap is reached), points (the entry cost is no longer covered)."""
        wanted = sorted(set(user_ids))
        short: dict[int, Entered | Refusal] = {}
        while True:
            try:
                admitted = await self._admit(lottery_id, wanted, now) if wanted else {}
            except points.NotEnoughPoints as spent:  # a spend elsewhere won the race
                wanted.remove(spent.user_id)
                short[spent.user_id] = Refusal(
                    "points", {"needed": spent.wanted, "balance": spent.balance}
                )
                continue
            return {**admitted, **short}

    async def _admit(
        self, lottery_id: int, wanted: list[int], now: datetime
    ) -> dict[int, Entered | Refusal]:
        results: dict[int, Entered | Refusal] = {}
        async with writing(self.engine) as conn:
            lottery = await _locked(conn, lottery_id)
            if lottery is None or lottery.status != LotteryStatus.OPEN or now >= lottery.draws_at:
                return {user_id: Refusal("closed") for user_id in wanted}
            existing: set[int] = set()
            for chunk in chunks(wanted):
                rows = await conn.execute(
                    select(LOTTERY_ENTRIES.c.user_id).where(
                        LOTTERY_ENTRIES.c.lottery_id == lottery_id,
                        LOTTERY_ENTRIES.c.user_id.in_(chunk),
                    )
                )
                existing.update(row.user_id for row in rows)
            new = [user_id for user_id in wanted if user_id not in existing]
            cap = lottery.rules.max_entries
            room = len(new) if cap is None else max(cap - lottery.entry_count, 0)
            admitted, full = new[:room], new[room:]
            cost = lottery.rules.entry_cost
            if admitted:
                await conn.execute(
                    LOTTERY_ENTRIES.insert(),
                    [
                        {"lottery_id": lottery_id, "user_id": u, "entered_at": now, "cost": cost}
                        for u in admitted
                    ],
                )
                why, source = f"lottery #{lottery_id} entry", f"lottery:{lottery_id}"
                await points.apply(
                    conn,
                    [points.Change(lottery.chat_id, u, -cost, why, source, now) for u in admitted],
                )
                await conn.execute(
                    update(LOTTERIES)
                    .where(LOTTERIES.c.id == lottery_id)
                    .values(entry_count=LOTTERIES.c.entry_count + len(admitted))
                )
        count = lottery.entry_count + len(admitted)
        results.update({user_id: Refusal("entered") for user_id in existing})
        results.update({user_id: Refusal("full", {"cap": cap}) for user_id in full})
        results.update({user_id: Entered(count, cost) for user_id in admitted})
        return results

    async def draw(self, lottery_id: int, now: datetime, by: int | None = None) -> Drawn | Refusal:
        """Draw an open lottery: entrants still in the group, the first picks win."""
        async with writing(self.engine) as conn:
            lottery = await _open_one(conn, lottery_id)
            if isinstance(lottery, Refusal):
                return lottery
            present, gone = await _entrants(conn, lottery)
            out = dict.fromkeys(gone, LEFT_GROUP)
            window = lottery.rules.exclude_winners_within
            if window is not None:  # they may have won another lottery since they entered
                won = await recent_winners(
                    conn, lottery.chat_id, present, now - window, other_than=lottery.id
                )
                present = [user_id for user_id in present if user_id not in won]
                out.update(dict.fromkeys(won, WON_SINCE))
            winners = drawing.draw(lottery.seed, present, lottery.winners)
            digest = drawing.entrants_digest(present)
            await conn.execute(
                update(LOTTERY_ENTRIES)
                .where(LOTTERY_ENTRIES.c.lottery_id == lottery_id)
                .values(in_draw=True, out_reason=None)
            )
            for reason in set(out.values()):
                for chunk in chunks(sorted(u for u, why in out.items() if why == reason)):
                    await conn.execute(
                        update(LOTTERY_ENTRIES)
                        .where(
                            LOTTERY_ENTRIES.c.lottery_id == lottery_id,
                            LOTTERY_ENTRIES.c.user_id.in_(chunk),
                        )
                        .values(in_draw=False, out_reason=reason)
                    )
            if winners:
                await conn.execute(
                    LOTTERY_PICKS.insert(),
                    [
                        {
                            "lottery_id": lottery_id,
                            "pick": number,
                            "user_id": user_id,
                            "outcome": PickOutcome.WON.value,
                            "at": now,
                            "by": by,
                        }
                        for number, user_id in enumerate(winners)
                    ],
                )
            await conn.execute(
                update(LOTTERIES)
                .where(LOTTERIES.c.id == lottery_id)
                .values(
                    status=LotteryStatus.DRAWN.value,
                    drawn_at=now,
                    entrants=len(present),
                    entrants_digest=digest,
                    closed_by=by,
                )
            )
            drawn = await _locked(conn, lottery_id)
        assert drawn is not None
        return Drawn(drawn, winners)

    async def cancel(self, lottery_id: int, now: datetime, by: int | None) -> Lottery | Refusal:
        """Cancel an open lottery and give every entrant back the points the entry cost."""
        async with writing(self.engine) as conn:
            lottery = await _open_one(conn, lottery_id)
            if isinstance(lottery, Refusal):
                return lottery
            paid = await conn.execute(
                select(LOTTERY_ENTRIES.c.user_id, LOTTERY_ENTRIES.c.cost).where(
                    LOTTERY_ENTRIES.c.lottery_id == lottery_id, LOTTERY_ENTRIES.c.cost > 0
                )
            )
            reason = f"lottery #{lottery_id} cancelled: entry refunded"
            await points.apply(
                conn,
                [
                    points.Change(lottery.chat_id, user, cost, reason, f"lottery:{lottery_id}", now)
                    for user, cost in paid
                ],
            )
            await conn.execute(
                update(LOTTERIES)
                .where(LOTTERIES.c.id == lottery_id)
                .values(status=LotteryStatus.CANCELLED.value, drawn_at=now, closed_by=by)
            )
            cancelled = await _locked(conn, lottery_id)
        assert cancelled is not None
        return cancelled

    async def reroll(
        self, lottery_id: int, user_id: int, reason: str, now: datetime, by: int | None
    ) -> Rerolled | Refusal:
        """Replace a winner with the next pick of the draw's sequence who is still in the
        group; picks who left are recorded as skipped."""
        async with writing(self.engine) as conn:
            lottery = await _locked(conn, lottery_id)
            if lottery is None:
                return Refusal("unknown")
            if lottery.status != LotteryStatus.DRAWN:
                return Refusal("not_drawn")
            rows = list(
                await conn.execute(
                    select(LOTTERY_PICKS).where(LOTTERY_PICKS.c.lottery_id == lottery_id)
                )
            )
            old = next(
                (r for r in rows if r.user_id == user_id and r.outcome == PickOutcome.WON), None
            )
            if old is None:
                return Refusal("not_winner")
            entrants = await _in_draw(conn, lottery_id)
            sequence = drawing.picks(lottery.seed, entrants)
            for _ in range(len(rows)):
                next(sequence, None)
            skipped: list[int] = []
            number = len(rows)
            for candidate in sequence:
                if await _present(conn, lottery.chat_id, candidate):
                    break
                skipped.append(candidate)
                number += 1
            else:
                return Refusal("no_one_left")
            new_rows = [
                {
                    "lottery_id": lottery_id,
                    "pick": len(rows) + index,
                    "user_id": gone,
                    "outcome": PickOutcome.SKIPPED.value,
                    "reason": LEFT_GROUP,
                    "at": now,
                    "by": by,
                    "replaces": None,
                }
                for index, gone in enumerate(skipped)
            ]
            new_rows.append(
                {
                    "lottery_id": lottery_id,
                    "pick": number,
                    "user_id": candidate,
                    "outcome": PickOutcome.WON.value,
                    "reason": None,
                    "at": now,
                    "by": by,
                    "replaces": old.pick,
                }
            )
            await conn.execute(LOTTERY_PICKS.insert(), new_rows)
            await conn.execute(
                update(LOTTERY_PICKS)
                .where(LOTTERY_PICKS.c.lottery_id == lottery_id, LOTTERY_PICKS.c.pick == old.pick)
                .values(outcome=PickOutcome.REPLACED.value, reason=reason or None)
            )
        return Rerolled(lottery, user_id, candidate, number, skipped)

    async def verify(self, lottery_id: int) -> Verification | Refusal:
        """Recompute a drawn lottery from the stored seed, entries and picks.

        Checks: the seed matches the commitment published at opening; the entrant list matches
        the digest published at the draw; each stored pick is the pick the algorithm gives at
        its place; the first picks are as many as the lottery had winners."""
        lottery = await self.get(lottery_id)
        if lottery is None:
            return Refusal("unknown")
        if lottery.status != LotteryStatus.DRAWN:
            return Refusal("not_drawn" if lottery.status == LotteryStatus.OPEN else "cancelled")
        async with self.engine.connect() as conn:
            entrants = await _in_draw(conn, lottery_id)
        stored = await self.picks(lottery_id)
        result = Verification(lottery, entrants=entrants)
        result.checks.append(("commitment", drawing.commitment(lottery.seed) == lottery.commitment))
        digest = drawing.entrants_digest(entrants)
        result.checks.append(("digest", digest == lottery.entrants_digest))
        result.checks.append(("count", len(entrants) == lottery.entrants))
        expected = list(drawing.draw(lottery.seed, entrants, len(stored)))
        result.checks.append(("picks", [p.user_id for p in stored] == expected))
        wanted = min(lottery.winners, len(entrants))
        result.checks.append(("winners", _consistent(stored, wanted)))
        result.winners = [p.user_id for p in stored if p.outcome == PickOutcome.WON]
        return result


def _consistent(stored: list[Pick], wanted: int) -> bool:
    """The picks tell one story: numbered 0, 1, 2, …; the first `wanted` are the draw's
    winners; every later pick is skipped or a reroll replacing one earlier winner, each
    replaced winner replaced exactly once; and `wanted` winners stand at the end."""
    if [p.pick for p in stored] != list(range(len(stored))):
        return False
    replaced: list[int] = []
    for p in stored:
        if p.pick < wanted:
            if p.replaces is not None or p.outcome == PickOutcome.SKIPPED:
                return False
        elif p.outcome == PickOutcome.SKIPPED:
            if p.replaces is not None:
                return False
        elif p.replaces is None or p.replaces >= p.pick:
            return False
        else:
            replaced.append(p.replaces)
    by_number = {p.pick: p for p in stored}
    gone = sorted(p.pick for p in stored if p.outcome == PickOutcome.REPLACED)
    if sorted(replaced) != gone or any(by_number[r].outcome != PickOutcome.REPLACED for r in gone):
        return False
    return sum(p.outcome == PickOutcome.WON for p in stored) == wanted


async def _entrants(conn: AsyncConnection, lottery: Lottery) -> tuple[list[int], list[int]]:
    """The lottery's entrants still in the group, and those who left, each sorted."""
    rows = await conn.execute(
        select(LOTTERY_ENTRIES.c.user_id, MEMBERS.c.status)
        .select_from(
            LOTTERY_ENTRIES.outerjoin(
                MEMBERS,
                (MEMBERS.c.chat_id == lottery.chat_id)
                & (MEMBERS.c.user_id == LOTTERY_ENTRIES.c.user_id),
            )
        )
        .where(LOTTERY_ENTRIES.c.lottery_id == lottery.id)
    )
    present: list[int] = []
    gone: list[int] = []
    for user_id, status in rows:
        (present if status is None or status in PRESENT else gone).append(int(user_id))
    return sorted(present), sorted(gone)


async def _in_draw(conn: AsyncConnection, lottery_id: int) -> list[int]:
    rows = await conn.execute(
        select(LOTTERY_ENTRIES.c.user_id).where(
            LOTTERY_ENTRIES.c.lottery_id == lottery_id, LOTTERY_ENTRIES.c.in_draw.is_(True)
        )
    )
    return sorted(int(row.user_id) for row in rows)


async def _present(conn: AsyncConnection, chat_id: int, user_id: int) -> bool:
    status = (
        await conn.execute(
            select(MEMBERS.c.status).where(
                MEMBERS.c.chat_id == chat_id, MEMBERS.c.user_id == user_id
            )
        )
    ).scalar_one_or_none()
    return status is None or status in PRESENT
