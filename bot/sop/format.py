"""The SOP file format: pydantic models of triggers, conditions and steps, and its JSON Schema.

Regenerate `sops/schema.json` after changing a model: `python -m bot.sop.format > sops/schema.json`.
"""

from __future__ import annotations

import difflib
import json
import re
import sys
from collections.abc import Iterable, Iterator
from datetime import date, datetime, time, timedelta
from typing import Annotated, Any, ClassVar, Generic, Literal, TypeVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    PlainSerializer,
    PlainValidator,
    Tag,
    WithJsonSchema,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

ID_PATTERN = r"^[a-z][a-z0-9_]{1,63}$"
TEXT_KEY_PATTERN = r"^[a-z0-9_]+(\.[a-z0-9_]+)+$"
EVENT_PATTERN = r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+$"
COMMAND_PATTERN = r"^[a-z0-9_]{1,32}$"
VARIABLE_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]*$"
DURATION_PATTERN = r"^(\d+d)?(\d+h)?(\d+m)?(\d+s)?$"
TIME_OF_DAY_PATTERN = r"^([01]\d|2[0-3]):[0-5]\d$"

_DURATION = re.compile(r"(?:(?P<d>\d+)d)?(?:(?P<h>\d+)h)?(?:(?P<m>\d+)m)?(?:(?P<s>\d+)s)?")


# --- Small value types --------------------------------------------------------------------------


def parse_duration(value: object) -> timedelta:
    """`30s`, `10m`, `24h`, `3d`, `1d12h` → timedelta (longer than zero)."""
    if isinstance(value, timedelta):
        delta = value
    else:
        match = _DURATION.fullmatch(value.strip()) if isinstance(value, str) else None
        if match is None or not any(match.groups()):
            raise ValueError(
                f"{value!r} is not a duration; write it like 30s, 10m, 24h, 3d or 1d12h"
            )
        units = {unit: int(number or 0) for unit, number in match.groupdict().items()}
        try:
            delta = timedelta(
                days=units["d"], hours=units["h"], minutes=units["m"], seconds=units["s"]
            )
        except OverflowError:
            raise ValueError(f"{value!r} is far too long a duration") from None
    if delta <= timedelta(0):
        raise ValueError("must be longer than 0s")
    return delta


def format_duration(delta: timedelta) -> str:
    """The inverse of parse_duration: timedelta(days=1, hours=12) → `1d12h`."""
    seconds = int(delta.total_seconds())
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        count, seconds = divmod(seconds, size)
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts) or "0s"


def parse_time_of_day(value: object) -> time:
    """`HH:MM` (24-hour clock) → time."""
    if isinstance(value, time):
        return value
    if isinstance(value, str) and re.fullmatch(TIME_OF_DAY_PATTERN, value.strip()):
        hour, minute = value.strip().split(":")
        return time(int(hour), int(minute))
    raise ValueError(f"{value!r} is not a time of day; write it as HH:MM, e.g. 09:30 or 21:00")


def _matching(pattern: str, what: str) -> AfterValidator:
    compiled = re.compile(pattern)

    def check(value: str) -> str:
        if not compiled.match(value):
            raise ValueError(f"{value!r} is not {what}")
        return value

    return AfterValidator(check)


def _command_name(value: str) -> str:
    if value.startswith("/"):
        raise ValueError(f"write the command without the slash: {value[1:]!r}")
    return value


def _scalar(value: object) -> str | int | float | bool:
    if isinstance(value, str | int | float | bool):
        return value
    raise ValueError("must be text, a number or true/false")


Duration = Annotated[
    timedelta,
    PlainValidator(parse_duration),
    PlainSerializer(format_duration, return_type=str),
    WithJsonSchema(
        {"type": "string", "pattern": DURATION_PATTERN, "examples": ["30s", "10m", "24h", "1d12h"]}
    ),
]
TimeOfDay = Annotated[
    time,
    PlainValidator(parse_time_of_day),
    PlainSerializer(lambda value: value.strftime("%H:%M"), return_type=str),
    WithJsonSchema({"type": "string", "pattern": TIME_OF_DAY_PATTERN, "examples": ["09:30"]}),
]
Identifier = Annotated[
    str,
    _matching(ID_PATTERN, "an id: 2-64 lowercase letters, digits or _, starting with a letter"),
    WithJsonSchema({"type": "string", "pattern": ID_PATTERN}),
]
TextKey = Annotated[
    str,
    _matching(TEXT_KEY_PATTERN, "a text key such as welcome.greeting (from content/texts)"),
    WithJsonSchema({"type": "string", "pattern": TEXT_KEY_PATTERN}),
]
EventName = Annotated[
    str,
    _matching(EVENT_PATTERN, "an event name: dotted lowercase words such as checkin.done"),
    WithJsonSchema({"type": "string", "pattern": EVENT_PATTERN}),
]
CommandName = Annotated[
    str,
    BeforeValidator(lambda value: _command_name(value) if isinstance(value, str) else value),
    _matching(COMMAND_PATTERN, "a command: 1-32 lowercase letters, digits or _"),
    WithJsonSchema({"type": "string", "pattern": COMMAND_PATTERN}),
]
VariableName = Annotated[
    str,
    _matching(
        VARIABLE_PATTERN, "a variable name: letters, digits and _, not starting with a digit"
    ),
    WithJsonSchema({"type": "string", "pattern": VARIABLE_PATTERN}),
]
Scalar = Annotated[
    str | int | float | bool,
    PlainValidator(_scalar, json_schema_input_type=str | int | float | bool),
]
NonEmptyText = Annotated[str, Field(min_length=1)]
Tier = Literal["new", "ordinary", "seed", "value", "core", "dormant", "churned"]
Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]

T = TypeVar("T")


class Strict(BaseModel):
    """Base of every SOP model: unknown keys are errors that suggest the key meant."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    @model_validator(mode="before")
    @classmethod
    def _known_keys(cls, data: Any) -> Any:
        if isinstance(data, dict):
            allowed = [field.alias or name for name, field in cls.model_fields.items()]
            for key in data:
                if key not in allowed:
                    raise unknown_key(key, allowed)
        return data


def unknown_key(key: object, allowed: list[str]) -> PydanticCustomError:
    """The error for a key the model does not have, with the closest allowed key if any."""
    close = difflib.get_close_matches(str(key), allowed, n=1, cutoff=0.6)
    hint = f" (did you mean {close[0]!r}?)" if close else f"; keys here are: {', '.join(allowed)}"
    return PydanticCustomError(
        "unknown_key", "unknown key '{key}'{hint}", {"key": key, "hint": hint}
    )


def _key(model: BaseModel, name: str) -> str:
    return type(model).model_fields[name].alias or name


def _exactly_one(model: BaseModel, *names: str, required: bool = True) -> None:
    given = [_key(model, name) for name in names if getattr(model, name) not in (None, [], {})]
    shown = " or ".join(repr(_key(model, name)) for name in names)
    if len(given) > 1:
        raise ValueError(f"use only one of {shown}, not {' and '.join(map(repr, given))}")
    if required and not given:
        raise ValueError(f"needs one of {shown}")


def _at_least_one(model: BaseModel, *names: str) -> None:
    if all(getattr(model, name) in (None, [], {}) for name in names):
        raise ValueError(f"needs at least one of {', '.join(repr(name) for name in names)}")


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


# --- Triggers -----------------------------------------------------------------------------------


class TriggerBase(Strict):
    """Keys every trigger has."""

    id: str | None = None


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
    """A group message contains one of `keywords` or matches `regex`."""

    type: Literal["message"]
    keywords: list[NonEmptyText] = []
    regex: str | None = None
    case_sensitive: bool = False

    @model_validator(mode="after")
    def _pattern(self) -> MessageTrigger:
        _at_least_one(self, "keywords", "regex")
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
)
CONDITION_TYPES = ("member", "group", "time", "template")


def _typed(kinds: tuple[str, ...], what: str) -> BeforeValidator:
    def check(value: Any) -> Any:
        if not isinstance(value, dict):
            return value
        kind = value.get("type")
        if kind is None:
            raise PydanticCustomError(
                "missing_type",
                "a {what} needs a 'type': one of {kinds}",
                {"what": what, "kinds": ", ".join(kinds)},
            )
        if kind not in kinds:
            close = difflib.get_close_matches(str(kind), kinds, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else f"; use one of {', '.join(kinds)}"
            raise PydanticCustomError(
                "unknown_type",
                "unknown {what} type '{kind}'{hint}",
                {"what": what, "kind": kind, "hint": hint},
            )
        return value

    return BeforeValidator(check)


Trigger = Annotated[
    MemberJoinedTrigger
    | MemberLeftTrigger
    | MessageTrigger
    | CommandTrigger
    | ButtonTrigger
    | ScheduleTrigger
    | EventTrigger
    | SilentTrigger,
    Discriminator("type"),
    _typed(TRIGGER_TYPES, "trigger"),
]


# --- Conditions ---------------------------------------------------------------------------------


class MemberCondition(Strict):
    """The member's tenure, activity, tags, points or tier."""

    type: Literal["member"]
    tenure: DurationRange | None = None
    messages: MessageCount | None = None
    tags: TagMatch | None = None
    points: IntRange | None = None
    tier: list[Tier] | None = Field(default=None, min_length=1)

    @model_validator(mode="after")
    def _something(self) -> MemberCondition:
        _at_least_one(self, "tenure", "messages", "tags", "points", "tier")
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


# --- Steps --------------------------------------------------------------------------------------


class Button(Strict):
    """An inline button: `text` is a text key. It continues this flow at step `next`, opens
    `url`, or sends `data`, which `button` triggers of any SOP start on (e.g. `checkin`)."""

    text: TextKey
    next: Identifier | None = None
    url: str | None = None
    data: Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[a-z0-9_.-]+$")] | None = (
        None
    )

    @model_validator(mode="after")
    def _one_target(self) -> Button:
        _exactly_one(self, "next", "url", "data")
        if self.url is not None and not self.url.startswith(("https://", "http://", "tg://")):
            raise ValueError(f"'url' must start with https:// or tg://, not {self.url!r}")
        return self


class Variant(Strict):
    """One of several texts to try; the engine picks by `weight` and records which it sent."""

    id: Identifier
    template: TextKey
    weight: int = Field(default=1, ge=1)


class SendAction(Strict):
    """Send a text (`template`, or weighted `variants`), maybe with a photo and buttons."""

    template: TextKey | None = None
    variants: list[Variant] | None = Field(default=None, min_length=2)
    photo: str | None = None
    buttons: list[list[Button]] = []
    reply: bool = False
    pin: bool = False
    delete_after: Duration | None = None
    to: Literal["group", "member"] = "group"
    # When the group's send limit holds this message back, join it with this SOP's other
    # messages waiting there into one (then not as a reply: the text should name the member).
    combine: bool = False

    @field_validator("photo")
    @classmethod
    def _photo_source(cls, value: str | None) -> str | None:
        if value is not None and value.startswith("http://"):
            raise ValueError("use an https:// URL or a path under CONTENT_DIR")
        return value

    @model_validator(mode="after")
    def _one_text(self) -> SendAction:
        _exactly_one(self, "template", "variants")
        if self.combine and (self.buttons or self.photo or self.pin or self.to == "member"):
            raise ValueError("'combine' is for plain group texts: no buttons, photo or pin")
        ids = [variant.id for variant in self.variants or []]
        duplicates = sorted({variant for variant in ids if ids.count(variant) > 1})
        if duplicates:
            raise ValueError(f"variant ids must differ; {', '.join(duplicates)} is used twice")
        return self


class WaitAction(Strict):
    """Wait `for` a while, `until` a time of day, or for an `event` (with a `timeout`)."""

    for_: Duration | None = Field(default=None, alias="for")
    until: TimeOfDay | None = None
    event: str | None = None
    timeout: Duration | None = None

    @field_validator("event")
    @classmethod
    def _event_name(cls, value: str | None) -> str | None:
        if value is None or value == "member.message":
            return value
        if value.startswith("button."):
            if len(value) == len("button."):
                raise ValueError("'button.' needs the button's data after the dot")
            return value
        if not re.match(EVENT_PATTERN, value):
            raise ValueError(
                f"{value!r} is not an event: use member.message, button.<data> or an event "
                "name such as checkin.done"
            )
        return value

    @model_validator(mode="after")
    def _one_wait(self) -> WaitAction:
        _exactly_one(self, "for_", "until", "event")
        if self.event is not None and self.timeout is None:
            raise ValueError("waiting for an event needs a 'timeout', e.g. timeout: 24h")
        if self.event is None and self.timeout is not None:
            raise ValueError("'timeout' only goes with 'event'")
        return self


class IfAction(Strict):
    """Run `then` when every condition holds, else `else`."""

    conditions: list[Condition] = Field(min_length=1)
    then: list[Step] = Field(min_length=1)
    else_: list[Step] = Field(default=[], alias="else")


class TagAction(Strict):
    """Add and/or remove member tags."""

    add: list[NonEmptyText] = []
    remove: list[NonEmptyText] = []

    @model_validator(mode="after")
    def _something(self) -> TagAction:
        _at_least_one(self, "add", "remove")
        return self


class PointsAction(Strict):
    """Award (or, when negative, take) points, with a reason for the ledger."""

    award: int
    reason: NonEmptyText

    @field_validator("award")
    @classmethod
    def _not_zero(cls, value: int) -> int:
        if value == 0:
            raise ValueError("must not be 0")
        return value


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


def _at_most(days: int) -> AfterValidator:
    def check(value: timedelta | None) -> timedelta | None:
        if value is not None and value > timedelta(days=days):
            raise ValueError(f"must be at most {days}d")
        return value

    return AfterValidator(check)


LongDuration = Annotated[Duration, _at_most(3650)]  # rule windows: ten years at most


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


class EmitAction(Strict):
    """Emit an event that other SOPs can trigger on or wait for."""

    event: EventName
    data: dict[str, Scalar] = {}


class StartAction(Strict):
    """Start another SOP for the same member and group."""

    sop: Identifier


class StopAction(Strict):
    """End this run."""

    reason: str = ""


class StepBase(Strict):
    """Keys every step has besides its one action key (named by the class attribute `action`)."""

    action: ClassVar[str]
    id: Identifier | None = None
    enabled: bool = True
    continue_on_error: bool = False


class SendStep(StepBase):
    action: ClassVar[str] = "send"
    send: SendAction


class WaitStep(StepBase):
    action: ClassVar[str] = "wait"
    wait: WaitAction


class IfStep(StepBase):
    action: ClassVar[str] = "if"
    if_: IfAction = Field(alias="if")


class TagStep(StepBase):
    action: ClassVar[str] = "tag"
    tag: TagAction


class PointsStep(StepBase):
    action: ClassVar[str] = "points"
    points: PointsAction


class CheckinStep(StepBase):
    action: ClassVar[str] = "checkin"
    checkin: CheckinAction


class LeaderboardStep(StepBase):
    action: ClassVar[str] = "leaderboard"
    leaderboard: LeaderboardAction


class LotteryStep(StepBase):
    action: ClassVar[str] = "lottery"
    lottery: LotteryAction


class BroadcastStep(StepBase):
    action: ClassVar[str] = "broadcast"
    broadcast: BroadcastAction


class LiveStep(StepBase):
    action: ClassVar[str] = "live"
    live: LiveAction


class EmitStep(StepBase):
    action: ClassVar[str] = "emit"
    emit: EmitAction


class StartStep(StepBase):
    action: ClassVar[str] = "start"
    start: StartAction


class StopStep(StepBase):
    action: ClassVar[str] = "stop"
    stop: StopAction

    @field_validator("stop", mode="before")
    @classmethod
    def _bare_stop(cls, value: object) -> object:
        return {} if value is None else value


ACTIONS = (
    "send",
    "wait",
    "if",
    "tag",
    "points",
    "checkin",
    "leaderboard",
    "lottery",
    "broadcast",
    "live",
    "emit",
    "start",
    "stop",
)
COMMON_STEP_KEYS = ("id", "enabled", "continue_on_error")


def _action_of(value: Any) -> str | None:
    if isinstance(value, StepBase):
        return value.action
    if isinstance(value, dict):
        return next((key for key in ACTIONS if key in value), None)
    return None


def _one_action(value: Any) -> Any:
    if not isinstance(value, dict):
        return value
    actions = [key for key in ACTIONS if key in value]
    if len(actions) > 1:
        raise PydanticCustomError(
            "several_actions",
            "a step does exactly one thing, this one has {count} actions ({actions}); "
            "split it into {count} steps",
            {"count": len(actions), "actions": ", ".join(actions)},
        )
    if not actions:
        for key in value:
            if key not in COMMON_STEP_KEYS:
                raise unknown_key(key, [*COMMON_STEP_KEYS, *ACTIONS])
        raise PydanticCustomError(
            "no_action", "a step needs an action: one of {actions}", {"actions": ", ".join(ACTIONS)}
        )
    return value


Step = Annotated[
    Annotated[SendStep, Tag("send")]
    | Annotated[WaitStep, Tag("wait")]
    | Annotated[IfStep, Tag("if")]
    | Annotated[TagStep, Tag("tag")]
    | Annotated[PointsStep, Tag("points")]
    | Annotated[CheckinStep, Tag("checkin")]
    | Annotated[LeaderboardStep, Tag("leaderboard")]
    | Annotated[LotteryStep, Tag("lottery")]
    | Annotated[BroadcastStep, Tag("broadcast")]
    | Annotated[LiveStep, Tag("live")]
    | Annotated[EmitStep, Tag("emit")]
    | Annotated[StartStep, Tag("start")]
    | Annotated[StopStep, Tag("stop")],
    Discriminator(_action_of),
    BeforeValidator(_one_action),
]
IfAction.model_rebuild()


def walk_steps(steps: Iterable[Step]) -> Iterator[Step]:
    """Every step, depth first, including the `then` and `else` steps of `if` steps."""
    for step in steps:
        yield step
        if isinstance(step, IfStep):
            yield from walk_steps(step.if_.then)
            yield from walk_steps(step.if_.else_)


# --- The SOP ------------------------------------------------------------------------------------


class GroupSelector(Strict):
    """The groups an SOP runs in: these chat ids and/or groups with any of these tags."""

    ids: list[int] = []
    tags: list[NonEmptyText] = []

    @model_validator(mode="after")
    def _something(self) -> GroupSelector:
        _at_least_one(self, "ids", "tags")
        return self


class CatchUp(Strict):
    """What to do with a run that was due while the bot was down."""

    policy: Literal["run_late", "skip"] = "run_late"
    grace: Duration = timedelta(hours=1)


def _groups_shape(value: Any) -> Any:
    if isinstance(value, str) and value != "all":
        raise ValueError(f"must be 'all' or a mapping with 'ids' and/or 'tags', not {value!r}")
    return value


Groups = Annotated[
    Annotated[Literal["all"], Tag("all")] | Annotated[GroupSelector, Tag("selector")],
    Discriminator(lambda value: "all" if isinstance(value, str) else "selector"),
    BeforeValidator(_groups_shape),
]


class Sop(Strict):
    """One standard operating procedure: when it starts, for whom, and the steps it runs."""

    schema_version: Literal[1]
    id: Identifier
    name: NonEmptyText
    description: str = ""
    enabled: bool = True
    groups: Groups
    mode: Literal["single", "restart", "queued", "parallel"] = "single"
    concurrency_key: Literal["member", "group"] = "member"
    catch_up: CatchUp = CatchUp()
    variables: dict[VariableName, Scalar] = {}
    triggers: list[Trigger] = Field(min_length=1)
    conditions: list[Condition] = []
    steps: list[Step] = Field(min_length=1)


def json_schema_text() -> str:
    """The JSON Schema of SOP files, as committed in `sops/schema.json`."""
    schema = Sop.model_json_schema()
    return json.dumps(schema, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


if __name__ == "__main__":
    sys.stdout.write(json_schema_text())
