"""Conditions (member, group, time, template) and the ranges and tag matches they use."""

# Pydantic copies a mutable field default for each instance; ruff knows a model by a BaseModel
# base in the same file only, so it cannot tell that `Strict` is one.
# ruff: noqa: RUF012

from __future__ import annotations

from typing import Annotated, Generic, Literal, TypeVar

from pydantic import Discriminator, Field, model_validator

from ._common import Duration, NonEmptyText, Strict, Tier, TimeOfDay, Weekday, _at_least_one, _typed

T = TypeVar("T")


class Range(Strict, Generic[T]):
    """`min` and/or `max`, both inclusive."""

    min: T | None = None
    max: T | None = None

    @model_validator(mode="after")
    def _bounded(self) -> Range[T]:
        _at_least_one(self, "min", "max")
        if self.min is not None and self.max is not None and self.min > self.max:  # type: ignore[operator]
            raise ValueError("'min' is greater than 'max'")
        return self


class DurationRange(Range[Duration]):
    """A range of durations, such as a member's time in the group."""


class IntRange(Range[int]):
    """A range of whole numbers, such as points or member counts."""


class TagMatch(Strict):
    """Tags that must be present: any one of, all of, none of."""

    any: list[str] = []
    all: list[str] = []
    none: list[str] = []

    @model_validator(mode="after")
    def _something(self) -> TagMatch:
        _at_least_one(self, "any", "all", "none")
        return self


class MessageCount(Strict):
    """How many messages the member wrote within `window`."""

    window: Duration
    min: int | None = Field(default=None, ge=0)
    max: int | None = Field(default=None, ge=0)

    @model_validator(mode="after")
    def _bounded(self) -> MessageCount:
        _at_least_one(self, "min", "max")
        return self


CONDITION_TYPES = ("member", "group", "time", "template")


class MemberCondition(Strict):
    """The member's tenure, activity, tags, points or tier, or whether moderation approved them
    (`approved`: they passed their first messages' checks, were approved or added by an admin,
    are an admin, or were in the group before moderation began)."""

    type: Literal["member"]
    tenure: DurationRange | None = None
    messages: MessageCount | None = None
    tags: TagMatch | None = None
    points: IntRange | None = None
    tier: list[Tier] | None = Field(default=None, min_length=1)
    approved: bool | None = None

    @model_validator(mode="after")
    def _something(self) -> MemberCondition:
        _at_least_one(self, "tenure", "messages", "tags", "points", "tier", "approved")
        return self


class GroupCondition(Strict):
    """The group's tags or member count."""

    type: Literal["group"]
    tags: TagMatch | None = None
    members: IntRange | None = None

    @model_validator(mode="after")
    def _something(self) -> GroupCondition:
        _at_least_one(self, "tags", "members")
        return self


class TimeCondition(Strict):
    """Between `after` and `before` (may wrap midnight), on `weekdays`, in `timezone`."""

    type: Literal["time"]
    after: TimeOfDay | None = None
    before: TimeOfDay | None = None
    weekdays: list[Weekday] | None = Field(default=None, min_length=1)
    timezone: str | None = None

    @model_validator(mode="after")
    def _something(self) -> TimeCondition:
        _at_least_one(self, "after", "before", "weekdays")
        return self


class TemplateCondition(Strict):
    """A Jinja2 expression over the template context, e.g. `member.messages_7d > 3`."""

    type: Literal["template"]
    value: NonEmptyText


Condition = Annotated[
    MemberCondition | GroupCondition | TimeCondition | TemplateCondition,
    Discriminator("type"),
    _typed(CONDITION_TYPES, "condition"),
]
