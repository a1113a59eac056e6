"""The runs waiting for an event, indexed in memory so that a member's message finds them cheaply.

The database has them too (`wait_event`); the index is read from it when the engine opens.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime

from bot.sop.library import Procedure
from bot.sop.runs import Run, StepRecord

WaitKey = tuple[int, int | None, str]  # (chat, member or None for the group, event)


class EventWaits:
    """Run ids by the (chat, member, event) they wait for."""

    def __init__(self) -> None:
        self._runs: dict[WaitKey, set[int]] = defaultdict(set)

    def __contains__(self, key: object) -> bool:
        return key in self._runs

    def get(self, key: WaitKey) -> set[int] | None:
        return self._runs.get(key)

    def add(self, run_id: int, chat_id: int, user_id: int | None, event: str) -> None:
        self._runs[chat_id, user_id, event].add(run_id)

    def unwait(self, run: Run) -> None:
        """The run no longer waits for its event (it may still wait for its time)."""
        if run.wait_event is not None:
            key = (run.chat_id, run.user_id, run.wait_event)
            waiting = self._runs.get(key)
            if waiting is not None:
                waiting.discard(run.id)
                if not waiting:
                    del self._runs[key]
        run.wait_event = None


def wait_record(run: Run, procedure: Procedure | None, now: datetime, status: str) -> StepRecord:
    """The journal row that ends the wait `run` is in, as `status`."""
    label = procedure.label(run.position) if procedure else run.position
    return StepRecord(run.id, run.seq - 1, label, "wait", status, now, now)
