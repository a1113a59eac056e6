"""The actions that run the bot's features: check-in, leaderboard, lottery, broadcast and live."""

# Pydantic copies a mutable field default for each instance; ruff knows a model by a BaseModel
# base in the same file only, so it cannot tell that `Strict` is one.
# ruff: noqa: RUF012

from __future__ import annotations

from datetime import date, timedelta
from typing import Annotated, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import AfterValidator, Field, WithJsonSchema, field_validator, model_validator

from ._common import (
    Duration,
    Identifier,
    LongDuration,
    Strict,
    TextKey,
    Tier,
    TimeOfDay,
    _at_most,
    parse_duration,
)


class CheckinAction(Strict):
    """Check the member in for today (once a day): points, streak and milestone bonuses.

    Sets `checkin` for the texts after it (new, streak, points, bonus, rank, balance, milestone)
    and emits `checkin.done` for a new check-in and `checkin.milestone` when the streak reaches
    one of `milestones`."""

    points: int = Field(default=10, ge=0, le=1_000_000)
    day_start_hour: int = Field(default=4, ge=0, le=23)
    freezes_per_month: int = Field(default=0, ge=0, le=31)
    milestones: dict[Annotated[int, Field(ge=2)], Annotated[int, Field(ge=0, le=1_000_000)]] = {}


class LeaderboardAction(Strict):
    """Read the group's leaderboard (by check-ins and by points earned) for the texts after it
    (`leaderboard`); a week runs Monday to Sunday in the group's time."""

    period: Literal["week", "last_week", "month", "all"] = "last_week"
    limit: int = Field(default=10, ge=1, le=50)


class ReviewAction(Strict):
    """Read the group's activity review (活动复盘) for the texts after it (`review`): members,
    active members, messages, check-ins, joins and leaves of the week and of the week before,
    its peak hours, and the best and worst answered SOP step. A week runs Monday to Sunday in
    the group's time; `last_week` is the last full one, `week` the one under way.

    A step counts when an SOP sent it to `min_sends` members or more that week; its answer rate
    is the share who wrote or pressed a button in the group within 24 hours (as /stats says)."""

    period: Literal["last_week", "week"] = "last_week"
    min_sends: int = Field(default=3, ge=1, le=10_000)


class ActivityCount(Strict):
    """At least `count` of something within the last `window`."""

    count: int = Field(ge=1, le=100_000)
    window: Annotated[Duration, _at_most(366)]


Language = Literal["zh", "en"]
PrizeText = Annotated[str, Field(min_length=1, max_length=200)]
Wording = PrizeText | dict[Language, PrizeText]  # one text, or one per language


class LotteryRules(Strict):
    """Who may enter a lottery, and what entering costs. Every rule left out lets everyone in.

    A member's tenure counts from the join the bot saw, or from when the bot came to the group
    for members who were there before it."""

    min_tenure: LongDuration | None = None
    min_messages: ActivityCount | None = None
    min_checkins: ActivityCount | None = None
    min_points: int | None = Field(default=None, ge=1, le=1_000_000_000)
    tiers: list[Tier] = []
    tags: list[Annotated[str, Field(min_length=1, max_length=64)]] = Field(
        default=[], max_length=10
    )  # any one of these
    exclude_winners_within: Annotated[Duration, _at_most(366)] | None = None
    entry_cost: int = Field(default=0, ge=0, le=1_000_000)
    max_entries: int | None = Field(default=None, ge=1, le=10_000_000)


class LotteryAction(Strict):
    """Open a lottery in the group: a post with an Enter button, drawn after `duration`.

    Sets `lottery` (id, prize, winners, draws_at, commitment) for the texts after it."""

    prize: Wording
    winners: int = Field(default=1, ge=1, le=50)
    duration: Annotated[Duration, _at_most(60)]
    rules: LotteryRules = LotteryRules()
    claim: Wording | None = None  # how winners claim the prize; default: contact an admin


class BroadcastAction(Strict):
    """Queue a text to the group as a push: it waits out the group's quiet hours, counts
    toward its daily cap (over it: postponed a day, or dropped), and goes once, restarts or not.

    With `rotate`, the text gets `item`: the group's next entry of
    `content/rotations/<rotate>.yaml` (a list; each entry a text, or one text per language)."""

    template: TextKey
    rotate: Identifier | None = None
    urgent: bool = False  # sent in quiet hours and over the cap too
    over_cap: Literal["postpone", "drop"] = "postpone"
    pin: bool = False


def _reminder_before(value: str) -> str:
    if value.strip().lower() in ("start", "0", "0s"):
        return "start"
    parse_duration(value)
    return value.strip()


ReminderBefore = Annotated[
    str,
    AfterValidator(_reminder_before),
    WithJsonSchema({"type": "string", "examples": ["1d", "1h", "10m", "start"]}),
]


class LiveStart(Strict):
    """When a live starts: `at` a time of day, `days` after the day the step runs (or `on` a
    fixed date), on the wall clock of the group's time zone (or `timezone`)."""

    at: TimeOfDay
    days: int = Field(default=0, ge=0, le=366)
    on: date | None = None
    timezone: str | None = None

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                ZoneInfo(value)
            except (ZoneInfoNotFoundError, ValueError):
                raise ValueError(f"unknown time zone {value!r}; e.g. Asia/Shanghai") from None
        return value

    @model_validator(mode="after")
    def _one_day(self) -> LiveStart:
        if self.on is not None and self.days:
            raise ValueError("use either 'on' or 'days', not both")
        return self


class LiveAction(Strict):
    """Plan a live-stream session in the group: an announcement (pinned until it ends) with
    ⏰ Remind me and ▶️ Watch buttons, and reminders `reminders` before it starts."""

    title: Wording
    start: LiveStart
    link: str | None = None
    host: Annotated[str, Field(max_length=100)] = ""
    length: Annotated[Duration, _at_most(1)] = timedelta(hours=2)
    reminders: list[ReminderBefore] = Field(default=["1d", "1h", "10m", "start"], max_length=8)
    pin: bool = True

    @field_validator("link")
    @classmethod
    def _https(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("https://", "http://")):
            raise ValueError(f"'link' must start with https://, not {value!r}")
        return value
