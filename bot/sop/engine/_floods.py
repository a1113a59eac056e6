"""Telling floods: each member's latest messages per group, counted against `flood` triggers.

Every group message of a member passes here while a `flood` trigger is loaded, so it costs a
dictionary lookup and a deque append; only a member with as many messages in the window as the
smallest trigger asks for is counted against the triggers. Members quiet for longer than the
longest window are forgotten, swept once per that window. Nothing here is stored: a restart
forgets the bursts in progress, which at worst lets one flood go unnoticed.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass

from bot.sop.format import FloodTrigger


@dataclass(frozen=True, slots=True)
class FloodLimits:
    """What the loaded flood triggers ask for, at the extremes."""

    fewest: int  # messages: below this nobody floods
    most: int  # messages: the most a member's burst needs to keep
    longest: float  # seconds: a message older than this counts for no trigger

    @classmethod
    def of(cls, triggers: Iterable[FloodTrigger]) -> FloodLimits | None:
        found = list(triggers)
        if not found:
            return None
        return cls(
            min(trigger.messages for trigger in found),
            max(trigger.messages for trigger in found),
            max(trigger.within.total_seconds() for trigger in found),
        )


class Burst:
    """A member's latest messages in a group (their times), how many they sent, and where each
    trigger fired last (the count then): a trigger fires once per burst."""

    __slots__ = ("fired", "seen", "stamps")

    def __init__(self, most: int) -> None:
        self.stamps: deque[float] = deque(maxlen=most)
        self.seen = 0
        self.fired: dict[tuple[str, int], int] = {}

    def reached(self, trigger: FloodTrigger, key: tuple[str, int], at: float) -> bool:
        """`trigger.messages` messages within `trigger.within` of `at`, all since the trigger
        (`key`: its SOP and place) last fired."""
        wanted = trigger.messages
        if self.seen - self.fired.get(key, 0) < wanted:
            return False
        within = trigger.within.total_seconds()
        count = 0
        for stamp in reversed(self.stamps):
            if at - stamp > within:
                break
            count += 1
        return count >= wanted

    def fire(self, key: tuple[str, int]) -> None:
        """The trigger `key` fired (or was let pass): count anew from here."""
        self.fired[key] = self.seen


class Bursts:
    """The bursts of every member writing in the groups, while flood triggers are loaded."""

    def __init__(self) -> None:
        self._limits: FloodLimits | None = None
        self._bursts: dict[tuple[int, int], Burst] = {}
        self._swept = 0.0

    def arm(self, limits: FloodLimits | None) -> None:
        """The loaded flood triggers changed (None: there are none): start counting anew."""
        self._limits = limits
        self._bursts.clear()

    @property
    def armed(self) -> bool:
        return self._limits is not None

    def note(self, chat_id: int, user_id: int, at: float) -> Burst | None:
        """Count a message sent at `at` (seconds); the member's burst when it is long enough
        that a trigger may have been reached."""
        limits = self._limits
        if limits is None:
            return None
        burst = self._bursts.get((chat_id, user_id))
        if burst is None:
            burst = self._bursts[chat_id, user_id] = Burst(limits.most)
        stamps = burst.stamps
        while stamps and at - stamps[0] > limits.longest:
            stamps.popleft()
        stamps.append(at)
        burst.seen += 1
        if at - self._swept > limits.longest:
            self._sweep(at, limits.longest)
        return burst if len(stamps) >= limits.fewest else None

    def _sweep(self, at: float, longest: float) -> None:
        """Forget the members quiet for longer than the longest window."""
        self._swept = at
        quiet = [key for key, burst in self._bursts.items() if at - burst.stamps[-1] > longest]
        for key in quiet:
            del self._bursts[key]

    def __len__(self) -> int:
        return len(self._bursts)
