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
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

import yaml
from jinja2 import TemplateError, TemplateSyntaxError, UndefinedError
from pydantic import ValidationError
from pydantic_core import ErrorDetails

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
from bot.sop.templates import LANGUAGES, SAMPLE_CONTEXT, compile_expression, load_catalogues, render

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
class Problem:
    """One thing wrong in an SOP file, where it is and what to do about it."""

    file: Path
    line: int
    column: int
    path: str
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}:{self.column}"
        return f"{where}: {self.path}: {self.message}" if self.path else f"{where}: {self.message}"


@dataclass(frozen=True)
class LoadedSop:
    """A valid SOP, the file it came from and the SHA-256 of that file's content."""

    sop: Sop
    file: Path
    digest: str


@dataclass
class _Document:
    file: Path
    digest: str = ""
    root: yaml.Node | None = None
    data: Any = None
    sop: Sop | None = None
    problems: list[Problem] = field(default_factory=list)

    def problem(self, path: KeyPath, message: str, *, at_key: bool = False) -> None:
        node = locate(self.root, path, at_key=at_key)
        line, column = (node.start_mark.line + 1, node.start_mark.column + 1) if node else (1, 1)
        dotted = ".".join(str(part) for part in path)
        self.problems.append(Problem(self.file, line, column, dotted, message))


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
        and child.name != TIERS_FILE
        and child.is_file()
    )


def check_path(path: Path, content_dir: Path) -> list[Problem]:
    """Every problem in the SOP file at `path`, or in every SOP file of the folder `path`."""
    folder = path if path.is_dir() else path.parent
    return _check(folder, sop_files(path), content_dir)[1]


def load_sops(folder: Path, content_dir: Path) -> tuple[dict[str, LoadedSop], list[Problem]]:
    """The valid SOPs of `folder` by id, and the problems of the others (which stay unloaded)."""
    documents, problems = _check(folder, sop_files(folder), content_dir)
    loaded = {
        document.sop.id: LoadedSop(document.sop, document.file, document.digest)
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
    content = _Content(content_dir)
    for document in checked:
        if document.sop is None or document.problems:
            continue
        owner = owners[document.sop.id]
        _check_steps(document, document.sop, folder, content_dir, known_ids, owner)
        if not document.problems:
            content.check(document, document.sop, folder, known_ids)
    problems = [problem for document in checked for problem in document.problems]
    return checked, content.problems + problems


# --- Stage 1: YAML ------------------------------------------------------------------------------


class _SopLoader(yaml.SafeLoader):
    """SafeLoader that reads 10:30 as text, not as the YAML 1.1 base-60 number 630."""


_SopLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if not tag.endswith((":int", ":float"))]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_SopLoader.add_implicit_resolver(
    "tag:yaml.org,2002:int",
    re.compile(r"^(?:[-+]?0b[0-1_]+|[-+]?0[0-7_]+|[-+]?(?:0|[1-9][0-9_]*)|[-+]?0x[0-9a-fA-F_]+)$"),
    list("-+0123456789"),
)
_SopLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(
        r"^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+][0-9]+)?|\.[0-9][0-9_]*(?:[eE][-+][0-9]+)?"
        r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$"
    ),
    list("-+0123456789."),
)


def _parse(file: Path) -> _Document:
    """Stage 1 (YAML) and 2 (schema) of one file."""
    document = _Document(file)
    try:
        raw = file.read_bytes()
    except OSError as exc:
        document.problem((), f"cannot read the file: {exc.strerror or exc}")
        return document
    document.digest = hashlib.sha256(raw).hexdigest()
    loader = _SopLoader(raw.decode("utf-8", errors="replace"))
    try:
        document.root = loader.get_single_node()
        _duplicate_keys(document, document.root)
        if not document.problems and document.root is not None:
            document.data = loader.construct_document(document.root)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        message = f"invalid YAML: {exc.problem or exc.context}"
        if exc.problem and exc.context and exc.context_mark:
            message += f" ({exc.context} that starts at line {exc.context_mark.line + 1})"
        if "block" in message:
            message += "; check the indentation"
        line, column = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        document.problems.append(Problem(file, line, column, "", message))
    except (yaml.YAMLError, ValueError) as exc:
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
        document.problem((*path, str(context["key"])), error["msg"], at_key=True)
        return
    if kind == "missing":
        document.problem(tuple(path), f"missing required key '{path[-1]}'")
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


@dataclass
class _StepChecks:
    """What step types check beyond their models, in one SOP file (`bot.sop.steps.Checks`)."""

    document: _Document
    folder: Path
    content_dir: Path
    step_ids: Collection[str]
    sop_ids: Collection[str]
    content: _Content | None = None  # stage 6: the texts
    catalogues: dict[str, dict[str, str]] = field(default_factory=dict)
    context: dict[str, Any] = field(default_factory=dict)

    def problem(self, at: KeyPath, message: str) -> None:
        self.document.problem(at, message)

    def text(self, at: KeyPath, key: str, **extra: Any) -> None:
        assert self.content is not None, "texts are checked in stage 6"
        context = {**self.context, **extra} if extra else self.context
        self.content.text(self.document, self.catalogues, context, at, key)

    def photo(self, at: KeyPath, photo: str) -> None:
        assert self.content is not None, "files are checked in stage 6"
        self.content.photo(self.document, at, photo)


# --- Stage 6: texts and content -----------------------------------------------------------------


class _Content:
    """The text catalogue and files under CONTENT_DIR, read once per check."""

    def __init__(self, content_dir: Path) -> None:
        self.content_dir = content_dir
        self.problems: list[Problem] = []
        self._catalogues: dict[str, dict[str, str]] | None = None

    def catalogues(self) -> dict[str, dict[str, str]] | None:
        if self._catalogues is None and not self.problems:
            try:
                self._catalogues = load_catalogues(self.content_dir)
            except OSError as exc:
                where = Path(exc.filename) if exc.filename else self.content_dir
                self.problems.append(
                    Problem(where, 1, 1, "", f"cannot read the texts: {exc.strerror or exc}")
                )
            except yaml.YAMLError as exc:
                mark = getattr(exc, "problem_mark", None)
                self.problems.append(
                    Problem(
                        self.content_dir / "texts",
                        mark.line + 1 if mark else 1,
                        mark.column + 1 if mark else 1,
                        "",
                        f"the text catalogue is not valid YAML: {exc}".replace("\n", " "),
                    )
                )
        return self._catalogues

    def check(self, document: _Document, sop: Sop, folder: Path, sop_ids: set[str]) -> None:
        catalogues = self.catalogues()
        if catalogues is None:
            document.problem((), "texts not checked: the text catalogue cannot be read")
            return
        step_ids = [step.id for step in walk_steps(sop.steps) if step.id is not None]
        context = _sample_context(sop)
        checks = _StepChecks(
            document, folder, self.content_dir, step_ids, sop_ids, self, catalogues, context
        )
        for at, step in _steps_with_paths(sop.steps, ("steps",)):
            STEPS.of(step).check_content(step, at, checks)

    def text(
        self,
        document: _Document,
        catalogues: dict[str, dict[str, str]],
        context: dict[str, Any],
        at: KeyPath,
        key: str,
    ) -> None:
        texts = self.content_dir / "texts"
        missing = [language for language in LANGUAGES if key not in catalogues[language]]
        if len(missing) == len(LANGUAGES):
            names = " or ".join(f"{language}.yaml" for language in LANGUAGES)
            document.problem(at, f"text key '{key}' is not in {texts}/{names}")
            return
        if missing:
            present = [language for language in LANGUAGES if language not in missing]
            document.problem(
                at,
                f"text key '{key}' is in {texts}/{present[0]}.yaml but not in {missing[0]}.yaml",
            )
            return
        for language in LANGUAGES:
            try:
                render(catalogues[language][key], context)
            except UndefinedError as exc:
                names = ", ".join(sorted(context))
                variables = ", ".join(sorted(context["vars"])) or "none"
                document.problem(
                    at,
                    f"text '{key}' ({language}) uses an unknown variable: {exc.message}; texts can "
                    f"use {names} (this SOP's vars: {variables})",
                )
                return
            except TemplateSyntaxError as exc:
                document.problem(
                    at,
                    f"text '{key}' ({language}) is not a valid template: {exc.message} "
                    f"(line {exc.lineno} of the text)",
                )
                return
            except (TemplateError, TypeError, ValueError, ArithmeticError) as exc:
                document.problem(at, f"text '{key}' ({language}) cannot render: {exc}")
                return

    def photo(self, document: _Document, at: KeyPath, photo: str) -> None:
        base = self.content_dir.resolve()
        target = (base / photo).resolve()
        if not target.is_relative_to(base) or not target.is_file():
            document.problem(
                at,
                f"photo '{photo}' is not a file under {self.content_dir} (CONTENT_DIR); "
                "use a path inside it or an https:// URL",
            )
