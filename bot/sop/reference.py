"""The SOP reference page in Markdown, generated from the format models and their descriptions.

Every trigger, condition and step, and every model they use, is read from `bot.sop.format`; the
template variables and events from `bot.sop.templates`. What the models cannot say (a Chinese
description of each model and field, an English one of each field, examples) comes from a
descriptions file (`docs/reference.yaml`); `problems()` lists what it lacks or has too much of,
and every example is validated against its model, so the page cannot drift from the code.
"""

from __future__ import annotations

import inspect
import json
import re
import typing
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Any, Literal

import yaml
from pydantic import BaseModel, TypeAdapter, ValidationError

from bot.sop import format as sop_format
from bot.sop.format import Sop, StepBase, TriggerBase, format_duration
from bot.sop.templates import EVENT_EXAMPLES, SAMPLE_CONTEXT, render
from bot.sop.yaml_files import SopLoader

Language = Literal["zh", "en"]
LANGUAGES: tuple[Language, ...] = ("zh", "en")

# Strings that stand for a value type, by the pattern their JSON Schema carries.
_PATTERNS = {
    sop_format.DURATION_PATTERN: "duration",
    sop_format.TIME_OF_DAY_PATTERN: "time",
    sop_format.ID_PATTERN: "id",
    sop_format.TEXT_KEY_PATTERN: "text_key",
    sop_format.EVENT_PATTERN: "event",
    sop_format.COMMAND_PATTERN: "command",
    sop_format.VARIABLE_PATTERN: "variable",
}
_WORDS: Mapping[str, Mapping[Language, str]] = {
    "string": {"zh": "文本", "en": "text"},
    "integer": {"zh": "整数", "en": "integer"},
    "number": {"zh": "数字", "en": "number"},
    "boolean": {"zh": "true/false", "en": "true/false"},
    "list": {"zh": "列表：", "en": "list of "},
    "mapping": {"zh": "映射：", "en": "mapping of "},
    "or": {"zh": " 或 ", "en": " or "},
    "date": {"zh": "日期", "en": "date"},
    "date-time": {"zh": "日期时间", "en": "date-time"},
    "required": {"zh": "必填", "en": "required"},
    "key": {"zh": "键", "en": "key"},
    "type": {"zh": "类型", "en": "type"},
    "default": {"zh": "默认值", "en": "default"},
    "meaning": {"zh": "含义", "en": "meaning"},
    "example": {"zh": "示例", "en": "Example"},
    "variable": {"zh": "变量", "en": "variable"},
    "sample": {"zh": "示例值", "en": "sample value"},
    "renders": {"zh": "渲染结果", "en": "renders as"},
    "event": {"zh": "事件", "en": "event"},
    "data": {"zh": "附带数据（trigger.data）", "en": "data (trigger.data)"},
}


@dataclass(frozen=True)
class Entry:
    """One documented model: its heading, anchor, and how its examples are checked.

    `model` is the model whose fields the table lists; `example_model` validates each example
    (a step's example is the whole step, `- send: ...`), and `inner` names the key whose value
    holds `model`'s fields within an example (the step's action key), if any."""

    name: str
    heading: str
    anchor: str
    model: type[BaseModel]
    example_model: Any
    inner: str | None = None
    skip: tuple[str, ...] = ()


def _members(union: Any) -> list[type[BaseModel]]:
    """The model classes of a (possibly annotated, tagged) union, in order."""
    found: list[type[BaseModel]] = []
    for arg in typing.get_args(union):
        if isinstance(arg, type) and issubclass(arg, BaseModel):
            found.append(arg)
        else:
            found.extend(_members(arg))
    return found


def _literal(model: type[BaseModel], field: str) -> str:
    (value,) = typing.get_args(model.model_fields[field].annotation)
    return str(value)


def _action_model(step: type[StepBase]) -> tuple[str, type[BaseModel]]:
    for name, field in step.model_fields.items():
        if (field.alias or name) == step.action:
            assert isinstance(field.annotation, type)
            return step.action, field.annotation
    raise LookupError(step.__name__)


def sections() -> list[tuple[str, list[Entry]]]:
    """The reference's sections (sop, triggers, conditions, steps, parts) and their entries."""
    fmt = sop_format
    sop = [
        Entry("Sop", "SOP", "sop-file", Sop, Sop),
        Entry("GroupSelector", "groups", "groups", fmt.GroupSelector, fmt.GroupSelector),
        Entry("CatchUp", "catch_up", "catch-up", fmt.CatchUp, fmt.CatchUp),
        Entry("ReferralRule", "referral", "referral", fmt.ReferralRule, fmt.ReferralRule),
        Entry("JoinRequests", "join_requests", "join-requests", fmt.JoinRequests, fmt.JoinRequests),
        Entry("ModerationRule", "moderation", "moderation", fmt.ModerationRule, fmt.ModerationRule),
        Entry("Warnings", "warnings", "warnings", fmt.Warnings, fmt.Warnings),
    ]
    triggers = [Entry("TriggerBase", "", "trigger-keys", TriggerBase, fmt.Trigger)]
    for model in _members(fmt.Trigger):
        kind = _literal(model, "type")
        triggers.append(
            Entry(model.__name__, f"`{kind}`", f"trigger-{kind}", model, model, skip=("type",))
        )
    conditions = []
    for model in _members(fmt.Condition):
        kind = _literal(model, "type")
        conditions.append(
            Entry(model.__name__, f"`{kind}`", f"condition-{kind}", model, model, skip=("type",))
        )
    steps = [Entry("StepBase", "", "step-keys", StepBase, fmt.Step)]
    for step in _members(fmt.Step):
        assert issubclass(step, StepBase)
        action, model = _action_model(step)
        steps.append(Entry(model.__name__, f"`{action}`", f"step-{action}", model, step, action))
    parts = [
        Entry(model.__name__, f"`{model.__name__}`", model.__name__.lower(), model, model)
        for model in (
            fmt.Button,
            fmt.Variant,
            fmt.MessageChecks,
            fmt.TagMatch,
            fmt.MessageCount,
            fmt.DurationRange,
            fmt.IntRange,
            fmt.ActivityCount,
            fmt.LotteryRules,
            fmt.LiveStart,
        )
    ]
    return [
        ("sop", sop),
        ("triggers", triggers),
        ("conditions", conditions),
        ("steps", steps),
        ("parts", parts),
    ]


def _own_fields(entry: Entry) -> list[str]:
    """The keys an entry documents (a trigger's own keys; the common ones are documented once)."""
    model = entry.model
    inherited: set[str] = set()
    for base in (TriggerBase, StepBase):
        if model is not base and issubclass(model, base):
            inherited = set(base.model_fields)
    return [
        field.alias or name
        for name, field in model.model_fields.items()
        if name not in inherited and (field.alias or name) not in entry.skip
    ]


def _reachable(model: type[BaseModel], seen: set[type[BaseModel]]) -> None:
    if model in seen:
        return
    seen.add(model)
    for field in model.model_fields.values():
        for found in _models_in(field.annotation):
            _reachable(found, seen)


def _models_in(annotation: Any) -> Iterator[type[BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        yield annotation
    for arg in typing.get_args(annotation):
        yield from _models_in(arg)


def variable_paths() -> list[str]:
    """Every template variable and, for mappings, every key in it: `member`, `member.name`, …"""
    paths = []
    for key, value in SAMPLE_CONTEXT.items():
        paths.append(key)
        if isinstance(value, Mapping):
            paths.extend(f"{key}.{inner}" for inner in value)
    return paths


def _described(item: Any, languages: Sequence[str]) -> list[str]:
    if not isinstance(item, Mapping):
        return list(languages)
    return [lang for lang in languages if not str(item.get(lang) or "").strip()]


def _keys_of(example: Any, entry: Entry) -> set[str]:
    value = example[0] if isinstance(example, list) and example else example
    if entry.inner is not None and isinstance(value, Mapping):
        value = value.get(entry.inner)
    return set(value) if isinstance(value, Mapping) else set()


def _example_sources(data: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(language, YAML source) of each of a model's examples (one source may serve both)."""
    found = []
    for example in data.get("examples") or []:
        if isinstance(example, str):
            found.append(("", example))
        elif isinstance(example, Mapping):
            found.extend((str(lang), str(text)) for lang, text in example.items())
    return found


def problems(descriptions: Mapping[str, Any]) -> list[str]:
    """What the descriptions file lacks or has in excess; an empty list when it is complete."""
    found: list[str] = []
    models = descriptions.get("models") or {}
    documented: set[type[BaseModel]] = set()
    names: set[str] = set()
    for section, entries in sections():
        if _described((descriptions.get("sections") or {}).get(section), LANGUAGES):
            found.append(f"sections.{section}: no title/intro in zh and en")
        for entry in entries:
            documented.add(entry.model)
            names.add(entry.name)
            data = models.get(entry.name)
            if not isinstance(data, Mapping):
                found.append(f"models.{entry.name}: not described (zh, fields, examples)")
                continue
            if _described(data, ["zh"]):
                found.append(f"models.{entry.name}: no Chinese description (zh)")
            fields = data.get("fields") or {}
            own = _own_fields(entry)
            for key in own:
                missing = _described(fields.get(key), LANGUAGES)
                if missing:
                    found.append(f"models.{entry.name}.fields.{key}: no {'/'.join(missing)}")
            found.extend(
                f"models.{entry.name}.fields.{key}: the model has no such key"
                for key in fields
                if key not in own
            )
            sources = _example_sources(data)
            if not sources:
                found.append(f"models.{entry.name}: no example")
            covered: set[str] = set()
            adapter = TypeAdapter(entry.example_model)
            for index, (_, source) in enumerate(sources):
                try:
                    example = yaml.load(source, Loader=SopLoader)
                    value = example[0] if isinstance(example, list) else example
                    adapter.validate_python(value)
                except (yaml.YAMLError, ValidationError, IndexError) as error:
                    first = str(error).splitlines()[:3]
                    found.append(
                        f"models.{entry.name}.examples.{index}: invalid: {' '.join(first)}"
                    )
                    continue
                covered |= _keys_of(example, entry)
            found.extend(
                f"models.{entry.name}: no example uses '{key}'"
                for key in own
                if key not in covered and sources
            )
    found.extend(f"models.{name}: no such model" for name in models if name not in names)
    reachable: set[type[BaseModel]] = set()
    _reachable(Sop, reachable)
    for model in sorted(reachable - documented, key=lambda model: model.__name__):
        if not any(issubclass(model, entry) for entry in documented if entry is not model):
            found.append(f"{model.__name__}: a model of the SOP format the reference leaves out")
    variables = descriptions.get("variables") or {}
    paths = variable_paths()
    for path in paths:
        missing = _described(variables.get(path), LANGUAGES)
        if missing:
            found.append(f"variables.{path}: no {'/'.join(missing)}")
    found.extend(f"variables.{path}: no such variable" for path in variables if path not in paths)
    for section in ("values", "variables", "events"):
        if _described((descriptions.get("sections") or {}).get(section), LANGUAGES):
            found.append(f"sections.{section}: no title/intro in zh and en")
    values = descriptions.get("values") or {}
    for name in _PATTERNS.values():
        missing = _described(values.get(name), LANGUAGES)
        if missing:
            found.append(f"values.{name}: no {'/'.join(missing)}")
    events = descriptions.get("events") or {}
    for event in EVENT_EXAMPLES:
        missing = _described(events.get(event), LANGUAGES)
        if missing:
            found.append(f"events.{event}: no {'/'.join(missing)}")
    found.extend(
        f"events.{event}: no such event" for event in events if event not in EVENT_EXAMPLES
    )
    return found


# --- Rendering --------------------------------------------------------------------------------


class _Types:
    """Field types in words, from a model's JSON Schema, with links to the models they name."""

    def __init__(self, language: Language, anchors: Mapping[str, str]) -> None:
        self.language = language
        self.anchors = anchors

    def word(self, key: str) -> str:
        return _WORDS[key][self.language]

    def of(self, schema: Mapping[str, Any]) -> str:
        if "$ref" in schema:
            name = str(schema["$ref"]).rsplit("/", 1)[-1]
            anchor = self.anchors.get(name)
            return f"[{name}](#{anchor})" if anchor else name
        for key in ("anyOf", "oneOf"):
            if key in schema:
                shown = [self.of(option) for option in schema[key] if option.get("type") != "null"]
                return self.word("or").join(dict.fromkeys(shown))
        if "const" in schema:
            return f"`{schema['const']}`"
        if "enum" in schema:
            return " \\| ".join(f"`{value}`" for value in schema["enum"])
        kind = schema.get("type")
        if kind == "array":
            return self.word("list") + self.of(schema.get("items") or {})
        if kind == "object":
            values = schema.get("additionalProperties")
            inner = self.of(values) if isinstance(values, Mapping) else self.word("string")
            return self.word("mapping") + inner
        if kind == "string":
            named = _PATTERNS.get(str(schema.get("pattern")))
            if named is not None:
                return f"[{named}](#value-{named.replace('_', '-')})"
            if schema.get("format") in ("date", "date-time"):
                return self.word(str(schema["format"]))
            return self.word("string")
        if isinstance(kind, str) and kind in _WORDS:
            return self.word(kind)
        return self.word("string")


def _default(model: type[BaseModel], key: str, language: Language) -> str:
    for name, field in model.model_fields.items():
        if (field.alias or name) != key:
            continue
        if field.is_required():
            return _WORDS["required"][language]
        value = field.get_default(call_default_factory=True)
        if isinstance(value, timedelta):
            return f"`{format_duration(value)}`"
        if isinstance(value, time):
            return f"`{value:%H:%M}`"
        if isinstance(value, BaseModel):
            return "`{}`" if not value.model_dump(exclude_defaults=True) else str(value)
        return f"`{json.dumps(value, ensure_ascii=False)}`"
    raise KeyError(key)


def _properties(model: type[BaseModel]) -> Mapping[str, Any]:
    """The JSON Schema of `model`'s keys (a recursive model's schema is a reference to it)."""
    schema = model.model_json_schema()
    if "$ref" in schema:
        schema = schema["$defs"][str(schema["$ref"]).rsplit("/", 1)[-1]]
    return dict(schema["properties"])


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def _docstring(model: type[BaseModel]) -> str:
    return " ".join((inspect.getdoc(model) or "").split())


def _sample(value: Any) -> str:
    if isinstance(value, datetime | date):
        return value.isoformat()
    return json.dumps(value, ensure_ascii=False, default=str)


def reference_markdown(descriptions: Mapping[str, Any], language: Language) -> str:
    """The reference's Markdown in `language` (the page's title and intro are the page's own)."""
    models = descriptions.get("models") or {}
    all_sections = sections()
    anchors = {}
    for _, entries in all_sections:
        for entry in entries:
            anchors[entry.model.__name__] = entry.anchor
            if entry.inner is not None:  # a step's model (SendStep) leads to its action's
                anchors[entry.example_model.__name__] = entry.anchor
    types = _Types(language, anchors)
    lines: list[str] = []
    for section, entries in all_sections:
        lines += _heading(descriptions, language, section)
        for entry in entries:
            data = models.get(entry.name) or {}
            described = str(data.get(language) or "").strip()
            if language == "en" and not described:
                described = _docstring(entry.model)
            if entry.heading:
                lines += [f"### {entry.heading} {{#{entry.anchor}}}", ""]
            else:
                lines += [f'<a id="{entry.anchor}"></a>', ""]
            lines += [described, ""]
            own = _own_fields(entry)
            if own:
                properties = _properties(entry.model)
                lines += [
                    f"| {types.word('key')} | {types.word('type')} | {types.word('default')} "
                    f"| {types.word('meaning')} |",
                    "| --- | --- | --- | --- |",
                ]
                fields = data.get("fields") or {}
                for key in own:
                    schema = next(
                        value
                        for name, value in properties.items()
                        if name == key or name.rstrip("_") == key
                    )
                    meaning = (fields.get(key) or {}).get(language) or ""
                    lines.append(
                        f"| `{key}` | {types.of(schema)} | {_default(entry.model, key, language)} "
                        f"| {_cell(str(meaning))} |"
                    )
                lines.append("")
            for shown_in, source in _example_sources(data):
                if shown_in in ("", language):
                    lines += [
                        f'```yaml title="{types.word("example")}"',
                        source.rstrip(),
                        "```",
                        "",
                    ]
    lines += _values(descriptions, language)
    lines += _variables(descriptions, language)
    lines += _events(descriptions, language)
    return "\n".join(lines).rstrip() + "\n"


def _heading(descriptions: Mapping[str, Any], language: Language, section: str) -> list[str]:
    """A section's title (its anchor: the section's name) and introduction, in `language`."""
    texts = (descriptions.get("sections") or {}).get(section) or {}
    title, _, intro = str(texts.get(language) or section).partition("\n")
    return [f"## {title.strip()} {{#{section}}}", "", intro.strip(), ""]


def _table_head(language: Language, *columns: str) -> list[str]:
    """A table's header row, its columns named in `language`."""
    names = " | ".join(_WORDS[column][language] for column in columns)
    return [f"| {names} |", "|" + " --- |" * len(columns)]


def _values(descriptions: Mapping[str, Any], language: Language) -> list[str]:
    lines = _heading(descriptions, language, "values")
    values = descriptions.get("values") or {}
    for name in dict.fromkeys(_PATTERNS.values()):
        text = str((values.get(name) or {}).get(language) or "").strip()
        lines += [f"### {name} {{#value-{name.replace('_', '-')}}}", "", text, ""]
    return lines


def _variables(descriptions: Mapping[str, Any], language: Language) -> list[str]:
    lines = _heading(descriptions, language, "variables")
    lines += _table_head(language, "variable", "meaning", "sample")
    variables = descriptions.get("variables") or {}
    for path in variable_paths():
        value: Any = SAMPLE_CONTEXT
        for part in path.split("."):
            value = value[part]
        if isinstance(value, Mapping) and value:
            shown = ", ".join(f"`{key}`" for key in value)
        elif isinstance(value, list):
            shown = f"{len(value)} × …"
        else:
            rendered = render("{{ " + path + " }}", SAMPLE_CONTEXT)
            shown = f"`{_cell(rendered) or '—'}`"
        meaning = (variables.get(path) or {}).get(language) or ""
        lines.append(f"| `{path}` | {_cell(str(meaning))} | {shown} |")
    return [*lines, ""]


def _events(descriptions: Mapping[str, Any], language: Language) -> list[str]:
    lines = _heading(descriptions, language, "events")
    lines += _table_head(language, "event", "meaning", "data")
    events = descriptions.get("events") or {}
    for event, data in EVENT_EXAMPLES.items():
        meaning = (events.get(event) or {}).get(language) or ""
        lines.append(f"| `{event}` | {_cell(str(meaning))} | `{_sample(dict(data))}` |")
    return [*lines, ""]


def heading_ids(markdown: str) -> list[str]:
    """The explicit ids (`{#id}`) of a generated page's headings, in order."""
    return re.findall(r"\{#([a-z0-9-]+)\}", markdown)
