"""Triggers: what starts an SOP run (a join, a leave, a message, a command, a schedule, …)."""

# Pydantic copies a mutable field default for each instance; ruff knows a model by a BaseModel
# base in the same file only, so it cannot tell that `Strict` is one.
# ruff: noqa: RUF012

from __future__ import annotations

from datetime import datetime, time, timedelta
from typing import Annotated, Literal

from pydantic import Discriminator, Field, model_validator

from ._common import (
    CommandName,
    Duration,
    EventName,
    LongDuration,
    NonEmptyText,
    Strict,
    TimeOfDay,
    _at_least_one,
    _exactly_one,
    _typed,
)
from ._moderation import MessageChecks


class TriggerBase(Strict):
    """Keys every trigger has.

    `cooldown`: this trigger starts the SOP at most once per period for a member (for the
    group when the SOP's `concurrency_key` is `group`) in a group; a start within it is skipped.
    Whole days (`1d`, `7d`) are calendar days in the group's time zone: `1d` is once per local
    day, `7d` once in seven local days. Other durations (`12h`, `1d12h`) run from the last
    start. Every start of the SOP counts, whatever started it, and is kept across restarts.
    """

    id: str | None = None
    cooldown: LongDuration | None = None


class MemberJoinedTrigger(TriggerBase):
    """A member joined the group.

    Members who join within `batch_window` of the first are started together: the flow's
    messages before its first wait greet them all at once (texts name them with `members`),
    after it each member goes on alone. `null` starts each member at once, alone.
    """

    type: Literal["member_joined"]
    batch_window: Duration | None = timedelta(minutes=1)


class MemberLeftTrigger(TriggerBase):
    """A member left or was removed."""

    type: Literal["member_left"]


class MessageTrigger(TriggerBase):
    """A group message contains one of `keywords` or matches `regex`.

    With `checks`, only a newcomer's message that the first-message checks judged so starts it
    (and `keywords` or `regex`, when given, must match too); the checks look at the first
    messages of members not yet approved."""

    type: Literal["message"]
    keywords: list[NonEmptyText] = []
    regex: str | None = None
    case_sensitive: bool = False
    checks: MessageChecks | None = None

    @model_validator(mode="after")
    def _pattern(self) -> MessageTrigger:
        if self.checks is None:
            _at_least_one(self, "keywords", "regex")
        return self


# A burst longer than this is no flood but a busy member; the engine keeps each member's last
# messages for at most this long.
FLOOD_LONGEST = timedelta(minutes=10)


class FloodTrigger(TriggerBase):
    """A member sent `messages` messages within `within` (an admin's never count).

    It fires once per burst: after it fired, the member's next `messages` messages count anew.
    """

    type: Literal["flood"]
    messages: int = Field(ge=2, le=100)
    within: Duration

    @model_validator(mode="after")
    def _short(self) -> FloodTrigger:
        if self.within > FLOOD_LONGEST:
            raise ValueError("'within' must be at most 10m: a longer burst is a busy member")
        return self


class CommandTrigger(TriggerBase):
    """A member sent `/command`."""

    type: Literal["command"]
    command: CommandName


class ButtonTrigger(TriggerBase):
    """A member pressed a button that carries callback `data`."""

    type: Literal["button"]
    data: Annotated[str, Field(min_length=1, max_length=64)]


class ScheduleTrigger(TriggerBase):
    """On a calendar: a 5-field `cron`, once `at` a moment, or `every` interval."""

    type: Literal["schedule"]
    cron: str | None = None
    at: datetime | None = None
    every: Duration | None = None
    timezone: str | None = None

    @model_validator(mode="after")
    def _one_schedule(self) -> ScheduleTrigger:
        _exactly_one(self, "cron", "at", "every")
        return self


class EventTrigger(TriggerBase):
    """Another part of the bot emitted `event` (checkin.done, lottery.drawn, tier.changed …)."""

    type: Literal["event"]
    event: EventName


class SilentTrigger(TriggerBase):
    """A member has written nothing for `days` days; checked daily `at` in the group's time.

    The members found by one daily check run together, so a shared message names them all.
    """

    type: Literal["silent"]
    days: int = Field(ge=1)
    at: TimeOfDay = time(10, 0)


TRIGGER_TYPES = (
    "member_joined",
    "member_left",
    "message",
    "command",
    "button",
    "schedule",
    "event",
    "silent",
    "flood",
)

Trigger = Annotated[
    MemberJoinedTrigger
    | MemberLeftTrigger
    | MessageTrigger
    | CommandTrigger
    | ButtonTrigger
    | ScheduleTrigger
    | EventTrigger
    | SilentTrigger
    | FloodTrigger,
    Discriminator("type"),
    _typed(TRIGGER_TYPES, "trigger"),
]
