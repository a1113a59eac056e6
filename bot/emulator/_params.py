"""Decoding of Bot API request parameters (query string, form, multipart, JSON) like Telegram."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from aiohttp import BodyPartReader, web

from ._state import JSON, ApiError

#: Parameters that carry JSON-serialised objects when sent as form fields.
JSON_PARAMS = frozenset(
    {
        "reply_markup",
        "allowed_updates",
        "reply_parameters",
        "entities",
        "caption_entities",
        "commands",
        "scope",
        "permissions",
        "link_preview_options",
        "media",
    }
)


@dataclass
class Upload:
    """A file uploaded as a multipart part."""

    filename: str
    content_type: str
    size: int


def _bad(description: str) -> ApiError:
    return ApiError(400, f"Bad Request: {description}")


class Params:
    """Typed access to the parameters of one Bot API call."""

    def __init__(self, raw: dict[str, Any]) -> None:
        self.raw = raw

    @classmethod
    async def from_request(cls, request: web.Request) -> Params:
        """Merge query-string parameters with the body (JSON, urlencoded or multipart)."""
        raw: dict[str, Any] = dict(request.query)
        if request.method != "POST" or not request.can_read_body:
            return cls(raw)
        ctype = request.content_type
        try:
            if ctype == "application/json":
                body = await request.json()
                if not isinstance(body, dict):
                    raise _bad("JSON body must be an object")
                raw.update(body)
            elif ctype == "multipart/form-data":
                reader = await request.multipart()
                async for part in reader:
                    if not isinstance(part, BodyPartReader) or part.name is None:
                        continue
                    if part.filename is not None:
                        data = await part.read()
                        raw[part.name] = Upload(
                            part.filename,
                            part.headers.get("Content-Type", "application/octet-stream"),
                            len(data),
                        )
                    else:
                        raw[part.name] = await part.text()
            else:
                form = await request.post()
                for key, value in form.items():
                    if isinstance(value, str):
                        raw[key] = value
                    elif isinstance(value, bytes | bytearray):
                        raw[key] = value.decode()
                    else:
                        content = value.file.read()
                        raw[key] = Upload(value.filename, value.content_type, len(content))
        except ApiError:
            raise
        except (ValueError, UnicodeDecodeError) as exc:
            raise _bad(f"can't parse request body: {exc}") from exc
        return cls(raw)

    def decoded(self) -> JSON:
        """Parameters for the call log: JSON fields decoded, uploads summarised."""
        out: JSON = {}
        for key, value in self.raw.items():
            if isinstance(value, str) and value.startswith("attach://"):
                value = self.raw.get(value.removeprefix("attach://"), value)
            if isinstance(value, Upload):
                out[key] = {"upload": value.filename, "size": value.size}
            elif key in JSON_PARAMS and isinstance(value, str):
                try:
                    out[key] = json.loads(value)
                except ValueError:
                    out[key] = value
            else:
                out[key] = value
        return out

    def present(self, name: str) -> bool:
        """Whether the parameter was sent (and is not an empty string)."""
        value = self.raw.get(name)
        return value is not None and value != ""

    def upload(self, name: str) -> Upload | None:
        """An uploaded file part, if that is what ``name`` holds."""
        value = self.raw.get(name)
        if isinstance(value, str) and value.startswith("attach://"):
            value = self.raw.get(value.removeprefix("attach://"))
        return value if isinstance(value, Upload) else None

    def str_(self, name: str, *, empty: str | None = None) -> str | None:
        """A string parameter; ``empty`` is the error description when it is required."""
        value = self.raw.get(name)
        if value is None or value == "":
            if empty is not None:
                raise _bad(empty)
            return None
        if isinstance(value, Upload):
            raise _bad(f"{name} must be a string")
        if isinstance(value, bool):
            return "true" if value else "false"
        return str(value)

    def int_(self, name: str, *, empty: str | None = None) -> int | None:
        """An integer parameter."""
        value = self.raw.get(name)
        if value is None or value == "":
            if empty is not None:
                raise _bad(empty)
            return None
        if isinstance(value, bool):
            raise _bad(f"invalid {name} specified")
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        try:
            return int(str(value).strip())
        except ValueError:
            raise _bad(f"invalid {name} specified") from None

    def bool_(self, name: str, default: bool = False) -> bool:
        """A boolean parameter ("true"/"false"/"1"/"0" or JSON booleans)."""
        value = self.raw.get(name)
        if value is None or value == "":
            return default
        if isinstance(value, bool):
            return value
        if isinstance(value, int):
            return value != 0
        text = str(value).strip().lower()
        if text in ("true", "1", "yes", "on"):
            return True
        if text in ("false", "0", "no", "off"):
            return False
        raise _bad(f"invalid {name} specified")

    def json_(self, name: str, *, error: str | None = None) -> Any:
        """A JSON-object parameter (string from forms, structured from JSON bodies)."""
        value = self.raw.get(name)
        if value is None or value == "":
            return None
        if isinstance(value, str):
            try:
                return json.loads(value)
            except ValueError:
                raise _bad(error or f"can't parse {name} JSON object") from None
        if isinstance(value, Upload):
            raise _bad(error or f"can't parse {name} JSON object")
        return value

    def chat_id(self) -> int | str:
        """``chat_id`` as an int, or an ``@username`` string."""
        value = self.str_("chat_id", empty="chat_id is empty")
        assert value is not None
        value = value.strip()
        if value.startswith("@"):
            return value
        try:
            return int(value)
        except ValueError:
            raise _bad("chat not found") from None

    def chat_key(self) -> str | None:
        """The raw chat_id as a string (for fault matching and rate limits)."""
        value = self.raw.get("chat_id")
        if value is None or value == "" or isinstance(value, Upload):
            return None
        return str(value).strip()
