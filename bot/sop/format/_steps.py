"""Steps: the keys every step shares, a step model per action, the `Step` union, walk_steps."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Annotated, Any, ClassVar

from pydantic import BeforeValidator, Discriminator, Field, Tag, field_validator
from pydantic_core import PydanticCustomError

from ._actions import (
    EmitAction,
    PointsAction,
    SendAction,
    StartAction,
    StopAction,
    TagAction,
    WaitAction,
)
from ._common import Identifier, Strict, unknown_key
from ._conditions import Condition
from ._engagement import (
    BroadcastAction,
    CheckinAction,
    LeaderboardAction,
    LiveAction,
    LotteryAction,
    ReviewAction,
)
from ._moderation import (
    BanAction,
    DeleteAction,
    KickAction,
    MuteAction,
    RestrictAction,
    UnrestrictAction,
    WarnAction,
)


# `if` is the one action made of steps, so its model is here, with `Step`.
class IfAction(Strict):
    """Run `then` when every condition holds, else `else`."""

    conditions: list[Condition] = Field(min_length=1)
    then: list[Step] = Field(min_length=1)
    else_: list[Step] = Field(default=[], alias="else")


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


class ReviewStep(StepBase):
    action: ClassVar[str] = "review"
    review: ReviewAction


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


def _bare(value: object) -> object:
    """`kick:` with nothing after it is `kick: {}` (an action whose keys are all optional)."""
    return {} if value is None else value


class RestrictStep(StepBase):
    action: ClassVar[str] = "restrict"
    restrict: Annotated[RestrictAction, BeforeValidator(_bare)]


class UnrestrictStep(StepBase):
    action: ClassVar[str] = "unrestrict"
    unrestrict: Annotated[UnrestrictAction, BeforeValidator(_bare)]


class MuteStep(StepBase):
    action: ClassVar[str] = "mute"
    mute: MuteAction


class KickStep(StepBase):
    action: ClassVar[str] = "kick"
    kick: Annotated[KickAction, BeforeValidator(_bare)]


class BanStep(StepBase):
    action: ClassVar[str] = "ban"
    ban: Annotated[BanAction, BeforeValidator(_bare)]


class DeleteStep(StepBase):
    action: ClassVar[str] = "delete"
    delete: Annotated[DeleteAction, BeforeValidator(_bare)]


class WarnStep(StepBase):
    action: ClassVar[str] = "warn"
    warn: Annotated[WarnAction, BeforeValidator(_bare)]


ACTIONS = (
    "send",
    "wait",
    "if",
    "tag",
    "points",
    "checkin",
    "leaderboard",
    "review",
    "lottery",
    "broadcast",
    "live",
    "emit",
    "start",
    "stop",
    "restrict",
    "unrestrict",
    "mute",
    "kick",
    "ban",
    "delete",
    "warn",
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
    | Annotated[ReviewStep, Tag("review")]
    | Annotated[LotteryStep, Tag("lottery")]
    | Annotated[BroadcastStep, Tag("broadcast")]
    | Annotated[LiveStep, Tag("live")]
    | Annotated[EmitStep, Tag("emit")]
    | Annotated[StartStep, Tag("start")]
    | Annotated[StopStep, Tag("stop")]
    | Annotated[RestrictStep, Tag("restrict")]
    | Annotated[UnrestrictStep, Tag("unrestrict")]
    | Annotated[MuteStep, Tag("mute")]
    | Annotated[KickStep, Tag("kick")]
    | Annotated[BanStep, Tag("ban")]
    | Annotated[DeleteStep, Tag("delete")]
    | Annotated[WarnStep, Tag("warn")],
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
