"""Member tiers by the rules in `sops/tiers.yaml`, computed per group from the rollups.

A computation reads, for every member the group has, their tenure, when they were last active,
their messages, active days and check-ins in the window, and their points; gives each the first
tier whose rules hold; and stores the changes (`members.tier`, `tier_changes`) in one
transaction. The caller emits `tier.changed` for each change.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from pathlib import Path
from typing import Any

import yaml
from pydantic import Field, ValidationError
from sqlalchemy import bindparam, func, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.db import BALANCES, CHECKINS, MEMBER_DAYS, MEMBERS, PRESENT, TIER_CHANGES, writing
from bot.sop.format import LongDuration, Strict, Tier

TIERS = ("new", "ordinary", "seed", "value", "core", "dormant", "churned")
Window = LongDuration


class TierRule(Strict):
    """One tier and the rules a member must meet for it; no rules: everyone left."""

    tier: Tier
    left: bool | None = None
    min_tenure: Window | None = None
    max_tenure: Window | None = None
    min_silent: Window | None = None
    min_messages: int | None = Field(default=None, ge=1)
    min_active_days: int | None = Field(default=None, ge=1, le=366)
    min_checkins: int | None = Field(default=None, ge=1, le=366)
    min_points: int | None = Field(default=None, ge=1)

    def holds(self, member: MemberFacts) -> bool:
        checks = (
            self.left is None or member.left == self.left,
            self.min_tenure is None or member.tenure >= self.min_tenure,
            self.max_tenure is None or member.tenure < self.max_tenure,
            self.min_silent is None or member.silent >= self.min_silent,
            self.min_messages is None or member.messages >= self.min_messages,
            self.min_active_days is None or member.active_days >= self.min_active_days,
            self.min_checkins is None or member.checkins >= self.min_checkins,
            self.min_points is None or member.points >= self.min_points,
        )
        return all(checks)


class TierRules(Strict):
    window: Window = timedelta(days=30)
    tiers: list[TierRule] = Field(min_length=1)

    def tier_of(self, member: MemberFacts) -> str:
        return next((rule.tier for rule in self.tiers if rule.holds(member)), "ordinary")


class TierFileError(Exception):
    """The tiers file cannot be used; the message names the file and each problem."""


def load_rules(path: Path) -> TierRules:
    try:
        data: Any = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise TierFileError(f"{path}: cannot read the file: {exc.strerror or exc}") from None
    except yaml.YAMLError as exc:
        raise TierFileError(f"{path}: invalid YAML: {exc}".replace("\n", " ")) from None
    try:
        return TierRules.model_validate(data)
    except ValidationError as exc:
        problems = [
            f"{'.'.join(str(part) for part in error['loc']) or '(top)'}: {error['msg']}"
            for error in exc.errors(include_url=False)
        ]
        raise TierFileError(f"{path}: " + "; ".join(problems)) from None


@dataclass(frozen=True, slots=True)
class MemberFacts:
    user_id: int
    tier: str
    left: bool
    tenure: timedelta
    silent: timedelta
    messages: int
    active_days: int
    checkins: int
    points: int


@dataclass(frozen=True, slots=True)
class Change:
    user_id: int
    old: str
    new: str


async def member_facts(
    engine: AsyncEngine, chat_id: int, today: date, zone: tzinfo, window: timedelta
) -> list[MemberFacts]:
    """What the rules read, for every person the group has, as of the end of `today`."""
    end = datetime.combine(today + timedelta(days=1), time(0), tzinfo=zone).astimezone(UTC)
    first = today - timedelta(days=max(window.days, 1) - 1)
    present = [status.value for status in PRESENT]
    async with engine.connect() as conn:
        members = list(
            await conn.execute(
                select(
                    MEMBERS.c.user_id,
                    MEMBERS.c.tier,
                    MEMBERS.c.status,
                    MEMBERS.c.joined_at,
                    MEMBERS.c.first_activity_at,
                    MEMBERS.c.last_activity_at,
                ).where(MEMBERS.c.chat_id == chat_id, MEMBERS.c.is_bot.is_(False))
            )
        )
        activity: dict[int, tuple[int, int]] = {}
        for user_id, messages, days in await conn.execute(
            select(
                MEMBER_DAYS.c.user_id,
                func.sum(MEMBER_DAYS.c.messages),
                func.count(),
            )
            .where(
                MEMBER_DAYS.c.chat_id == chat_id,
                MEMBER_DAYS.c.day.between(first, today),
                MEMBER_DAYS.c.messages > 0,
            )
            .group_by(MEMBER_DAYS.c.user_id)
        ):
            activity[user_id] = (int(messages), int(days))
        latest: dict[int, datetime] = {}
        for user_id, day in await conn.execute(
            select(MEMBER_DAYS.c.user_id, func.max(MEMBER_DAYS.c.day))
            .where(MEMBER_DAYS.c.chat_id == chat_id, MEMBER_DAYS.c.day <= today)
            .group_by(MEMBER_DAYS.c.user_id)
        ):  # the end of the last day the member wrote or pressed a button
            latest[user_id] = datetime.combine(
                day + timedelta(days=1), time(0), tzinfo=zone
            ).astimezone(UTC)
        checkins: dict[int, int] = defaultdict(int)
        for user_id, count in await conn.execute(
            select(CHECKINS.c.user_id, func.count())
            .where(CHECKINS.c.chat_id == chat_id, CHECKINS.c.day.between(first, today))
            .group_by(CHECKINS.c.user_id)
        ):
            checkins[user_id] = int(count)
        points = {
            user_id: int(balance)
            for user_id, balance in await conn.execute(
                select(BALANCES.c.user_id, BALANCES.c.balance).where(BALANCES.c.chat_id == chat_id)
            )
        }
    facts = []
    for row in members:
        since = row.joined_at or row.first_activity_at or end
        last = max(row.last_activity_at or since, latest.get(row.user_id, since), since)
        messages, days = activity.get(row.user_id, (0, 0))
        facts.append(
            MemberFacts(
                row.user_id,
                row.tier,
                row.status not in present,
                max(end - since, timedelta(0)),
                max(end - last, timedelta(0)),
                messages,
                days,
                checkins[row.user_id],
                points.get(row.user_id, 0),
            )
        )
    return facts


async def compute(
    engine: AsyncEngine,
    chat_id: int,
    today: date,
    zone: tzinfo,
    rules: TierRules,
    now: datetime,
) -> list[Change]:
    """Give every member of the group their tier as of `today`; store and return the changes."""
    facts = await member_facts(engine, chat_id, today, zone, rules.window)
    changes = [
        Change(member.user_id, member.tier, tier)
        for member in facts
        if (tier := rules.tier_of(member)) != member.tier
    ]
    if changes:
        async with writing(engine) as conn:
            await conn.execute(
                update(MEMBERS)
                .where(MEMBERS.c.chat_id == chat_id, MEMBERS.c.user_id == bindparam("user"))
                .values(tier=bindparam("tier")),
                [{"user": change.user_id, "tier": change.new} for change in changes],
            )
            await conn.execute(
                TIER_CHANGES.insert(),
                [
                    {
                        "chat_id": chat_id,
                        "user_id": change.user_id,
                        "old": change.old,
                        "new": change.new,
                        "at": now,
                    }
                    for change in changes
                ],
            )
    return changes


async def tier_counts(engine: AsyncEngine, chat_id: int) -> dict[str, int]:
    """How many of the group's present members are in each tier."""
    present = [status.value for status in PRESENT]
    async with engine.connect() as conn:
        rows = await conn.execute(
            select(MEMBERS.c.tier, func.count())
            .where(
                MEMBERS.c.chat_id == chat_id,
                MEMBERS.c.is_bot.is_(False),
                MEMBERS.c.status.in_(present),
            )
            .group_by(MEMBERS.c.tier)
        )
        found = {tier: int(count) for tier, count in rows}
    return {tier: found.get(tier, 0) for tier in TIERS}
