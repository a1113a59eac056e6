"""What waits in a chat's queue (`_Job`, `_Lane`) and what a caller gets back (`Delivered`)."""

from __future__ import annotations

import asyncio
import math
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime

from aiogram.types import ReplyMarkupUnion

from bot.outbox import Asking, Before

GROUP_WINDOW = 60.0  # seconds over which `per_group_minute` counts

Request = Callable[[int], Awaitable[object]]


@dataclass(frozen=True, slots=True)
class Delivered:
    """How a delivery ended: `chat_id` is where it went (the new id after a migration).

    `combined` is how many requests the message answered: more than one when texts sent with
    the same `combine` key went out together (see the docstring of `bot.delivery`).
    """

    ok: bool
    message_id: int | None
    chat_id: int
    error: str | None = None
    attempts: int = 0
    combined: int = 1


@dataclass(frozen=True, slots=True)
class _Text:
    """A text sent with a `combine` key: what it says and what must match to share a message."""

    combine: str
    text: str
    parse_mode: str | None
    disable_notification: bool
    reply_markup: ReplyMarkupUnion | None

    def alike(self, other: _Text) -> bool:
        return (
            self.combine == other.combine
            and self.parse_mode == other.parse_mode
            and self.disable_notification == other.disable_notification
            and self.reply_markup == other.reply_markup
        )


@dataclass(eq=False, slots=True)
class _Job:
    """One request waiting in a chat's queue; `request(chat_id)` makes the API call."""

    method: str
    requested_chat_id: int
    chat_id: int  # where it goes now: differs after a migration
    source: str
    request: Request
    paced: bool
    future: asyncio.Future[Delivered]
    queued_at: datetime
    message_id: int | None = None
    attempts: int = 0
    text: _Text | None = None  # set when it may be combined with texts alike
    parts: list[_Job] = field(default_factory=list)  # the requests a combined message answers
    before: Before | None = None  # awaited once before it is paced
    asking: Asking | None = None  # what `before` returned: called as Telegram is asked
    prepared: bool = False  # its `before` has run
    ahead: bool = False  # counted among the few prepared ahead of their turn

    @property
    def unprepared(self) -> list[_Job]:
        """The requests it answers whose `before` has not run yet."""
        return [job for job in self.answers if job.before is not None and not job.prepared]

    @property
    def answers(self) -> list[_Job]:
        """The requests this call answers: its parts when combined, else itself."""
        return self.parts or [self]

    @property
    def given_up(self) -> bool:
        """Every caller stopped waiting: the call can be dropped."""
        return all(job.future.done() for job in self.answers)


@dataclass(eq=False, slots=True)
class _Lane:
    """A chat's queue and the timing of what was sent there (clock seconds)."""

    chat_id: int
    jobs: deque[_Job] = field(default_factory=deque)
    busy: bool = False
    queued: bool = False  # in the scheduler's ring: idle, with jobs
    paused_until: float = -math.inf
    next_send_at: float = -math.inf
    window: deque[float] | None = None  # answer times of recent sends, groups only

    def settled(self, now: float) -> bool:
        """Nothing queued or sent recently: the lane can be forgotten."""
        last = self.window[-1] + GROUP_WINDOW if self.window else -math.inf
        return (
            not self.jobs
            and not self.busy
            and now >= max(self.paused_until, self.next_send_at, last)
        )
