"""What a simulation is asked to do: its members, what each writes and presses when, how long.

The command line's options become a `Script`: `--member` (repeatable, the first is the default
member), `--writes "[NAME: ][TEXT@]AFTER"` and `--presses "[NAME: ]STEP@AFTER"`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from bot.sop.format import parse_duration

MEMBER = "Lin"  # the member's name when none is given
NAME_LIMIT = 32  # characters of a member's name


class SimulationError(Exception):
    """The simulation cannot run as asked; the message says why, in one line."""


@dataclass(frozen=True)
class Write:
    """A member writes `text` (None: a message that starts nothing) `after` the start."""

    after: timedelta
    text: str | None = None
    member: str = MEMBER


@dataclass(frozen=True)
class Press:
    """A member presses the flow button that leads to `step`, `after` the start."""

    step: str
    after: timedelta
    member: str = MEMBER


@dataclass(frozen=True)
class Script:
    """The simulated group, its members, and what they do when."""

    members: tuple[str, ...] = (MEMBER,)
    until: timedelta = timedelta(days=3)
    writes: tuple[Write, ...] = ()
    presses: tuple[Press, ...] = ()
    language: str | None = None
    start: datetime | None = None
    group_title: str = "Simulated group"
    text: str | None = None  # of the message that starts a `message` flow
    full: bool = False  # texts whole, not cut at TEXT_LIMIT

    @property
    def member(self) -> str:
        """The first member: the one the trigger and unnamed actions are about."""
        return self.members[0]


def parse_script(options: dict[str, Any], timezone: ZoneInfo) -> Script:
    """The command line's options (`vars(args)`) as a Script; SimulationError names a wrong one."""
    members = _members(options.get("member"))
    writes = tuple(_write(value, members) for value in options.get("writes") or [])
    presses = tuple(_press(value, members) for value in options.get("presses") or [])
    moment = start = options.get("start")
    if start is not None:
        try:
            moment = datetime.fromisoformat(start)
        except ValueError:
            message = f"--start {start!r} is not a date-time like 2026-11-02T09:00"
            raise SimulationError(message) from None
        moment = moment if moment.tzinfo is not None else moment.replace(tzinfo=timezone)
    until = _duration("--until", options.get("until") or "3d")
    taken = ("language", "group_title", "text")
    plain = {name: options[name] for name in taken if options.get(name) is not None}
    full = bool(options.get("full"))
    return Script(members, until, writes, presses, start=moment, full=full, **plain)


def _members(given: str | list[str] | None) -> tuple[str, ...]:
    names = [given] if isinstance(given, str) else list(given or [MEMBER])
    for name in names:
        if not name.strip() or len(name) > NAME_LIMIT or any(mark in name for mark in ":@"):
            raise SimulationError(
                f"--member {name!r}: a name of 1-{NAME_LIMIT} characters without ':' or '@'"
            )
    twice = sorted({name for name in names if names.count(name) > 1})
    if twice:
        raise SimulationError(f"--member {twice[0]!r} is given twice: names must differ")
    return tuple(name.strip() for name in names)


def _who(option: str, value: str, members: tuple[str, ...]) -> tuple[str, str]:
    """The member an action names (`Ada: …`), else the first; and the rest of the value."""
    name, colon, rest = value.partition(":")
    if colon and name.strip() in members:
        return name.strip(), rest.strip()
    word = name.strip()
    named = colon and word and len(word) <= NAME_LIMIT and not any(c in word for c in " @")
    if named and (len(members) > 1 or option == "--presses"):
        raise SimulationError(
            f"{option} {value!r}: {word!r} is not a member; members: {', '.join(members)}"
        )
    return members[0], value.strip()


def _write(value: str, members: tuple[str, ...]) -> Write:
    member, rest = _who("--writes", value, members)
    text, at, after = rest.rpartition("@")
    if not at:  # a bare AFTER: a message that starts nothing
        return Write(_duration("--writes", rest, hint=True), None, member)
    if not text.strip():
        raise SimulationError(f"--writes {value!r}: write TEXT@AFTER, e.g. 'price?@2h'")
    return Write(_duration("--writes", after, hint=True), text.strip(), member)


def _press(value: str, members: tuple[str, ...]) -> Press:
    member, rest = _who("--presses", value, members)
    step, at, after = rest.rpartition("@")
    if not at or not step.strip():
        raise SimulationError(f"--presses {value!r} must look like STEP@AFTER, e.g. rules@30m")
    return Press(step.strip(), _duration("--presses", after), member)


def _duration(option: str, value: str, *, hint: bool = False) -> timedelta:
    try:
        return parse_duration(value)
    except ValueError as exc:
        also = "; write TEXT@AFTER or AFTER, e.g. 'price?@2h' or 2h" if hint else ""
        raise SimulationError(f"{option}: {exc}{also}") from None
