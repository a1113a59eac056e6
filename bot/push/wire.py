"""Wire notes: which pushes Telegram was asked for, written the moment each request goes.

A push is marked `sending` in the database once its turn comes, a little before the delivery
service paces it and asks Telegram (several are prepared ahead, so that a slow write never
bunches messages on the wire). A crash between the two leaves pushes `sending` that were never
tried. The note, one line appended to a file just before the request, tells them apart: after a
crash, a noted push may have arrived (interrupted, never sent again), an unnoted one was never
tried (it goes again). The line is a plain `write` with no fsync: a killed process loses nothing
the kernel has, and the database itself syncs no more often (WAL, synchronous=NORMAL).

Without notes (no file yet, as after an upgrade, or a database in memory) every push left
`sending` is in doubt, as before.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from sqlalchemy.engine import make_url

CLEAR_AFTER = 64 * 1024  # bytes of notes kept before they are cleared at a quiet moment


def wire_notes_path(database_url: str, data_dir: Path) -> Path | None:
    """Where the notes of this database live: beside a SQLite file (`tidepool.db-wire`, like
    its `-wal`), in `data_dir` for a server database, nowhere for a database in memory."""
    url = make_url(database_url)
    if url.get_backend_name() == "sqlite":
        name = url.database or ""
        if not name or name == ":memory:" or name.startswith("file::memory:"):
            return None
        return Path(f"{name}-wire")
    return data_dir / f"pushes-{url.host or 'local'}-{url.database or 'db'}.wire"


class WireNotes:
    """Push ids appended to a file as each request goes; see the module."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._fd: int | None = None
        self._written = 0

    def asked(self) -> set[int] | None:
        """The pushes noted since the last clear; None when there are no notes to go by."""
        if self.path is None or not self.path.exists():
            return None
        # A kill cannot cut a line's write short; a line that is no number (a power cut) is
        # passed over.
        lines = self.path.read_bytes().splitlines()
        return {int(line) for line in lines if line.isdigit()}

    def note(self, push_ids: Iterable[int]) -> None:
        """Telegram is about to be asked for these. Raises when the note cannot be written:
        the request must not go then, or a crash could have it sent twice."""
        fd = self._open()
        if fd is not None:
            line = b"".join(b"%d\n" % push_id for push_id in push_ids)
            os.write(fd, line)
            self._written += len(line)

    def clear(self) -> None:
        """Forget every note: no push is `sending` (after `asked` was acted on, at start)."""
        fd = self._open()
        if fd is not None:
            os.ftruncate(fd, 0)
            self._written = 0

    def settled(self) -> None:
        """No push is `sending` now (every one handed out is recorded): old notes can go."""
        if self._written >= CLEAR_AFTER:
            self.clear()

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def _open(self) -> int | None:
        if self._fd is None and self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        return self._fd
