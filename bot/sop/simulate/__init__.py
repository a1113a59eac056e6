"""Dry runs of an SOP (`tidepool simulate`): the real engine, a simulated group, a fake clock.

Nothing reaches Telegram: a `RecordingOutbox` answers like the delivery service and keeps what
it was asked to send. The clock jumps from one moment something happens to the next (a run
falls due, the member acts), so days pass in well under a second. The
timeline is read back from the outbox and from the run journal (`sop_runs`, `sop_steps`); each
step says what it did as its step type describes it (`bot.sop.steps`).
"""

from bot.sop.simulate._simulation import (
    BOT_USERNAME,
    GROUP_ID,
    MEMBER_ID,
    STUCK,
    WRITE_TEXT,
    Press,
    Script,
    SimulationError,
    parse_script,
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
    "one_line",
    "parse_script",
    "simulate",
    "unreachable_bot",
]
