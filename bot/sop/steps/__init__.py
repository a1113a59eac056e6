"""The step types of SOPs, one module each, and the one registry that finds a step's type.

The engine runs a step, `tidepool simulate` describes it and `tidepool check` checks it through
`STEPS.of(step)`, keyed by the step's model class in `bot.sop.format`. A new step type is its
model there plus one module here with a subclass of `StepType` (`_base.py` says what it can do):
every module of this package is read for them. A model without a type stops the import.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable, Iterator
from typing import Any

from bot.outbox import Outbox, Waker
from bot.sop.format import ACTIONS, StepBase
from bot.sop.steps._base import Checks, Cohort, KeyPath, Seen, StepType, goto
from bot.sop.steps._checkin import group_checkin_rules
from bot.sop.steps._flow import MAX_CHAIN
from bot.sop.steps._moderation import CHECKS, REMOVED
from bot.sop.steps._tag import TAG_COLUMNS
from bot.sop.steps._wait import next_time_of_day


class StepTypes:
    """The step types by the model class of their steps."""

    def __init__(self, *types: StepType[Any]) -> None:
        self._by_model: dict[type[StepBase], StepType[Any]] = {}
        for kind in types:
            if kind.model in self._by_model:
                raise ValueError(f"two step types for {kind.model.__name__}")
            self._by_model[kind.model] = kind
        missing = set(ACTIONS) - {model.action for model in self._by_model}
        if missing:
            raise ValueError(f"no step type for the actions {', '.join(sorted(missing))}")
        # (name, shown) of every variable a step sets for the texts after it.
        self.outputs: tuple[tuple[str, Callable[[Any], Any]], ...] = tuple(
            (kind.output, kind.shown) for kind in types if kind.output is not None
        )

    def of(self, step: StepBase) -> StepType[Any]:
        """The type of `step`."""
        return self._by_model[type(step)]

    def __iter__(self) -> Iterator[StepType[Any]]:
        return iter(self._by_model.values())


def _step_types() -> list[StepType[Any]]:
    """One of each step type (a StepType with its `model`) defined in this package."""
    found: list[StepType[Any]] = []
    for module in pkgutil.iter_modules(__path__):
        loaded = importlib.import_module(f"{__name__}.{module.name}")
        for value in vars(loaded).values():
            if (
                isinstance(value, type)
                and issubclass(value, StepType)
                and value.__module__ == loaded.__name__
                and "model" in vars(value)
            ):
                found.append(value())
    return found


STEPS = StepTypes(*_step_types())

__all__ = [
    "CHECKS",
    "MAX_CHAIN",
    "REMOVED",
    "STEPS",
    "TAG_COLUMNS",
    "Checks",
    "Cohort",
    "KeyPath",
    "Outbox",
    "Seen",
    "StepType",
    "StepTypes",
    "Waker",
    "goto",
    "group_checkin_rules",
    "next_time_of_day",
]
