"""Group health: a 0–100 score from a week's metrics, its weekly trend, and when to alert.

The score of the 7 days ending on a day (the README has the same table):

| part      | points | full marks when                                                   |
| --------- | ------ | ----------------------------------------------------------------- |
| activity  | 40     | a quarter or more of the members wrote in the week (weekly active) |
| momentum  | 20     | the week had at least as many messages as the week before          |
| retention | 15     | everyone who joined in the last 30 days wrote again 7+ days later  |
| breadth   | 15     | the top 10 % of writers wrote at most half of the messages         |
| growth    | 10     | at least as many joined as left                                    |

Each part scales linearly below full marks. With no joiners to measure, retention counts half;
with no one leaving, growth counts in full. A week without messages scores 0 for activity,
momentum and breadth. An alert is due when the score fell by `drop` (a share, 0.3 = 30 %) or
more from the week before (the 7 days before), or when the group has had no message for
`silent_days` full days. Scores are of rolling weeks, checked daily.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta, tzinfo

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.db import GROUP_DAYS, HEALTH_SCORES, insert_for, writing
from bot.stats.metrics import GroupMetrics, group_metrics

WEEK = 7


@dataclass(frozen=True, slots=True)
class Health:
    last: date  # the last day of the week scored
    score: int
    parts: dict[str, float]
    metrics: GroupMetrics


def score(week: GroupMetrics, before: GroupMetrics, retention: float | None) -> Health:
    """The score of `week` (after `before`), with `retention` of the last 30 days' joiners."""
    members = max(week.members_end, 1)
    parts = {
        "activity": 40 * min(1.0, week.weekly_active / members / 0.25),
        "momentum": 20 * min(1.0, week.messages / before.messages)
        if before.messages
        else (20.0 if week.messages else 0.0),
        "retention": 15 * (retention if retention is not None else 0.5),
        "breadth": 15 * min(1.0, (1 - week.concentration) / 0.5) if week.messages else 0.0,
        "growth": 10 * min(1.0, week.joins / week.leaves) if week.leaves else 10.0,
    }
    return Health(week.last, round(sum(parts.values())), parts, week)


async def health(engine: AsyncEngine, chat_id: int, last: date, zone: tzinfo) -> Health:
    """The score of the 7 days ending on `last`."""
    week = await group_metrics(engine, chat_id, last - timedelta(days=WEEK - 1), last, zone)
    before_last = last - timedelta(days=WEEK)
    before = await group_metrics(
        engine, chat_id, before_last - timedelta(days=WEEK - 1), before_last, zone
    )
    month = await group_metrics(engine, chat_id, last - timedelta(days=29), last, zone)
    return score(week, before, month.retention_rate(7))


async def store(engine: AsyncEngine, chat_id: int, found: Health) -> None:
    """Keep a score: the week it scores is over, so it does not change."""
    stmt = insert_for(engine, HEALTH_SCORES).values(
        chat_id=chat_id, day=found.last, score=found.score, parts=found.parts
    )
    async with writing(engine) as conn:
        await conn.execute(
            stmt.on_conflict_do_update(
                index_elements=["chat_id", "day"],
                set_={"score": found.score, "parts": found.parts},
            )
        )


async def weekly(
    engine: AsyncEngine, chat_id: int, last: date, zone: tzinfo, weeks: int = 4
) -> list[int]:
    """The scores of the `weeks` weeks ending on `last` (a finished day), oldest first.

    Scores the daily job stored are read; a missing one is computed and stored. Weeks before the
    group had members or messages are left out, but the latest week is always there."""
    days = [last - timedelta(days=WEEK * back) for back in reversed(range(weeks))]
    async with engine.connect() as conn:
        rows = await conn.execute(
            select(HEALTH_SCORES.c.day, HEALTH_SCORES.c.score).where(
                HEALTH_SCORES.c.chat_id == chat_id, HEALTH_SCORES.c.day.in_(days)
            )
        )
        known = {day: score for day, score in rows}
    for day in days:
        if day not in known:
            found = await health(engine, chat_id, day, zone)
            if found.metrics.members_end or found.metrics.messages or day == last:
                await store(engine, chat_id, found)
                known[day] = found.score
    return [known[day] for day in days if day in known]


def fell(score: int, before: int, share: float) -> bool:
    """The score fell by `share` or more from `before`, the week before's."""
    return before > 0 and score <= before * (1 - share)


async def silent_since(engine: AsyncEngine, chat_id: int, last: date, days: int) -> date | None:
    """The first day of a silence of `days` or more full days ending on `last` (no message at
    all), or None. A group with no message ever is new, not silent."""
    async with engine.connect() as conn:
        found = await conn.execute(
            select(func.max(GROUP_DAYS.c.day)).where(
                GROUP_DAYS.c.chat_id == chat_id,
                GROUP_DAYS.c.day <= last,
                GROUP_DAYS.c.messages > 0,
            )
        )
        latest: date | None = found.scalar()
    if latest is None or (last - latest).days < days:
        return None
    return latest + timedelta(days=1)
