"""Reading SOP and text files as YAML: the loader, and errors that point at the line to fix.

A Chinese keyboard types `：` `，` `（` `）` and the full-width space U+3000 as easily as their
ASCII forms, and YAML reads none of them as punctuation, so its error lands a line or two later
("could not find expected ':'"). The errors here find such a character on the lines before and
point at it with the fix.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import yaml

# Full-width characters that YAML does not read as its punctuation -> what to type instead.
FULL_WIDTH = {
    "：": "':' followed by a space",
    "，": "','",
    "（": "'('",
    "）": "')'",
    "［": "'['",
    "］": "']'",
    "｛": "'{'",
    "｝": "'}'",
    "\u3000": "ASCII spaces",
}


@dataclass(frozen=True)
class Problem:
    """One thing wrong in an SOP or text file, where it is and what to do about it.

    A `note` is worth knowing but does not stop the file from loading. `origin` is the SOP file
    a problem in another file (its texts file) keeps from loading."""

    file: Path
    line: int
    column: int
    path: str
    message: str
    note: bool = False
    origin: Path | None = None

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}:{self.column}"
        message = f"note: {self.message}" if self.note else self.message
        return f"{where}: {self.path}: {message}" if self.path else f"{where}: {message}"


class SopLoader(yaml.SafeLoader):
    """SafeLoader that reads as YAML 1.2 does: 10:30 is text (not the base-60 number 630), and
    `on`, `off`, `yes` and `no` are words (a live's `on:` date), only true/false are booleans."""


SopLoader.yaml_implicit_resolvers = {
    first: [
        (tag, regexp) for tag, regexp in resolvers if not tag.endswith((":int", ":float", ":bool"))
    ]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
SopLoader.add_implicit_resolver(
    "tag:yaml.org,2002:bool",
    re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"),
    list("tTfF"),
)
SopLoader.add_implicit_resolver(
    "tag:yaml.org,2002:int",
    re.compile(r"^(?:[-+]?0b[0-1_]+|[-+]?0[0-7_]+|[-+]?(?:0|[1-9][0-9_]*)|[-+]?0x[0-9a-fA-F_]+)$"),
    list("-+0123456789"),
)
SopLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(
        r"^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+][0-9]+)?|\.[0-9][0-9_]*(?:[eE][-+][0-9]+)?"
        r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$"
    ),
    list("-+0123456789."),
)


def yaml_problem(file: Path, exc: yaml.YAMLError, source: str) -> Problem:
    """A YAML syntax error as a Problem: at the full-width character that caused it, if any."""
    if not isinstance(exc, yaml.MarkedYAMLError):
        return Problem(file, 1, 1, "", f"invalid YAML: {exc}")
    mark = exc.problem_mark or exc.context_mark
    message = f"invalid YAML: {exc.problem or exc.context}"
    if exc.problem and exc.context and exc.context_mark:
        message += f" ({exc.context} that starts at line {exc.context_mark.line + 1})"
    line, column = (mark.line + 1, mark.column + 1) if mark else (1, 1)
    first = min(exc.context_mark.line, line - 2) if exc.context_mark else line - 3
    found = full_width_in(source, max(first, 0), line)
    if found is not None:
        at_line, at_column, char = found
        return Problem(file, at_line, at_column, "", f"{message}; {full_width_hint(char)}")
    if "block" in message:
        message += "; check the indentation"
    return Problem(file, line, column, "", message)


def full_width_hint(char: str) -> str:
    name = "full-width space (U+3000)" if char == "\u3000" else f"full-width '{char}'"
    return f"this line has a {name}, which YAML does not read: type {FULL_WIDTH[char]} instead"


def full_width_in(source: str, first: int, last: int) -> tuple[int, int, str] | None:
    """(line, column, character) of the first full-width character that YAML would misread as
    text on lines `first`..`last` (0-based first, 1-based last: the lines of an error)."""
    lines = source.splitlines()
    for index in range(first, min(last, len(lines))):
        found = _structural_full_width(lines[index])
        if found is not None:
            return index + 1, found[0] + 1, found[1]
    return None


def _structural_full_width(line: str) -> tuple[int, str] | None:
    """Where on `line` a full-width character stands for YAML punctuation: in the indentation,
    as the colon after a key, or inside a [flow] or {flow} collection."""
    body = line.lstrip(" ")
    if body.startswith("\u3000"):
        return len(line) - len(body), "\u3000"
    stripped = body.lstrip("- ")
    if stripped.startswith(("#", '"', "'", "|", ">")):
        return None
    start = len(line) - len(stripped)
    key, colon, _ = stripped.partition(": ")
    head = key if colon else stripped
    at = head.find("：")
    if at > 0 and ":" not in head[:at] and " " not in head[:at].strip():
        return start + at, "："
    flow = re.search(r"[\[{]", stripped)
    if flow is not None:
        for offset, char in enumerate(stripped[flow.start() :]):
            if char in FULL_WIDTH and char != "\u3000":
                return start + flow.start() + offset, char
    return None
