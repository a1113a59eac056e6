"""The SOP itself: which groups it runs in, its catch-up policy, and its JSON Schema."""

# Pydantic copies a mutable field default for each instance; ruff knows a model by a BaseModel
# base in the same file only, so it cannot tell that `Strict` is one.
# ruff: noqa: RUF012

from __future__ import annotations

import json
from datetime import timedelta
from typing import Annotated, Any, Literal

from pydantic import (
    BeforeValidator,
    Discriminator,
    Field,
    Tag,
    ValidationInfo,
    field_validator,
    model_validator,
)

from ._common import (
    Duration,
    Identifier,
    NonEmptyText,
    Scalar,
    Strict,
    TextTree,
    VariableName,
    _at_least_one,
)
from ._conditions import Condition
from ._moderation_rule import ModerationRule
from ._referral import ReferralRule
from ._steps import Step
from ._triggers import MemberJoinedTrigger, Trigger


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
    # When a referral through a member's link counts (see `ReferralRule`); the first SOP in a
    # group with one sets the group's rule.
    referral: ReferralRule | None = None
    # Warnings, how many first messages are checked, the dry-run summary (see `ModerationRule`);
    # the first SOP in a group with one sets the group's rule.
    moderation: ModerationRule | None = None
    # The SOP's own texts per language; also `<id>.texts.yaml` beside the file. Looked up before
    # the bot's catalogue (content/texts); a text in one language only serves every group.
    texts: dict[Literal["zh", "en"], TextTree] = {}
    # A check every joiner passes first (the join check): while this SOP's run for a joiner is
    # live, the group's other `member_joined` SOPs wait, and start once it ended, unless the
    # member is no longer in the group (or this run removed them).
    join_gate: bool = False

    @field_validator("join_gate")
    @classmethod
    def _gate(cls, join_gate: bool, info: ValidationInfo) -> bool:
        triggers = info.data.get("triggers")
        if not join_gate or triggers is None:  # triggers that failed are reported already
            return join_gate
        joins = [t for t in triggers if isinstance(t, MemberJoinedTrigger)]
        if not joins:
            raise ValueError("a join_gate SOP needs a member_joined trigger: it checks joiners")
        if any(trigger.batch_window is not None for trigger in joins):
            raise ValueError(
                "a join_gate SOP checks each joiner alone: give its member_joined trigger "
                "batch_window: null"
            )
        if info.data.get("concurrency_key") != "member":
            raise ValueError("a join_gate SOP runs per member: concurrency_key must be member")
        return join_gate


def json_schema_text() -> str:
    """The JSON Schema of SOP files, as committed in `sops/schema.json`."""
    schema = Sop.model_json_schema()
    return json.dumps(schema, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
