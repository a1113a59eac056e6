"""The SOP engine: starts runs from triggers, moves them step by step, resumes them after restarts.

Runs live in the database (`bot.sop.runs`). A run at a step either acts and moves on (tags,
points, events, conditions: one transaction), claims a send and moves on once Telegram answered,
or waits: for a while, until a time of day, or for an event with a timeout. One timer wakes at
the earliest `wake_at` and takes due runs in bulk, so thousands of waits ending at once move on
together. Runs at the same step are worked on together, and runs that a trigger started
together (joins greeted as one, a daily digest) share one message for each send step until
their first wait; after it, each member goes on alone.

A wait that fell due while the bot was down is run late within the SOP's catch-up grace, or
skipped, and either way reported to the owners.

The parts, each given what it needs by `Engine`:

    _engine     Engine: assembles the parts; life cycle; what the rest of the bot calls
    _triggers   the SOPs by trigger; joins, leaves, messages, buttons, events, the calendar
    _joins      joins greeted together, after the joiner's join check when there is one
    _floods     each member's latest messages, for `flood` triggers
    _starting   starting runs as the SOP's mode says; cancelling runs
    _cooldowns  triggers' cooldowns: the last start per member or group, refused starts
    _timer      due runs taken on time, in bulk; catch-up after the bot was down
    _stepping   a step's type found in `bot.sop.steps`, the common step keys, the journal
    _shared     what every part works with, built once: stores, clock, groups, runs in hand
    _context    what the engine knows of groups; the variables of texts and conditions
    _leases     the runs in hand, and the engine's background tasks
    _failures   failed runs told to the owners, once per SOP and day
    _waits      the runs waiting for an event, by chat, member and event
"""

from bot.sop.engine._cooldowns import Cooldowns, Refusal, next_start
from bot.sop.engine._engine import Engine
from bot.sop.engine._joins import JOIN_GATHER
from bot.sop.engine._starting import MEMBERS_IN_QUERY
from bot.sop.engine._timer import (
    CATCH_UP_AFTER,
    DUE_BATCH,
    HELD_RECHECK,
    LOOKAHEAD,
    CatchUpReport,
    Notify,
)
from bot.sop.engine._triggers import (
    PRESS_MEMORY,
    PRESS_PATIENCE,
    Judgement,
    TriggerIndex,
    silent_trigger,
)
from bot.sop.steps import MAX_CHAIN, TAG_COLUMNS, Outbox, Waker

__all__ = [
    "CATCH_UP_AFTER",
    "DUE_BATCH",
    "HELD_RECHECK",
    "JOIN_GATHER",
    "LOOKAHEAD",
    "MAX_CHAIN",
    "MEMBERS_IN_QUERY",
    "PRESS_MEMORY",
    "PRESS_PATIENCE",
    "TAG_COLUMNS",
    "CatchUpReport",
    "Cooldowns",
    "Engine",
    "Judgement",
    "Notify",
    "Outbox",
    "Refusal",
    "TriggerIndex",
    "Waker",
    "next_start",
    "silent_trigger",
]
