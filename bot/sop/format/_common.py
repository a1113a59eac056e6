"""Value types, patterns and validators that every part of the SOP format shares, and `Strict`."""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass
from datetime import time, timedelta
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    GetCoreSchemaHandler,
    GetJsonSchemaHandler,
    PlainSerializer,
    PlainValidator,
    WithJsonSchema,
    model_validator,
)
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import PydanticCustomError, core_schema

ID_PATTERN = r"^[a-z][a-z0-9_]{1,63}$"
TEXT_KEY_PATTERN = r"^[a-z0-9_]+(\.[a-z0-9_]+)*$"
EVENT_PATTERN = r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+$"
COMMAND_PATTERN = r"^[a-z0-9_]{1,32}$"
VARIABLE_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]*$"
DURATION_PATTERN = r"^(\d+d)?(\d+h)?(\d+m)?(\d+s)?$"
TIME_OF_DAY_PATTERN = r"^([01]\d|2[0-3]):[0-5]\d$"

_DURATION = re.compile(r"(?:(?P<d>\d+)d)?(?:(?P<h>\d+)h)?(?:(?P<m>\d+)m)?(?:(?P<s>\d+)s)?")


# --- Small value types --------------------------------------------------------------------------


def parse_duration(value: object) -> timedelta:
    """`30s`, `10m`, `24h`, `3d`, `1d12h` → timedelta (longer than zero)."""
    if isinstance(value, timedelta):
        delta = value
    else:
        match = _DURATION.fullmatch(value.strip()) if isinstance(value, str) else None
        if match is None or not any(match.groups()):
            raise ValueError(
                f"{value!r} is not a duration; write it like 30s, 10m, 24h, 3d or 1d12h"
            )
        units = {unit: int(number or 0) for unit, number in match.groupdict().items()}
        try:
            delta = timedelta(
                days=units["d"], hours=units["h"], minutes=units["m"], seconds=units["s"]
            )
        except OverflowError:
            raise ValueError(f"{value!r} is far too long a duration") from None
    if delta <= timedelta(0):
        raise ValueError("must be longer than 0s")
    return delta


def format_duration(delta: timedelta) -> str:
    """The inverse of parse_duration: timedelta(days=1, hours=12) → `1d12h`."""
    seconds = int(delta.total_seconds())
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        count, seconds = divmod(seconds, size)
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts) or "0s"


def parse_time_of_day(value: object) -> time:
    """`HH:MM` (24-hour clock) → time."""
    if isinstance(value, time):
        return value
    if isinstance(value, str) and re.fullmatch(TIME_OF_DAY_PATTERN, value.strip()):
        hour, minute = value.strip().split(":")
        return time(int(hour), int(minute))
    raise ValueError(f"{value!r} is not a time of day; write it as HH:MM, e.g. 09:30 or 21:00")


@dataclass(frozen=True, slots=True)
class _Matching:
    """Text that matches `pattern`, refused as not being `what`; its JSON Schema is the pattern."""

    pattern: str
    what: str

    def __get_pydantic_core_schema__(
        self, source: Any, handler: GetCoreSchemaHandler
    ) -> core_schema.CoreSchema:
        compiled = re.compile(self.pattern)

        def check(value: str) -> str:
            if not compiled.match(value):
                raise ValueError(f"{value!r} is not {self.what}")
            return value

        return core_schema.no_info_after_validator_function(check, handler(source))

    def __get_pydantic_json_schema__(
        self, schema: core_schema.CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        return {"type": "string", "pattern": self.pattern}


def _command_name(value: str) -> str:
    if value.startswith("/"):
        raise ValueError(f"write the command without the slash: {value[1:]!r}")
    return value


def _scalar(value: object) -> str | int | float | bool:
    if isinstance(value, str | int | float | bool):
        return value
    raise ValueError("must be text, a number or true/false")


Duration = Annotated[
    timedelta,
    PlainValidator(parse_duration),
    PlainSerializer(format_duration, return_type=str),
    WithJsonSchema(
        {"type": "string", "pattern": DURATION_PATTERN, "examples": ["30s", "10m", "24h", "1d12h"]}
    ),
]
TimeOfDay = Annotated[
    time,
    PlainValidator(parse_time_of_day),
    PlainSerializer(lambda value: value.strftime("%H:%M"), return_type=str),
    WithJsonSchema({"type": "string", "pattern": TIME_OF_DAY_PATTERN, "examples": ["09:30"]}),
]
Identifier = Annotated[
    str,
    _Matching(ID_PATTERN, "an id: 2-64 lowercase letters, digits or _, starting with a letter"),
]
TextKey = Annotated[
    str,
    _Matching(
        TEXT_KEY_PATTERN,
        "a text key such as greeting or welcome.greeting (from the SOP's texts or content/texts)",
    ),
]
EventName = Annotated[
    str,
    _Matching(EVENT_PATTERN, "an event name: dotted lowercase words such as checkin.done"),
]
CommandName = Annotated[
    str,
    BeforeValidator(lambda value: _command_name(value) if isinstance(value, str) else value),
    _Matching(COMMAND_PATTERN, "a command: 1-32 lowercase letters, digits or _"),
]
VariableName = Annotated[
    str,
    _Matching(
        VARIABLE_PATTERN, "a variable name: letters, digits and _, not starting with a digit"
    ),
]
Scalar = Annotated[
    str | int | float | bool,
    PlainValidator(_scalar, json_schema_input_type=str | int | float | bool),
]
NonEmptyText = Annotated[str, Field(min_length=1)]
Tier = Literal["new", "ordinary", "seed", "value", "core", "dormant", "churned"]
Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]


class Strict(BaseModel):
    """Base of every SOP model: unknown keys are errors that suggest the key meant."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    @model_validator(mode="before")
    @classmethod
    def _known_keys(cls, data: Any) -> Any:
        if isinstance(data, dict):
            allowed = [field.alias or name for name, field in cls.model_fields.items()]
            for key in data:
                if key not in allowed:
                    raise unknown_key(key, allowed)
        return data


def unknown_key(key: object, allowed: list[str]) -> PydanticCustomError:
    """The error for a key the model does not have, with the closest allowed key if any."""
    close = difflib.get_close_matches(str(key), allowed, n=1, cutoff=0.6)
    hint = f" (did you mean {close[0]!r}?)" if close else f"; keys here are: {', '.join(allowed)}"
    return PydanticCustomError(
        "unknown_key", "unknown key '{key}'{hint}", {"key": key, "hint": hint}
    )


def _key(model: BaseModel, name: str) -> str:
    return type(model).model_fields[name].alias or name


def _exactly_one(model: BaseModel, *names: str, required: bool = True) -> None:
    given = [_key(model, name) for name in names if getattr(model, name) not in (None, [], {})]
    shown = " or ".join(repr(_key(model, name)) for name in names)
    if len(given) > 1:
        raise ValueError(f"use only one of {shown}, not {' and '.join(map(repr, given))}")
    if required and not given:
        raise ValueError(f"needs one of {shown}")


_TEXT_KEY_PART = re.compile(r"[a-z0-9_]+")


def flat_texts(tree: Any, prefix: str = "") -> dict[str, str]:
    """A language's texts as written (nested mappings allowed) as `{"intro.button": text}`;
    ValueError names the first key that is not a text key or whose value is not a text."""
    if not isinstance(tree, dict):
        where = f"'{prefix[:-1]}'" if prefix else "the texts of a language"
        raise ValueError(f"{where} must be a mapping of text keys to texts")
    flat: dict[str, str] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if not isinstance(key, str) or not _TEXT_KEY_PART.fullmatch(key):
            raise ValueError(
                f"'{name}' is not a text key: use lowercase letters, digits and _ "
                "(nest mappings for dotted keys)"
            )
        if isinstance(value, dict):
            flat.update(flat_texts(value, f"{name}."))
        elif isinstance(value, str | int | float) and not isinstance(value, bool):
            if not str(value).strip():
                raise ValueError(f"text '{name}' is empty")
            flat[name] = str(value)
        else:
            kind = "empty" if value is None else type(value).__name__
            raise ValueError(f"text '{name}' must be a text, not {kind}")
    return flat


TextTree = Annotated[
    dict[str, Any],
    AfterValidator(flat_texts),
    WithJsonSchema(
        {
            "type": "object",
            "description": "text keys -> texts (Jinja2, sent as Telegram HTML); nest for dots",
            "additionalProperties": {"anyOf": [{"type": "string"}, {"type": "object"}]},
        }
    ),
]


def _at_least_one(model: BaseModel, *names: str) -> None:
    if all(getattr(model, name) in (None, [], {}) for name in names):
        raise ValueError(f"needs at least one of {', '.join(repr(name) for name in names)}")


def _typed(kinds: tuple[str, ...], what: str) -> BeforeValidator:
    def check(value: Any) -> Any:
        if not isinstance(value, dict):
            return value
        kind = value.get("type")
        if kind is None:
            raise PydanticCustomError(
                "missing_type",
                "a {what} needs a 'type': one of {kinds}",
                {"what": what, "kinds": ", ".join(kinds)},
            )
        if kind not in kinds:
            close = difflib.get_close_matches(str(kind), kinds, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else f"; use one of {', '.join(kinds)}"
            raise PydanticCustomError(
                "unknown_type",
                "unknown {what} type '{kind}'{hint}",
                {"what": what, "kind": kind, "hint": hint},
            )
        return value

    return BeforeValidator(check)


def _at_most(days: int) -> AfterValidator:
    def check(value: timedelta | None) -> timedelta | None:
        if value is not None and value > timedelta(days=days):
            raise ValueError(f"must be at most {days}d")
        return value

    return AfterValidator(check)


LongDuration = Annotated[Duration, _at_most(3650)]  # rule windows: ten years at most
