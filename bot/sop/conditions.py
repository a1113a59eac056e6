"""Whether an SOP's conditions hold for a member in a group at a moment."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from bot.sop.facts import MESSAGES_7D, MemberFacts
from bot.sop.format import (
    Condition,
    GroupCondition,
    IntRange,
    MemberCondition,
    TagMatch,
    TemplateCondition,
    TimeCondition,
)
from bot.sop.templates import compile_expression, expression_names

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


@dataclass(frozen=True, slots=True)
class GroupFacts:
    """A group as conditions see it."""

    id: int
    title: str
    tags: list[str]
    members: int
    timezone: ZoneInfo


def windows(conditions: Iterable[Condition]) -> set[timedelta]:
    """The message-count windows these conditions need (7 days for `member.messages_7d`)."""
    needed: set[timedelta] = set()
    for condition in conditions:
        if isinstance(condition, MemberCondition) and condition.messages is not None:
            needed.add(condition.messages.window)
        elif isinstance(condition, TemplateCondition) and MESSAGES_7D in condition.value:
            needed.add(timedelta(days=7))
    return needed


@dataclass(frozen=True, slots=True)
class Needs:
    """What of the database conditions read: member facts, the group's member count, and
    whether moderation approved the members."""

    members: bool
    count: bool
    approved: bool = False


MEMBER_NAMES = frozenset({"member", "members"})


def needs(conditions: Iterable[Condition]) -> Needs:
    """What these conditions read besides the run's variables and what the bot holds in memory
    (a group's title, tags and clock). A `template` condition on `checkin.new` reads neither."""
    members = count = approved = False
    for condition in conditions:
        if isinstance(condition, MemberCondition):
            members = True
            approved = approved or condition.approved is not None
        elif isinstance(condition, GroupCondition):
            count = count or condition.members is not None
        elif isinstance(condition, TemplateCondition):
            try:
                names = expression_names(condition.value)
            except Exception:  # bad syntax: it fails (counts as false) without reading anything
                continue
            members = members or bool(names & MEMBER_NAMES)
            count = count or "group" in names
    return Needs(members, count, approved)


def holds(
    conditions: Iterable[Condition],
    *,
    member: MemberFacts | None,
    group: GroupFacts,
    now: datetime,
    context: Mapping[str, Any],
) -> bool:
    """Every condition holds. A member condition without a member (a group run) does not.

    A template expression that fails at run time (say, a division by zero) counts as false.
    """
    return all(
        _holds(condition, member=member, group=group, now=now, context=context)
        for condition in conditions
    )


def _holds(
    condition: Condition,
    *,
    member: MemberFacts | None,
    group: GroupFacts,
    now: datetime,
    context: Mapping[str, Any],
) -> bool:
    if isinstance(condition, MemberCondition):
        return member is not None and _member_holds(condition, member, now)
    if isinstance(condition, GroupCondition):
        return _tags_match(condition.tags, set(group.tags)) and _in_range(
            condition.members, group.members
        )
    if isinstance(condition, TimeCondition):
        zone = ZoneInfo(condition.timezone) if condition.timezone else group.timezone
        return in_time_window(condition, now.astimezone(zone))
    assert isinstance(condition, TemplateCondition)
    try:
        return bool(compile_expression(condition.value)(**context))
    except Exception:
        return False


def _member_holds(condition: MemberCondition, member: MemberFacts, now: datetime) -> bool:
    if condition.tenure is not None:
        tenure = member.tenure(now)
        low, high = condition.tenure.min, condition.tenure.max
        if (low is not None and tenure < low) or (high is not None and tenure > high):
            return False
    if condition.messages is not None:
        count = member.messages.get(condition.messages.window, 0)
        low_count, high_count = condition.messages.min, condition.messages.max
        if (low_count is not None and count < low_count) or (
            high_count is not None and count > high_count
        ):
            return False
    if condition.tier is not None and member.tier not in condition.tier:
        return False
    if condition.approved is not None and bool(member.approved) != condition.approved:
        return False
    return _tags_match(condition.tags, member.tags) and _in_range(condition.points, member.points)


def _tags_match(match: TagMatch | None, tags: set[str]) -> bool:
    if match is None:
        return True
    if match.any and not tags & set(match.any):
        return False
    return set(match.all) <= tags and not tags & set(match.none)


def _in_range(bounds: IntRange | None, value: int) -> bool:
    if bounds is None:
        return True
    return (bounds.min is None or value >= bounds.min) and (
        bounds.max is None or value <= bounds.max
    )


def in_time_window(condition: TimeCondition, local: datetime) -> bool:
    """`after`..`before` on `weekdays`, in local time; a window past midnight wraps."""
    if condition.weekdays is not None and WEEKDAYS[local.weekday()] not in condition.weekdays:
        return False
    clock = local.time().replace(tzinfo=None)
    after, before = condition.after, condition.before
    if after is not None and before is not None and after > before:
        return clock >= after or clock < before
    return (after is None or clock >= after) and (before is None or clock < before)
