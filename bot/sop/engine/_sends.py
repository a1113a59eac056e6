"""The SOP engine as the courier of its messages: sends them as rendered and, once they went (or
not), moves the runs that were waiting for them on."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sqlalchemy import Row, select

from bot.db import PUSHES, PushStatus, RunStatus
from bot.outbox import Before, Outbox
from bot.push.rows import Courier, Ended
from bot.sop.engine._shared import Shared
from bot.sop.engine._stepping import Stepping
from bot.sop.runs import CHUNK, Run
from bot.sop.steps._send import finish_sends

if TYPE_CHECKING:
    from bot.delivery import Delivered

WAITING = (PushStatus.PENDING.value, PushStatus.QUEUED.value, PushStatus.SENDING.value)


class SopSends(Courier):
    """The push queue's courier for SOP `send` steps (push kind `sop`)."""

    def __init__(self, outbox: Outbox, shared: Shared, stepping: Stepping) -> None:
        super().__init__(outbox, shared.library.content_dir)
        self._shared = shared
        self._stepping = stepping

    async def send(self, push: Row[Any], before: Before) -> Delivered | None:
        """Send the message as rendered; a message that waited (quiet hours, the cap) goes only
        while one of its runs still waits for it (an admin may have switched the SOP off, the
        member may have left)."""
        if push.due_at > push.planned_at:
            wanted = _runs_of(push.ref)
            runs = await self._shared.runs.get_many(wanted)
            if not any(r.status is RunStatus.SENDING and r.seq == wanted[r.id] for r in runs):
                return None
        return await super().send(push, before)

    async def postponed(self, pushes: list[Row[Any]]) -> None:
        """Quiet hours or the cap hold these messages: their runs are let go meanwhile (they
        stay `sending`, and are read back when the message went)."""
        for push in pushes:
            runs = self._shared.held.runs.pop(push.key, None)
            if runs:
                self._shared.leases.release(runs)

    async def done(self, ended: list[Ended]) -> None:
        """Messages went (or not): their runs move on, those in hand together at once, those
        read back from the database together too."""
        in_hand: list[tuple[Ended, list[Run]]] = []
        elsewhere: list[Ended] = []
        for end in ended:
            runs = self._shared.held.runs.pop(end.push.key, None)
            if runs is None:
                elsewhere.append(end)
            elif runs:
                in_hand.append((end, runs))
        if in_hand:
            self._stepping.spawn(finish_sends(self._stepping, in_hand, in_hand=True))
        if elsewhere:
            read = await self._read_back([end.push.ref for end in elsewhere])
            found = [(end, runs) for end, runs in zip(elsewhere, read, strict=True) if runs]
            if found:
                self._stepping.spawn(finish_sends(self._stepping, found, in_hand=False))

    async def _read_back(self, refs: list[dict[str, Any] | None]) -> list[list[Run]]:
        """Each message's runs, from the database: those still waiting for it, not in hand."""
        wanted = [_runs_of(ref) for ref in refs]
        found = {
            run.id: run for run in await self._shared.runs.get_many(i for w in wanted for i in w)
        }
        taken: list[list[Run]] = []
        for seqs in wanted:
            runs = [
                run
                for run_id, seq in seqs.items()
                if (run := found.get(run_id)) is not None
                and run.status is RunStatus.SENDING
                and run.seq == seq
                and run.id not in self._shared.leases.busy
            ]
            self._shared.leases.busy.update(run.id for run in runs)
            taken.append(runs)
        return taken

    async def recover(self, sending: list[Run]) -> list[Run]:
        """At start, the runs a stop left `sending`. Those whose message is still in the outbox
        wait for it; those whose message ended meanwhile (the stop came between recording it
        and moving them on) are moved on now. Returns the rest: their message is not in the
        outbox (claimed before the outbox kept SOP messages), so it may have been sent."""
        by_id = {run.id: run for run in sending}
        keys = {f"sop:{run.id}:{run.seq}" for run in sending}
        covered: set[int] = set()
        async with self._shared.runs.engine.connect() as conn:
            ordered = sorted(keys)
            pushes = [
                push
                for start in range(0, len(ordered), CHUNK)
                for push in await conn.execute(
                    select(PUSHES).where(PUSHES.c.key.in_(ordered[start : start + CHUNK]))
                )
            ]
        for push in pushes:
            wanted = _runs_of(push.ref)
            covered.update(wanted)
            if push.status in WAITING:
                continue
            runs = [
                by_id[run_id]
                for run_id, seq in wanted.items()
                if run_id in by_id and by_id[run_id].seq == seq
            ]
            if runs:
                self._shared.leases.busy.update(run.id for run in runs)
                end = Ended(push, PushStatus(push.status), None, push.note)
                await finish_sends(self._stepping, [(end, runs)], in_hand=False)
        return [run for run in sending if run.id not in covered]


def _runs_of(ref: dict[str, Any] | None) -> dict[int, int]:
    """The runs a message answers, with the `seq` each has while it waits for it."""
    return {int(run_id): seq for run_id, seq in ((ref or {}).get("runs") or {}).items()}
