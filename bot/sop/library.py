"""The SOPs the bot runs: loaded from SOPS_DIR, reloaded on demand, switched per group.

A file that no longer validates keeps its last good version running and is reported as broken;
a file broken from the start is not run at all. Every other SOP loads and runs regardless.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.db import SOP_GROUP_SETTINGS, insert_for, writing
from bot.sop.check import LoadedSop, Problem, load_sops
from bot.sop.format import IfStep, Sop, Step


@dataclass(frozen=True)
class Procedure:
    """A valid SOP with its steps addressed by path (`3`, `3.then.0`) for running it."""

    sop: Sop
    file: Path
    digest: str
    texts: dict[str, dict[str, str]] = field(default_factory=dict)  # its own: language -> key
    steps: dict[str, Step] = field(default_factory=dict)
    successor: dict[str, str | None] = field(default_factory=dict)
    path_of: dict[str, str] = field(default_factory=dict)  # step id -> path

    @classmethod
    def of(cls, loaded: LoadedSop) -> Procedure:
        procedure = cls(loaded.sop, loaded.file, loaded.digest, loaded.texts)
        procedure._index(loaded.sop.steps, "", None)
        return procedure

    def _index(self, steps: list[Step], prefix: str, after: str | None) -> None:
        paths = [f"{prefix}{index}" for index in range(len(steps))]
        for index, (path, step) in enumerate(zip(paths, steps, strict=True)):
            self.steps[path] = step
            self.successor[path] = paths[index + 1] if index + 1 < len(paths) else after
            if step.id is not None:
                self.path_of[step.id] = path
            if isinstance(step, IfStep):
                following = self.successor[path]
                self._index(step.if_.then, f"{path}.then.", following)
                self._index(step.if_.else_, f"{path}.else.", following)

    @property
    def id(self) -> str:
        return self.sop.id

    def step(self, path: str) -> Step | None:
        return self.steps.get(path)

    def label(self, path: str) -> str:
        """How a step is named in records and messages: its id, or its path."""
        step = self.steps.get(path)
        return step.id if step is not None and step.id is not None else f"steps.{path}"


@dataclass(frozen=True)
class Broken:
    """An SOP file that does not validate, and whether an older version of it still runs."""

    file: Path
    problems: tuple[Problem, ...]
    sop_id: str | None = None  # of the last good version still running, if any

    def summary(self, limit: int = 3) -> str:
        lines = [str(problem) for problem in self.problems[:limit]]
        if len(self.problems) > limit:
            lines.append(f"… and {len(self.problems) - limit} more")
        return "\n".join(lines)


@dataclass(frozen=True)
class LoadReport:
    """What a (re)load changed."""

    loaded: tuple[str, ...]
    changed: tuple[str, ...]
    removed: tuple[str, ...]
    broken: tuple[Broken, ...]


class Library:
    """The loaded SOPs and where each may run."""

    def __init__(self, sops_dir: Path, content_dir: Path) -> None:
        self.sops_dir = sops_dir
        self.content_dir = content_dir
        self.procedures: dict[str, Procedure] = {}
        self.broken: dict[Path, Broken] = {}
        self._switches: dict[tuple[str, int], bool] = {}  # (sop id, chat id) -> on/off

    def __iter__(self) -> Iterator[Procedure]:
        return iter(self.procedures.values())

    def get(self, sop_id: str) -> Procedure | None:
        return self.procedures.get(sop_id)

    def load(self) -> LoadReport:
        """Read every SOP file; keep the last good version of a file that no longer validates."""
        if not self.sops_dir.is_dir():
            problem = Problem(self.sops_dir, 1, 1, "", "SOPS_DIR is not a folder; no SOP runs")
            self.broken = {self.sops_dir: Broken(self.sops_dir, (problem,))}
            return LoadReport((), (), tuple(self.procedures), tuple(self.broken.values()))
        loaded, problems = load_sops(self.sops_dir, self.content_dir)
        fresh = {sop_id: Procedure.of(item) for sop_id, item in loaded.items()}
        by_file: dict[Path, list[Problem]] = {}
        for problem in problems:
            by_file.setdefault(problem.origin or problem.file, []).append(problem)
        broken: dict[Path, Broken] = {}
        for file, found in by_file.items():
            kept = next(
                (p for p in self.procedures.values() if p.file == file and p.id not in fresh), None
            )
            if kept is not None:
                fresh[kept.id] = kept
            broken[file] = Broken(file, tuple(found), kept.id if kept else None)
        old = self.procedures
        changed = tuple(
            sop_id
            for sop_id, p in fresh.items()
            if sop_id in old and old[sop_id].digest != p.digest
        )
        removed = tuple(sop_id for sop_id in old if sop_id not in fresh)
        self.procedures = dict(sorted(fresh.items()))
        self.broken = broken
        return LoadReport(tuple(self.procedures), changed, removed, tuple(broken.values()))

    # -- where an SOP runs --------------------------------------------------------------------

    async def load_switches(self, engine: AsyncEngine) -> None:
        async with engine.connect() as conn:
            rows = await conn.execute(select(SOP_GROUP_SETTINGS))
            self._switches = {(row.sop_id, row.chat_id): row.enabled for row in rows}

    async def switch(
        self,
        engine: AsyncEngine,
        sop_id: str,
        chat_id: int,
        enabled: bool,
        by: int | None,
        at: datetime,
    ) -> None:
        """Switch an SOP on or off in one group (`/sop_on`, `/sop_off`)."""
        row = {
            "sop_id": sop_id,
            "chat_id": chat_id,
            "enabled": enabled,
            "changed_by": by,
            "changed_at": at,
        }
        stmt = insert_for(engine, SOP_GROUP_SETTINGS).values(**row)
        stmt = stmt.on_conflict_do_update(
            index_elements=["sop_id", "chat_id"],
            set_={"enabled": enabled, "changed_by": by, "changed_at": at},
        )
        async with writing(engine) as conn:
            await conn.execute(stmt)
        self._switches[sop_id, chat_id] = enabled

    def switched(self, sop_id: str, chat_id: int) -> bool | None:
        """An admin's explicit choice for this group, if any."""
        return self._switches.get((sop_id, chat_id))

    def runs_in(self, procedure: Procedure, chat_id: int, group_tags: list[str]) -> bool:
        """Whether `procedure` runs in this group: its file and `groups` say so, unless an admin
        switched it for this group (an admin may switch on a disabled SOP in their group)."""
        switched = self._switches.get((procedure.id, chat_id))
        if switched is not None:
            return switched and self.selects(procedure, chat_id, group_tags)
        return procedure.sop.enabled and self.selects(procedure, chat_id, group_tags)

    @staticmethod
    def selects(procedure: Procedure, chat_id: int, group_tags: list[str]) -> bool:
        groups = procedure.sop.groups
        if groups == "all":
            return True
        return chat_id in groups.ids or bool(set(groups.tags) & set(group_tags))
