"""What happened, told by the service that saw it to the services that act on it.

Services that would otherwise need each other (the registry sees joins that the SOP engine
acts on; a lottery draws winners that SOPs greet; the engine reloads files the calendar plans
from) share one `Bus`, handed to each in its constructor. A service that acts on a happening
subscribes in its own constructor, so building it is wiring it: nothing is attached later.

    MemberJoined, MemberLeft    registry  -> SOP engine, referrals
    GroupDiscovered             registry  -> rights check
    GroupsChanged               registry  -> SOP calendar
    SopsReloaded                engine    -> SOP calendar
    Happened                    lotteries, analytics -> SOP engine (`event` triggers)
"""

from __future__ import annotations

import asyncio
import inspect
from collections import defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar

from aiogram.types import User
from loguru import logger


@dataclass(frozen=True)
class MemberJoined:
    """A join the registry counted (not a bot, not one seen twice).

    `first`: the bot never knew them in this group before (not a rejoin). `invite_link`: the
    link Telegram said they joined through (an admin bot is told), as Telegram showed it."""

    chat_id: int
    user: User
    at: datetime
    first: bool = True
    invite_link: str | None = None
    invite_name: str | None = None
    via_request: bool = False
    added_by: int | None = None  # who added them, when not themselves


@dataclass(frozen=True)
class MemberLeft:
    """A leave the registry counted."""

    chat_id: int
    user: User
    at: datetime


@dataclass(frozen=True)
class GroupDiscovered:
    """A group first seen through a message (the bot was there before this database)."""

    chat_id: int


@dataclass(frozen=True)
class GroupsChanged:
    """A group's status changed: the bot was added or removed, or the group migrated."""


@dataclass(frozen=True)
class SopsReloaded:
    """SOP files were read again, or an SOP was switched on or off in a group."""


@dataclass(frozen=True)
class Happened:
    """A named event for SOP `event` triggers (`lottery.won`, `tier.changed`), from a feature or
    an SOP's `emit` step."""

    name: str
    chat_id: int
    user_id: int | None
    data: dict[str, Any] = field(default_factory=dict)
    chain: int = 0  # SOPs that started each other to emit it: a loop stops at `MAX_CHAIN`


E = TypeVar("E")
Handler = Callable[[E], Awaitable[None] | None]


class Bus:
    """Hands each happening to its subscribers in the order they subscribed.

    A subscriber's failure is logged with the happening and does not stop the others or the
    service that told it.
    """

    def __init__(self) -> None:
        self._handlers: defaultdict[type, list[Callable[[Any], Any]]] = defaultdict(list)
        self._background: set[asyncio.Task[None]] = set()

    def subscribe(self, kind: type[E], handler: Handler[E]) -> None:
        self._handlers[kind].append(handler)

    async def publish(self, event: object) -> None:
        """Tell every subscriber and wait until each has handled it."""
        for handler in self._handlers[type(event)]:
            try:
                result = handler(event)
                if inspect.isawaitable(result):
                    await result
            except Exception:
                logger.opt(exception=True).error("handling {} failed", event)

    def publish_soon(self, event: object) -> None:
        """Tell every subscriber without waiting (for callers that cannot await)."""
        task = asyncio.get_running_loop().create_task(self.publish(event))
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def settle(self) -> None:
        """Wait for happenings told with `publish_soon` (a clean stop, a test's settle)."""
        while self._background:
            await asyncio.gather(*list(self._background), return_exceptions=True)
