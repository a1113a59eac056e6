"""What the operator did in the sandbox, in order, kept in a JSON Lines file across restarts.

Each entry is one thing a person did (wrote, pressed, joined, left, was made an admin, started
the bot) or time moved, with the sandbox's time and how many Bot API calls the bot had made
before it (`calls`): what the bot did in answer is every call from there to the next entry.
A transcript is made from these entries and the emulator's record of the calls.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

Entry = dict[str, Any]


class Journal:
    """The entries of one sandbox, appended as they happen."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.entries: list[Entry] = []

    def load(self) -> None:
        self.entries = []
        if not self.path.exists():
            return
        for number, line in enumerate(self.path.read_text().splitlines(), 1):
            if not line.strip():
                continue
            try:
                self.entries.append(json.loads(line))
            except json.JSONDecodeError:
                # A line cut short by a crash: what came before is kept.
                raise ValueError(f"{self.path}:{number}: not a journal entry") from None

    def add(self, entry: Entry) -> None:
        self.entries.append(entry)
        with self.path.open("a") as file:
            file.write(json.dumps(entry, ensure_ascii=False) + "\n")

    def clear(self) -> None:
        self.entries = []
        self.path.unlink(missing_ok=True)
