"""The weekly activity review of a group (活动复盘): a week's figures beside the week before's.

Every figure comes from `bot.stats.metrics` (the rollups), as /stats reads it, for two windows
of seven days of the group's calendar, Monday to Sunday: participation (members, active
members, messages, check-ins, joins, leaves), the week's peak hours, and the SOP steps sent to
members that week ranked by their answer rate (the share of members who wrote or pressed a
button in the group within 24 hours of the step). What `review` steps give their texts.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import date, timedelta, tzinfo
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from bot.stats.metrics import GroupMetrics, StepResponse, group_metrics
from bot.stats.rollup import Rollup

FIGURES = ("members", "active", "messages", "checkins", "checkin_members", "joins", "leaves")
PEAK_HOURS = 3  # the busiest hours named


def week_of(today: date, period: str) -> tuple[date, date]:
    """The Monday and Sunday of the week under way (`week`) or the last full one."""
    monday = today - timedelta(days=today.weekday())
    if period == "last_week":
        monday -= timedelta(days=7)
    return monday, monday + timedelta(days=6)


class Reviews:
    """Reads a group's weekly review, the rollups brought up to date first."""

    def __init__(self, engine: AsyncEngine, rollup: Rollup) -> None:
        self.engine = engine
        self.rollup = rollup

    async def week(
        self, chat_id: int, today: date, zone: tzinfo, *, period: str, min_sends: int
    ) -> dict[str, Any]:
        """The review of the week `period` (as of `today` in the group's zone) as plain data."""
        await self.rollup.catch_up()
        first, last = week_of(today, period)
        this = await group_metrics(self.engine, chat_id, first, last, zone)
        before = await group_metrics(
            self.engine, chat_id, first - timedelta(days=7), last - timedelta(days=7), zone
        )
        return review_of(this, before, min_sends=min_sends)


def review_of(this: GroupMetrics, before: GroupMetrics, *, min_sends: int) -> dict[str, Any]:
    """The review variable: this week's figures, the week before's, how each changed, the peak
    hours and the best and worst step (None when fewer than one / two steps count)."""
    now, then = _figures(this), _figures(before)
    ranked = ranked_steps(this.steps, min_sends)
    best = ranked[0] if ranked else None
    worst = ranked[-1] if len(ranked) >= 2 else None
    return {
        "first_day": this.first.isoformat(),
        "last_day": this.last.isoformat(),
        **now,
        "active_pct": _pct(this.active, this.members_end),
        "before": then,
        "change": {name: change(now[name], then[name]) for name in FIGURES},
        "peak_hours": peak_hours(this.heatmap),
        "steps": len(ranked),
        "best": best,
        "worst": worst,
    }


def _figures(found: GroupMetrics) -> dict[str, int]:
    return {
        "members": found.members_end,
        "active": found.active,
        "messages": found.messages,
        "checkins": found.checkins,
        "checkin_members": found.checkin_members,
        "joins": found.joins,
        "leaves": found.leaves,
    }


def change(now: int, then: int) -> str:
    """How a figure moved since the week before: `+25%`, `-10%`, `±0`, or `+3` from nothing."""
    if now == then:
        return "±0"
    if then == 0:
        return f"+{now}"
    percent = round((now - then) * 100 / then)
    return f"{percent:+d}%" if percent else ("+" if now > then else "-") + "<1%"


def peak_hours(heatmap: list[list[int]], count: int = PEAK_HOURS) -> list[dict[str, Any]]:
    """The busiest hours of the day over the week (messages summed over its days), busiest
    first; hours without a message are never peaks."""
    by_hour = [sum(day[hour] for day in heatmap) for hour in range(24)]
    hours = sorted((hour for hour in range(24) if by_hour[hour]), key=lambda h: (-by_hour[h], h))
    return [
        {
            "hour": hour,
            "label": f"{hour:02d}:00-{(hour + 1) % 24:02d}:00",
            "messages": by_hour[hour],
        }
        for hour in hours[:count]
    ]


def ranked_steps(steps: list[StepResponse], min_sends: int) -> list[dict[str, Any]]:
    """SOP steps (their variants together) sent to `min_sends` members or more, best answered
    first; of two with the same rate, the one sent more often first."""
    totals: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0])
    for response in steps:
        total = totals[response.sop, response.step]
        total[0] += response.sent
        total[1] += response.answered
    counted = [
        {"sop": sop, "step": step, "sent": sent, "answered": answered, "rate": _pct(answered, sent)}
        for (sop, step), (sent, answered) in totals.items()
        if sent >= min_sends
    ]
    return sorted(counted, key=lambda s: (-s["answered"] / s["sent"], -s["sent"], s["sop"]))


def _pct(part: int, whole: int) -> int:
    return round(part * 100 / whole) if whole else 0
