"""The flow's own actions: send (with buttons, variants), wait, tag, points, emit, start, stop."""

# Pydantic copies a mutable field default for each instance; ruff knows a model by a BaseModel
# base in the same file only, so it cannot tell that `Strict` is one.
# ruff: noqa: RUF012

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator

from ._common import (
    EVENT_PATTERN,
    Duration,
    EventName,
    Identifier,
    NonEmptyText,
    Scalar,
    Strict,
    TextKey,
    TimeOfDay,
    _at_least_one,
    _exactly_one,
)


class Button(Strict):
    """An inline button: `text` is a text key. It continues this flow at step `next`, opens
    `url`, or sends `data`, which `button` triggers of any SOP start on (e.g. `checkin`).

    `only: member`: a flow button only the run's member may press (anyone else is told it is
    not for them, and nothing happens); it continues that run only, never starting a new one."""

    text: TextKey
    next: Identifier | None = None
    url: str | None = None
    data: Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[a-z0-9_.-]+$")] | None = (
        None
    )
    only: Literal["member"] | None = None

    @model_validator(mode="after")
    def _one_target(self) -> Button:
        _exactly_one(self, "next", "url", "data")
        if self.only is not None and self.next is None:
            raise ValueError("'only' goes with 'next': only a flow button knows its member")
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
    # `admins`: privately to each admin of the group who has started the bot (none reached:
    # the step is skipped, said in the log and the journal; never posted in the group instead).
    to: Literal["group", "member", "admins"] = "group"
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
        if self.combine and (self.buttons or self.photo or self.pin or self.to != "group"):
            raise ValueError("'combine' is for plain group texts: no buttons, photo or pin")
        if self.to == "admins" and (self.reply or self.pin or self.delete_after is not None):
            raise ValueError("'to: admins' goes privately: no 'reply', 'pin' or 'delete_after'")
        if self.to != "group" and any(b.only for row in self.buttons for b in row):
            raise ValueError("'only: member' buttons are for messages to the group")
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
