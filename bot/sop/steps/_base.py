"""What a step type is: the class each step module implements, and what it is given to work with.

A step type runs a `Cohort`, the runs of one SOP at one of its steps, with the engine's `Tools`;
it describes a journal row for `tidepool simulate` (`Seen`) and checks what its model cannot
for `tidepool check` (`Checks`). The keys every step has (`enabled`, `continue_on_error`) and
whether a step needs a member are handled by the engine for all of them, not by each type.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Generic, Literal, Protocol, TypeVar

from bot.db import RunStatus
from bot.sop.format import Condition, Step, StepBase
from bot.sop.runs import Run, StepRecord

if TYPE_CHECKING:
    from typing import TypeAlias

    from bot.sop.engine._stepping import Stepping
    from bot.sop.library import Procedure

    # What a step type may use of the engine: its stepping part (the stores and services, what it
    # knows of groups, how runs are journaled, moved on and set going). Named for the type checker
    # only: `tidepool check` reads the step types without the engine.
    Tools: TypeAlias = Stepping

KeyPath = tuple[str | int, ...]  # where in an SOP file: ("steps", 3, "send", "template")
S = TypeVar("S", bound=StepBase)


def goto(
    run: Run, procedure: Procedure | None, path: str, now: datetime, *, past: bool = False
) -> None:
    """Move `run` to `path` (or past it); a run past its last step is done."""
    target: str | None = path
    if past:
        target = procedure.successor.get(path) if procedure is not None else None
    if target is None:
        run.status, run.finished_at, run.wake_at = RunStatus.DONE, now, None
    else:
        run.position = target


@dataclass(slots=True)
class Cohort(Generic[S]):
    """The runs of one SOP at one step, worked on together.

    `runs` are those the step works on; `errors` (by run id) those the engine's common checks
    refused (a run for the whole group at a step that needs a member): they are journaled as
    failed with the step. `all` is every run at the step, in order."""

    procedure: Procedure
    path: str
    step: S
    all: list[Run]
    now: datetime
    label: str = ""
    runs: list[Run] = field(default_factory=list)
    errors: dict[int, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.label = self.procedure.label(self.path)
        self.runs = self.all

    def refuse_group_runs(self, error: str) -> None:
        """Runs for the whole group fail this step with `error`; the others go on to it."""
        if any(run.user_id is None for run in self.all):
            self.errors = {run.id: error for run in self.all if run.user_id is None}
            self.runs = [run for run in self.all if run.user_id is not None]

    def failed(self, run: Run, error: str) -> StepRecord:
        """`run` failed this step: its journal row. It ends here, failed, unless the step
        continues on error: then it moves past the step."""
        now = self.now
        record = StepRecord(
            run.id, run.seq, self.label, self.step.action, "failed", now, now, error=error
        )
        run.seq += 1
        if self.step.continue_on_error:
            goto(run, self.procedure, self.path, now, past=True)
        else:
            run.status, run.error, run.finished_at = (
                RunStatus.FAILED,
                f"{self.label}: {error}",
                now,
            )
        return record


class Seen(Protocol):
    """A journal row of a simulated run, as `tidepool simulate` shows it to a step type."""

    @property
    def status(self) -> str: ...
    @property
    def started_at(self) -> datetime: ...
    @property
    def finished_at(self) -> datetime | None: ...
    @property
    def variant(self) -> str | None: ...
    @property
    def variables(self) -> Mapping[str, Any]:
        """The run's variables when the simulation ended."""
        ...

    @property
    def label(self) -> str:
        """The step as the timeline names it."""
        ...

    @property
    def member(self) -> str:
        """The simulated member's name."""
        ...

    def step_label(self, path: str) -> str:
        """Another step of the run's SOP, by its path, as the timeline names it."""
        ...

    def message(self) -> list[str]:
        """How the message this row sent looks: photo, text, buttons, pinned."""
        ...

    def later(self, at: datetime, kind: str, text: str) -> None:
        """One more timeline entry for this row, after the step's own."""
        ...


class Checks(Protocol):
    """What `tidepool check` offers a step type that checks more than its model can."""

    @property
    def folder(self) -> Path:
        """The folder of the SOP files."""
        ...

    @property
    def content_dir(self) -> Path: ...
    @property
    def step_ids(self) -> Collection[str]:
        """The ids of the SOP's steps, in file order."""
        ...

    @property
    def sop_ids(self) -> Collection[str]:
        """The ids of the SOPs in the folder."""
        ...

    @property
    def trigger_types(self) -> Collection[str]:
        """The types of the SOP's triggers, in file order."""
        ...

    def step_of(self, step_id: str) -> Step | None:
        """The SOP's step with this id, if it has one."""
        ...

    def problem(self, at: KeyPath, message: str) -> None: ...

    @property
    def sop_id(self) -> str:
        """The id of the SOP being checked."""
        ...

    def text(
        self,
        at: KeyPath,
        key: str,
        kind: Literal["message", "caption", "button"] = "message",
        **extra: Any,
    ) -> None:
        """The text key is in the SOP's texts or the catalogue, renders with the sample context
        (and `extra` variables) and Telegram would take it as a message, a caption or a button."""
        ...

    def photo(self, at: KeyPath, photo: str) -> None:
        """The photo is a file under CONTENT_DIR."""
        ...


class StepType(Generic[S]):
    """One type of step: what it needs, what it sets for the texts after it, how it runs, how
    it is described and checked. A step module subclasses it once, for its format model."""

    model: ClassVar[type[StepBase]]  # the step's model in bot.sop.format: the registry's key
    # What a run for the whole group at this step fails with; None: such runs may run it.
    needs_member: ClassVar[str | None] = None
    # The variable this step sets for the texts after it (`run.variables[output]`), if any.
    output: ClassVar[str | None] = None
    joined_by: ClassVar[str] = ": "  # what comes between the step's label and its description

    def member_error(self, step: S) -> str | None:
        """What a run for the whole group fails with at this step, if it cannot run it."""
        return self.needs_member

    def shown(self, value: Any) -> Any:
        """The output variable as texts see it (as stored in the run, unless changed here)."""
        return value

    async def run(self, cohort: Cohort[S], tools: Tools) -> list[Run]:
        """Do the step for the cohort's runs; return the runs that go on at once."""
        raise NotImplementedError

    def describe(self, step: S, seen: Seen) -> str:
        """What `tidepool simulate` says of a journal row of this step, after its label."""
        return ""

    def nested(self, step: S) -> Iterator[tuple[KeyPath, Sequence[Step]]]:
        """Steps inside this one, each list with its key path from the step (`if`: then, else)."""
        return iter(())

    def conditions(self, step: S) -> Iterator[tuple[KeyPath, Condition]]:
        """Conditions inside this step, each with its key path from the step."""
        return iter(())

    def check_references(self, step: S, at: KeyPath, checks: Checks) -> None:
        """Check what the step names in this SOP or the folder (steps, other SOPs)."""

    def check_content(self, step: S, at: KeyPath, checks: Checks) -> None:
        """Check the texts and files under CONTENT_DIR the step uses."""
