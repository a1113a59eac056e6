"""What every part of the engine works with: the stores, the clock, the groups, the runs in hand."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from sqlalchemy.ext.asyncio import AsyncEngine

from bot.clock import Clock
from bot.sop.engine._context import Context
from bot.sop.engine._leases import Held, Leases, Tasks
from bot.sop.engine._waits import EventWaits
from bot.sop.facts import Facts
from bot.sop.library import Library
from bot.sop.runs import RunStore


@dataclass(frozen=True, slots=True)
class Shared:
    """Built once by `Engine` and given to each part, so that the parts work on the same runs."""

    db: AsyncEngine
    library: Library
    runs: RunStore
    clock: Clock
    facts: Facts
    context: Context  # what the engine knows of groups; the variables of texts
    leases: Leases = field(default_factory=Leases)  # the runs in hand
    tasks: Tasks = field(default_factory=Tasks)  # the work in the background
    held: Held = field(default_factory=Held)  # runs waiting for their message to go
    waits: EventWaits = field(default_factory=EventWaits)  # runs waiting for an event
    wake: asyncio.Event = field(default_factory=asyncio.Event)  # the timer: runs wait for a time
