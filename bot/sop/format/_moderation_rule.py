"""The `moderation` section: how many warnings mute a member, how many of a newcomer's
messages are checked, when a dry run's summary goes to the admins.

The first SOP running in a group with this section sets the group's rule (the shipped
`sops/flood.yaml` has one); a group without one uses the defaults.
"""

from __future__ import annotations

from datetime import time, timedelta

from pydantic import Field

from ._common import LongDuration, Strict, TimeOfDay
from ._moderation import Term


class Warnings(Strict):
    """`limit` warnings within `within` (this one included) mute the member for `mute`."""

    limit: int = Field(default=3, ge=1, le=100)
    within: LongDuration = timedelta(days=30)
    mute: Term = timedelta(days=1)  # 30s to 366d: Telegram takes longer as for good


class ModerationRule(Strict):
    """A group's moderation rule.

    `first_messages`: a newcomer's first this many substantive messages (short greetings do
    not count) are checked; passing them all approves the member. `warnings`: when warnings
    mute. `summary_at`: in dry mode, the time of day (the group's) the admins get a summary of
    what would have been done the day before, when anything would have."""

    first_messages: int = Field(default=3, ge=1, le=50)
    warnings: Warnings = Warnings()
    summary_at: TimeOfDay = time(20, 0)
