"""Points: an append-only ledger with a balance per member that never goes below zero.

Every change is a ledger row with its reason and source (check-in, streak bonus, an SOP's
award, an admin's adjustment, a redemption), written in the same transaction as the balance.
A spend moves the balance with one conditional UPDATE (`balance + delta >= 0`): of two spends
at once only those the balance covers pass, on SQLite and on PostgreSQL alike.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import and_, bindparam, select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from bot.db import BALANCES, POINTS, insert_for, writing
from bot.db.pairs import pairs_in

IN_CHUNK = 400  # (group, member) pairs per IN (...) list


@dataclass(frozen=True, slots=True)
class Change:
    """One ledger row to be: `delta` points for a member, and why."""

    chat_id: int
    user_id: int
    delta: int
    reason: str
    source: str  # checkin, sop:<id>, admin:<user id>, redemption:<order id>
    at: datetime


class NotEnoughPoints(Exception):
    """A spend the member's balance does not cover; nothing of the transaction should stay."""

    def __init__(self, chat_id: int, user_id: int, balance: int, wanted: int) -> None:
        super().__init__(f"not enough points ({balance}) to take {wanted}")
        self.chat_id, self.user_id, self.balance, self.wanted = chat_id, user_id, balance, wanted


async def apply(conn: AsyncConnection, changes: Sequence[Change]) -> None:
    """Write the ledger rows and move the balances, in the caller's transaction.

    Raises NotEnoughPoints when a member's changes together would take their balance below
    zero; the caller's transaction must then be rolled back (it is, when this raises inside
    `writing()` or `engine.begin()`)."""
    changes = [change for change in changes if change.delta]
    if not changes:
        return
    net: dict[tuple[int, int], int] = defaultdict(int)
    latest: dict[tuple[int, int], datetime] = {}
    for change in changes:
        key = (change.chat_id, change.user_id)
        net[key] += change.delta
        latest[key] = max(latest.get(key, change.at), change.at)
    gains = [(key, delta) for key, delta in net.items() if delta >= 0]
    if gains:
        upsert = insert_for(conn, BALANCES)
        await conn.execute(
            upsert.on_conflict_do_update(
                index_elements=["chat_id", "user_id"],
                set_={
                    "balance": BALANCES.c.balance + upsert.excluded.balance,
                    "updated_at": upsert.excluded.updated_at,
                },
            ),
            [
                {
                    "chat_id": chat,
                    "user_id": user,
                    "balance": delta,
                    "updated_at": latest[chat, user],
                }
                for (chat, user), delta in gains
            ],
        )
    for (chat, user), delta in net.items():
        if delta < 0:
            await _spend(conn, chat, user, -delta, latest[chat, user])
    await conn.execute(
        POINTS.insert(),
        [
            {
                "chat_id": change.chat_id,
                "user_id": change.user_id,
                "delta": change.delta,
                "reason": change.reason,
                "source": change.source,
                "at": change.at,
            }
            for change in changes
        ],
    )


_SPEND = (
    update(BALANCES)
    .where(
        and_(
            BALANCES.c.chat_id == bindparam("chat"),
            BALANCES.c.user_id == bindparam("user"),
            BALANCES.c.balance >= bindparam("amount"),
        )
    )
    .values(balance=BALANCES.c.balance - bindparam("amount"), updated_at=bindparam("at"))
)


async def _spend(
    conn: AsyncConnection, chat_id: int, user_id: int, amount: int, at: datetime
) -> None:
    moved = await conn.execute(
        _SPEND, {"chat": chat_id, "user": user_id, "amount": amount, "at": at}
    )
    if moved.rowcount != 1:
        raise NotEnoughPoints(chat_id, user_id, await balance(conn, chat_id, user_id), amount)


async def balance(conn: AsyncConnection, chat_id: int, user_id: int) -> int:
    """A member's points in a group (0 for someone who never had any)."""
    return (await balances(conn, chat_id, [user_id])).get(user_id, 0)


async def balances(conn: AsyncConnection, chat_id: int, user_ids: Sequence[int]) -> dict[int, int]:
    """Points of these members in a group (members without any are left out)."""
    found = await balances_of(conn, [(chat_id, user_id) for user_id in user_ids])
    return {user: points for (_chat, user), points in found.items()}


async def balances_of(
    conn: AsyncConnection, members: Sequence[tuple[int, int]]
) -> dict[tuple[int, int], int]:
    """Points of these (group, member) pairs, in one statement for many groups (members
    without any are left out)."""
    found: dict[tuple[int, int], int] = {}
    for start in range(0, len(members), IN_CHUNK):
        rows = await conn.execute(
            select(BALANCES.c.chat_id, BALANCES.c.user_id, BALANCES.c.balance).where(
                pairs_in(BALANCES.c.chat_id, BALANCES.c.user_id, members[start : start + IN_CHUNK])
            )
        )
        found.update({(int(chat), int(user)): int(points) for chat, user, points in rows})
    return found


class Ledger:
    """Points changes made on their own, each in its own transaction (an admin's /points)."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    async def adjust(self, change: Change) -> int:
        """Apply `change`; return the member's balance after it. NotEnoughPoints (and nothing
        changed) when it would take the balance below zero."""
        async with writing(self.engine) as conn:
            await apply(conn, [change])
            return await balance(conn, change.chat_id, change.user_id)
