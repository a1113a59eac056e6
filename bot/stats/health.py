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

from bot.db import GROUP_DAYS
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


async def trend(
    engine: AsyncEngine, chat_id: int, last: date, zone: tzinfo, weeks: int = 4
) -> list[Health]:
    """The scores of the `weeks` weeks ending on `last`, oldest first; weeks before the group
    had members or messages are left out (the latest is always there)."""
    scores = [
        await health(engine, chat_id, last - timedelta(days=WEEK * back), zone)
        for back in reversed(range(weeks))
    ]
    return [
        week for week in scores[:-1] if week.metrics.members_end or week.metrics.messages
    ] + scores[-1:]


def dropped(now: Health, before: Health, share: float) -> bool:
    """The score fell by `share` or more since the week before."""
    return before.score > 0 and now.score <= before.score * (1 - share)


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
