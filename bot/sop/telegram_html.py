"""What Telegram accepts in a text sent with parse_mode HTML, and how long it is once parsed.

Telegram refuses a whole message ("can't parse entities") for one bare `<` or `&`, an unknown tag
or a tag left open, so `tidepool check` runs every rendered text through `html_problems` first.
The rules are the Bot API's "HTML style": https://core.telegram.org/bots/api#html-style
"""

from __future__ import annotations

import html
import re

MESSAGE_LIMIT = 4096  # characters of a text message, once its HTML is parsed
CAPTION_LIMIT = 1024  # characters of a photo's caption
CALLBACK_LIMIT = 64  # bytes of a button's callback data

# Tag -> the attributes it may have (Telegram ignores others, but a typo there is worth knowing).
ALLOWED_TAGS: dict[str, frozenset[str]] = {
    "b": frozenset(),
    "strong": frozenset(),
    "i": frozenset(),
    "em": frozenset(),
    "u": frozenset(),
    "ins": frozenset(),
    "s": frozenset(),
    "strike": frozenset(),
    "del": frozenset(),
    "span": frozenset({"class"}),
    "tg-spoiler": frozenset(),
    "a": frozenset({"href"}),
    "tg-emoji": frozenset({"emoji-id"}),
    "code": frozenset({"class"}),
    "pre": frozenset(),
    "blockquote": frozenset({"expandable"}),
}
_REQUIRED = {"a": "href", "tg-emoji": "emoji-id"}
_TAG = re.compile(
    r"<(?P<close>/?)(?P<name>[A-Za-z][A-Za-z0-9-]*)"
    r"(?P<attrs>(?:\s+[A-Za-z][A-Za-z0-9-]*(?:\s*=\s*(?:\"[^\"]*\"|'[^']*'|[^\s\"'>]+))?)*)"
    r"\s*/?>"
)
_ATTR = re.compile(r"([A-Za-z][A-Za-z0-9-]*)(?:\s*=\s*(\"[^\"]*\"|'[^']*'|[^\s\"'>]+))?")
_ENTITY = re.compile(r"&(?:lt|gt|amp|quot|#[0-9]{1,7}|#[xX][0-9A-Fa-f]{1,6});")
_SPECIAL = re.compile(r"[<&]")


def _near(text: str, at: int) -> str:
    """The text around position `at`, on one line, for a message that points at it."""
    start, end = max(0, at - 20), min(len(text), at + 20)
    snippet = text[start:end].replace("\n", " ")
    return f"{'…' if start else ''}{snippet}{'…' if end < len(text) else ''}"


def html_problems(text: str) -> list[str]:
    """What Telegram would refuse in `text` (HTML as it will be sent), each said with a fix."""
    problems: list[str] = []
    open_tags: list[str] = []
    for found in _SPECIAL.finditer(text):
        at = found.start()
        if found.group() == "&":
            if not _ENTITY.match(text, at):
                problems.append(
                    f"a bare '&' in \"{_near(text, at)}\": Telegram reads '&' as the start of an "
                    "HTML entity; write &amp; (or &lt; &gt; &quot;)"
                )
            continue
        tag = _TAG.match(text, at)
        if tag is None:
            problems.append(
                f"a bare '<' in \"{_near(text, at)}\": Telegram reads '<' as the start of a tag; "
                "write &lt;"
            )
            continue
        name = tag["name"].lower()
        if name not in ALLOWED_TAGS:
            allowed = ", ".join(f"<{tag}>" for tag in ALLOWED_TAGS)
            hint = "; for a line break write a new line" if name == "br" else ""
            problems.append(f"Telegram does not allow the tag <{name}>{hint} (allowed: {allowed})")
            continue
        if tag["close"]:
            if not open_tags or open_tags[-1] != name:
                expected = f"</{open_tags[-1]}>" if open_tags else "nothing open"
                problems.append(f"</{name}> closes a tag that is not open (expected {expected})")
            else:
                open_tags.pop()
            continue
        attributes = {key.lower() for key, _ in _ATTR.findall(tag["attrs"])}
        unknown = attributes - ALLOWED_TAGS[name]
        if unknown:
            problems.append(f"<{name}> cannot have {', '.join(sorted(unknown))}")
        needed = _REQUIRED.get(name)
        if needed is not None and needed not in attributes:
            problems.append(f'<{name}> needs {needed}="…"')
        if not tag.group().endswith("/>"):
            open_tags.append(name)
    for name in reversed(open_tags):
        problems.append(f"<{name}> is never closed: add </{name}>")
    return problems


def visible_length(text: str) -> int:
    """How long Telegram counts `text` once its tags are read: UTF-16 code units of what shows."""
    shown = html.unescape(_TAG.sub("", text))
    return len(shown.encode("utf-16-le")) // 2
