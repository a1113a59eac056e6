"""Validation of SOP files in stages, with problems that name the file, line, column and key path.

The stages, per file, stop at the first that fails: (1) YAML syntax, (2) the schema,
(3) triggers, (4) conditions, (5) steps and references across files, (6) texts and content.
A bad file never stops the others from loading.
"""

from __future__ import annotations

import difflib
import hashlib
import re
from collections.abc import Collection, Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from functools import cache
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

import yaml
from jinja2 import TemplateSyntaxError, UndefinedError
from pydantic import ValidationError
from pydantic_core import ErrorDetails

from bot.sop.check_texts import TextChecks, TextKind, own_texts
from bot.sop.format import (
    Condition,
    MessageTrigger,
    ScheduleTrigger,
    Sop,
    Step,
    TemplateCondition,
    TimeCondition,
    walk_steps,
)
from bot.sop.schedules import cron_trigger
from bot.sop.steps import STEPS, KeyPath
from bot.sop.templates import SAMPLE_CONTEXT, compile_expression
from bot.sop.text_files import TEXTS_SUFFIX, TextFile, sources, texts_file_of
from bot.sop.yaml_files import FULL_WIDTH, Problem, SopLoader, full_width_hint, yaml_problem

__all__ = ["LoadedSop", "Problem", "check_path", "load_sops", "locate", "sop_files"]

TIERS_FILE = "tiers.yaml"  # in SOPS_DIR, but not an SOP (bot.stats.tiers)

# Lists whose items are unions: pydantic puts the chosen member's tag after the item's index.
_UNION_LISTS = frozenset({"triggers", "conditions", "steps", "then", "else"})
_EXPECTED = {
    "string_type": "text",
    "int_type": "a whole number",
    "int_parsing": "a whole number",
    "int_from_float": "a whole number",
    "float_type": "a number",
    "float_parsing": "a number",
    "bool_type": "true or false",
    "bool_parsing": "true or false",
    "list_type": "a list",
    "dict_type": "a mapping of keys",
    "model_type": "a mapping of keys",
    "model_attributes_type": "a mapping of keys",
    "datetime_type": "a date and time such as 2026-11-02T09:00:00+08:00",
    "datetime_parsing": "a date and time such as 2026-11-02T09:00:00+08:00",
    "datetime_from_date_parsing": "a date and time such as 2026-11-02T09:00:00+08:00",
}


@dataclass(frozen=True)
class LoadedSop:
    """A valid SOP, the file it came from, the SHA-256 of that file's content (and of its texts
    file's), and its own texts (language -> key -> source)."""

    sop: Sop
    file: Path
    digest: str
    texts: dict[str, dict[str, str]] = field(default_factory=dict)


@dataclass
class _Document:
    file: Path
    digest: str = ""
    root: yaml.Node | None = None
    data: Any = None
    sop: Sop | None = None
    problems: list[Problem] = field(default_factory=list)
    notes: list[Problem] = field(default_factory=list)
    texts: TextFile | None = None  # the SOP's own texts, once it is valid

    def problem(
        self, path: KeyPath, message: str, *, at_key: bool = False, note: bool = False
    ) -> None:
        node = locate(self.root, path, at_key=at_key)
        line, column = (node.start_mark.line + 1, node.start_mark.column + 1) if node else (1, 1)
        dotted = ".".join(str(part) for part in path)
        found = Problem(self.file, line, column, dotted, message, note=note)
        (self.notes if note else self.problems).append(found)


def sop_files(path: Path) -> list[Path]:
    """The SOP files a path stands for: the file itself, or a folder's *.yaml/*.yml not named _*
    (nor `tiers.yaml`, the member tier rules that live beside the SOPs)."""
    if not path.is_dir():
        return [path]
    return sorted(
        child
        for child in path.iterdir()
        if child.suffix in (".yaml", ".yml")
        and not child.name.startswith("_")
        and not child.name.endswith(TEXTS_SUFFIX)
        and child.name != TIERS_FILE
        and child.is_file()
    )


def check_path(path: Path, content_dir: Path) -> list[Problem]:
    """Every problem in the SOP file at `path`, or in every SOP file of the folder `path`, and
    the notes (`Problem.note`: worth knowing, not in the way of loading) after them."""
    folder = path if path.is_dir() else path.parent
    documents, problems = _check(folder, sop_files(path), content_dir)
    return problems + [note for document in documents for note in document.notes]


def load_sops(folder: Path, content_dir: Path) -> tuple[dict[str, LoadedSop], list[Problem]]:
    """The valid SOPs of `folder` by id, and the problems of the others (which stay unloaded)."""
    documents, problems = _check(folder, sop_files(folder), content_dir)
    loaded = {
        document.sop.id: LoadedSop(
            document.sop,
            document.file,
            document.digest,
            sources(document.texts.texts) if document.texts else {},
        )
        for document in documents
        if document.sop is not None and not document.problems
    }
    return loaded, problems


def _check(
    folder: Path, targets: Sequence[Path], content_dir: Path
) -> tuple[list[_Document], list[Problem]]:
    """Check `targets`; the other SOP files of `folder` count for references across files."""
    files = sorted({*sop_files(folder), *targets}) if folder.is_dir() else list(targets)
    documents = {file: _parse(file) for file in files}
    known_ids = {
        document.data["id"]
        for document in documents.values()
        if isinstance(document.data, dict) and isinstance(document.data.get("id"), str)
    }
    owners: dict[str, _Document] = {}
    for document in documents.values():
        if document.sop is not None and not document.problems:
            owners.setdefault(document.sop.id, document)

    checked = [documents[file] for file in targets]
    texts = TextChecks(content_dir)
    for document in checked:
        if document.sop is None or document.problems:
            continue
        owner = owners[document.sop.id]
        _check_steps(document, document.sop, folder, content_dir, known_ids, owner)
        document.texts = own_texts(document.file, document.sop.id, document.root)
        document.problems += [
            replace(problem, origin=document.file) for problem in document.texts.problems
        ]
        document.digest = _with_texts(document)
        if not document.problems:
            _check_content(document, document.sop, folder, content_dir, known_ids, texts)
    problems = [problem for document in checked for problem in document.problems]
    return checked, texts.problems + problems


def _with_texts(document: _Document) -> str:
    """The digest of the SOP file and of its texts file, so that new texts count as a change."""
    assert document.sop is not None
    try:
        extra = texts_file_of(document.file, document.sop.id).read_bytes()
    except OSError:
        return document.digest
    return hashlib.sha256(document.digest.encode() + extra).hexdigest()


# --- Stage 1: YAML ------------------------------------------------------------------------------


def _parse(file: Path) -> _Document:
    """Stage 1 (YAML) and 2 (schema) of one file."""
    document = _Document(file)
    try:
        raw = file.read_bytes()
    except OSError as exc:
        document.problem((), f"cannot read the file: {exc.strerror or exc}")
        return document
    document.digest = hashlib.sha256(raw).hexdigest()
    source = raw.decode("utf-8", errors="replace")
    loader = SopLoader(source)
    try:
        document.root = loader.get_single_node()
        _duplicate_keys(document, document.root)
        if not document.problems and document.root is not None:
            document.data = loader.construct_document(document.root)
    except yaml.YAMLError as exc:
        document.problems.append(yaml_problem(file, exc, source))
    except ValueError as exc:
        document.problems.append(Problem(file, 1, 1, "", f"invalid YAML: {exc}"))
    finally:
        loader.dispose()
    if document.problems:
        return document
    if document.root is None:
        document.problem(
            (),
            "the file is empty; an SOP needs schema_version, id, name, groups, triggers and steps",
        )
        return document
    version = document.data.get("schema_version") if isinstance(document.data, dict) else None
    if version is not None and version != 1:
        document.problem(
            ("schema_version",),
            f"{version!r} is not supported; this Tidepool reads schema_version 1",
        )
        return document
    try:
        sop = Sop.model_validate(document.data)
    except ValidationError as exc:
        for error in exc.errors(include_url=False):
            _schema_problem(document, error)
        document.problems.sort(key=lambda problem: (problem.line, problem.column))
        return document
    _check_triggers(document, sop)
    if not document.problems:
        _check_conditions(document, sop)
    if not document.problems:
        document.sop = sop
    return document


def _duplicate_keys(document: _Document, node: yaml.Node | None) -> None:
    if isinstance(node, yaml.MappingNode):
        seen: dict[str, yaml.Node] = {}
        for key, value in node.value:
            if isinstance(key, yaml.ScalarNode) and key.value != "<<":
                if key.value in seen:
                    first = seen[key.value].start_mark.line + 1
                    document.problems.append(
                        Problem(
                            document.file,
                            key.start_mark.line + 1,
                            key.start_mark.column + 1,
                            "",
                            f"key '{key.value}' appears twice in this mapping "
                            f"(first on line {first})",
                        )
                    )
                seen[key.value] = key
            _duplicate_keys(document, value)
    elif isinstance(node, yaml.SequenceNode):
        for item in node.value:
            _duplicate_keys(document, item)


def locate(root: yaml.Node | None, path: KeyPath, *, at_key: bool = False) -> yaml.Node | None:
    """The YAML node at `path`, or the nearest parent that exists; the key node if `at_key`."""
    node = root
    for index, part in enumerate(path):
        last = index == len(path) - 1
        if isinstance(node, yaml.MappingNode):
            pair = next((pair for pair in node.value if pair[0].value == str(part)), None)
            if pair is None:
                return node
            node = pair[0] if last and at_key else pair[1]
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int):
            if not 0 <= part < len(node.value):
                return node
            node = node.value[part]
        else:
            return node
    return node


# --- Stage 2: schema ----------------------------------------------------------------------------


def _data_path(loc: tuple[str | int, ...]) -> list[str | int]:
    """Pydantic's error location without the union tags it inserts: the keys as in the file."""
    path: list[str | int] = []
    for index, part in enumerate(loc):
        after_union_item = (
            index >= 2
            and isinstance(loc[index - 1], int)
            and not isinstance(loc[index - 1], bool)
            and loc[index - 2] in _UNION_LISTS
        )
        if after_union_item or (index == 1 and loc[0] == "groups"):
            continue
        path.append(part)
    return path


def _schema_problem(document: _Document, error: ErrorDetails) -> None:
    path = _data_path(error["loc"])
    kind = error["type"]
    context = error.get("ctx", {})
    if kind == "unknown_key":
        key = str(context["key"])
        wide = next((char for char in key if char in FULL_WIDTH), None)
        message = f"{error['msg']}; {full_width_hint(wide)}" if wide else error["msg"]
        document.problem((*path, key), message, at_key=True)
        return
    if kind == "missing":
        document.problem(tuple(path), f"missing required key '{path[-1]}'")
        return
    if path and path[-1] == "[key]":  # a mapping's key is wrong (a permission's name): at it
        document.problem(tuple(path[:-1]), schema_message(error), at_key=True)
        return
    document.problem(tuple(path), schema_message(error))


def schema_message(error: ErrorDetails) -> str:
    """A pydantic error said for people: what was expected and what the file has."""
    kind = error["type"]
    context = error.get("ctx", {})
    value = error["input"]
    if kind in _EXPECTED:
        return f"must be {_EXPECTED[kind]}, not {describe(value)}"
    if kind == "literal_error":
        expected = str(context["expected"])
        choices = re.findall(r"'([^']*)'", expected)
        close = difflib.get_close_matches(str(value), choices, n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        return f"must be {expected}, not {describe(value)}{hint}"
    if kind == "too_short":
        count = context["min_length"]
        return f"needs at least {count} item{'s' if count != 1 else ''}"
    if kind == "string_too_short":
        return "must not be empty"
    if kind == "string_too_long":
        return f"must be at most {context['max_length']} characters"
    if kind == "greater_than":
        return f"must be more than {context['gt']}, not {describe(value)}"
    if kind == "greater_than_equal":
        return f"must be at least {context['ge']}, not {describe(value)}"
    return error["msg"].removeprefix("Value error, ")


def describe(value: object) -> str:
    """A value from a YAML file, as error messages name it."""
    if value is None:
        return "empty"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, str):
        return repr(value)
    return str(value)


# --- Stage 3: triggers --------------------------------------------------------------------------


@cache
def _timezone_names() -> frozenset[str]:
    return frozenset(available_timezones())


def _timezone(document: _Document, path: KeyPath, name: str | None) -> ZoneInfo | None:
    if name is None:
        return None
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        close = difflib.get_close_matches(name, sorted(_timezone_names()), n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        document.problem(
            path, f"unknown time zone '{name}'{hint}; use an IANA name such as Asia/Shanghai"
        )
        return None


def _check_triggers(document: _Document, sop: Sop) -> None:
    for index, trigger in enumerate(sop.triggers):
        at: KeyPath = ("triggers", index)
        if isinstance(trigger, MessageTrigger):
            for number, keyword in enumerate(trigger.keywords):
                if "，" in keyword or "、" in keyword:
                    parts = ", ".join(part.strip() for part in re.split("[，、]", keyword))
                    document.problem(
                        (*at, "keywords", number),
                        f"keyword '{keyword}' has a full-width comma, so it matches only that "
                        f"whole text; for several keywords write [{parts}]",
                        note=True,
                    )
        if isinstance(trigger, MessageTrigger) and trigger.regex is not None:
            try:
                re.compile(trigger.regex)
            except re.error as exc:
                document.problem(
                    (*at, "regex"), f"invalid regular expression: {exc.msg} at position {exc.pos}"
                )
        if isinstance(trigger, ScheduleTrigger):
            zone = _timezone(document, (*at, "timezone"), trigger.timezone)
            if trigger.cron is not None:
                try:
                    cron_trigger(trigger.cron, zone or ZoneInfo("UTC"))
                except ValueError as exc:
                    document.problem(
                        (*at, "cron"),
                        f"invalid cron expression '{trigger.cron}': {exc}; write 5 fields: "
                        "minute hour day month weekday, e.g. '0 9 * * mon'",
                    )


# --- Stage 4: conditions ------------------------------------------------------------------------


def _steps_with_paths(steps: Iterable[Step], at: KeyPath) -> Iterator[tuple[KeyPath, Step]]:
    """Every step with its key path, depth first, the steps inside steps (`if`) included."""
    for index, step in enumerate(steps):
        yield (*at, index), step
        for inside, nested in STEPS.of(step).nested(step):
            yield from _steps_with_paths(nested, (*at, index, *inside))


def _conditions_with_paths(sop: Sop) -> Iterator[tuple[KeyPath, Condition]]:
    for index, condition in enumerate(sop.conditions):
        yield ("conditions", index), condition
    for at, step in _steps_with_paths(sop.steps, ("steps",)):
        for inside, condition in STEPS.of(step).conditions(step):
            yield (*at, *inside), condition


def _sample_context(sop: Sop) -> dict[str, Any]:
    return {**SAMPLE_CONTEXT, "sop": {"id": sop.id, "name": sop.name}, "vars": sop.variables}


def _check_conditions(document: _Document, sop: Sop) -> None:
    names = ", ".join(sorted(SAMPLE_CONTEXT))
    for at, condition in _conditions_with_paths(sop):
        if isinstance(condition, TimeCondition):
            _timezone(document, (*at, "timezone"), condition.timezone)
        if isinstance(condition, TemplateCondition):
            try:
                expression = compile_expression(condition.value)
            except TemplateSyntaxError as exc:
                document.problem((*at, "value"), f"invalid expression: {exc.message}")
                continue
            try:
                expression(_sample_context(sop))
            except UndefinedError as exc:
                document.problem(
                    (*at, "value"), f"unknown variable: {exc.message}; expressions can use {names}"
                )
            except Exception:  # the sample values may not suit every expression; fine at runtime
                continue


# --- Stage 5: steps -----------------------------------------------------------------------------


def _check_steps(
    document: _Document,
    sop: Sop,
    folder: Path,
    content_dir: Path,
    known_ids: set[str],
    owner: _Document,
) -> None:
    if owner is not document:
        document.problem(
            ("id",), f"SOP id '{sop.id}' is already used by {owner.file.name}; SOP ids must differ"
        )
    first_use: dict[str, KeyPath] = {}
    for at, step in _steps_with_paths(sop.steps, ("steps",)):
        if step.id is None:
            continue
        if step.id in first_use:
            first = ".".join(map(str, first_use[step.id]))
            document.problem((*at, "id"), f"step id '{step.id}' is already used by {first}")
        first_use.setdefault(step.id, at)
    checks = _StepChecks(document, folder, content_dir, first_use.keys(), known_ids)
    for at, step in _steps_with_paths(sop.steps, ("steps",)):
        STEPS.of(step).check_references(step, at, checks)


def _steps_by_id(steps: Iterable[Step]) -> dict[str, Step]:
    """The steps that have an id, by it (the first of two with one id)."""
    found: dict[str, Step] = {}
    for step in walk_steps(steps):
        if step.id is not None:
            found.setdefault(step.id, step)
    return found


@dataclass
class _StepChecks:
    """What step types check beyond their models, in one SOP file (`bot.sop.steps.Checks`)."""

    document: _Document
    folder: Path
    content_dir: Path
    step_ids: Collection[str]
    sop_ids: Collection[str]
    sop_id: str = ""
    texts: TextChecks | None = None  # stage 6: the texts
    context: dict[str, Any] = field(default_factory=dict)

    @property
    def trigger_types(self) -> list[str]:
        sop = self.document.sop
        return [trigger.type for trigger in sop.triggers] if sop is not None else []

    def step_of(self, step_id: str) -> Step | None:
        sop = self.document.sop
        return _steps_by_id(sop.steps).get(step_id) if sop is not None else None

    def problem(self, at: KeyPath, message: str) -> None:
        self.document.problem(at, message)

    def text(self, at: KeyPath, key: str, kind: TextKind = "message", **extra: Any) -> None:
        assert self.texts is not None, "texts are checked in stage 6"
        assert self.document.texts is not None
        context = {**self.context, **extra} if extra else self.context
        own = self.document.texts.texts
        self.texts.text(self.document.problem, own, context, at, key, kind)

    def photo(self, at: KeyPath, photo: str) -> None:
        assert self.texts is not None, "files are checked in stage 6"
        self.texts.photo(self.document.problem, at, photo)


# --- Stage 6: texts and content -----------------------------------------------------------------


def _check_content(
    document: _Document,
    sop: Sop,
    folder: Path,
    content_dir: Path,
    sop_ids: set[str],
    texts: TextChecks,
) -> None:
    step_ids = [step.id for step in walk_steps(sop.steps) if step.id is not None]
    checks = _StepChecks(
        document, folder, content_dir, step_ids, sop_ids, sop.id, texts, _sample_context(sop)
    )
    for at, step in _steps_with_paths(sop.steps, ("steps",)):
        STEPS.of(step).check_content(step, at, checks)
