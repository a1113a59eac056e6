"""Dry runs of an SOP (`tidepool simulate`): the real engine, a simulated group, a fake clock.

Members (one or several) are started by the SOP's trigger, write and press buttons as the
`Script` says; a start that a trigger's cooldown refuses is shown with why. Nothing reaches
Telegram: a `RecordingOutbox` answers like the delivery service and keeps what it was asked to
send. The clock jumps from one moment something happens to the next (a run falls due, a member
acts), so days pass in well under a second. The timeline is read back from the outbox and from
the run journal (`sop_runs`, `sop_steps`); each step says what it did as its step type
describes it (`bot.sop.steps`).
"""

from bot.sop.simulate._script import Press, Script, SimulationError, Write, parse_script
from bot.sop.simulate._simulation import (
    BOT_USERNAME,
    GROUP_ID,
    MEMBER_ID,
    STUCK,
    WRITE_TEXT,
    simulate,
)
from bot.sop.simulate._telegram import Unreachable, unreachable_bot
from bot.sop.simulate._timeline import TEXT_LIMIT, Entry, RecordingOutbox, Sent, Timeline, one_line

__all__ = [
    "BOT_USERNAME",
    "GROUP_ID",
    "MEMBER_ID",
    "STUCK",
    "TEXT_LIMIT",
    "WRITE_TEXT",
    "Entry",
    "Press",
    "RecordingOutbox",
    "Script",
    "Sent",
    "SimulationError",
    "Timeline",
    "Unreachable",
    "Write",
    "one_line",
    "parse_script",
    "simulate",
    "unreachable_bot",
]
