"""Transcripts: what happened in a sandbox (who did what, when, what the bot answered) as YAML.

A transcript is a list of steps. A step is one thing a person did (`say`, `press`, `join`,
`leave`, `admin`, `start`) or time moving (`clock`), at a time since the sandbox began (`at`),
with what the bot did from then until the next step (`bot`): the messages it sent, edited,
deleted or pinned, and the answers to button presses. Step 0 is the sandbox starting: the bot
added to the demo group by its owner. `tidepool replay` does each step again in a fresh
sandbox and compares what the bot does now (see `bot.sandbox._replay`).
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any

import yaml

from bot.emulator._state import CallRec
from bot.sandbox._journal import Entry
from bot.sandbox._render import plain_text

FORMAT = 1
ACTIONS = ("say", "press", "join", "leave", "admin", "start", "clock")
SHOWN_METHODS = {
    "sendMessage",
    "sendPhoto",
    "editMessageText",
    "editMessageCaption",
    "editMessageReplyMarkup",
    "deleteMessage",
    "deleteMessages",
    "pinChatMessage",
    "unpinChatMessage",
    "answerCallbackQuery",
}
HEADER = (
    "# A Tidepool sandbox transcript: who did what, when, and what the bot answered.\n"
    "# Check that the bot still answers the same: tidepool replay FILE\n"
)


class TranscriptError(ValueError):
    """A transcript file that cannot be read; the message names the step and the problem."""


def bot_did(calls: list[CallRec], chat_name: Any) -> list[dict[str, Any]]:
    """What the bot visibly did in these calls, as transcript lines (only calls that worked)."""
    lines: list[dict[str, Any]] = []
    for call in calls:
        if not call.ok or call.method not in SHOWN_METHODS:
            continue
        params = call.params
        if call.method == "answerCallbackQuery":
            if params.get("text"):
                lines.append({"answer": str(params["text"])})
            continue
        line: dict[str, Any] = {"chat": chat_name(_int(params.get("chat_id")))}
        mode = params.get("parse_mode")
        if call.method in ("sendMessage", "sendPhoto"):
            text = params.get("text") if call.method == "sendMessage" else params.get("caption")
            line["send"] = plain_text(text, mode)
            if call.method == "sendPhoto":
                line["photo"] = True
            buttons = _buttons(params.get("reply_markup"))
            if buttons:
                line["buttons"] = buttons
        elif call.method in ("editMessageText", "editMessageCaption"):
            key = "text" if call.method == "editMessageText" else "caption"
            line["edit"] = plain_text(params.get(key), mode)
        elif call.method == "editMessageReplyMarkup":
            line["edit_buttons"] = _buttons(params.get("reply_markup"))
        elif call.method in ("deleteMessage", "deleteMessages"):
            line["delete"] = True
        elif call.method == "pinChatMessage":
            line["pin"] = True
        else:
            line["unpin"] = True
        lines.append(line)
    return lines


def build(entries: list[Entry], calls: list[CallRec], chat_name: Any, meta: dict[str, Any]) -> str:
    """The YAML transcript of a journal, with the bot's calls between its entries."""
    if not entries or entries[0].get("do") != "begin":
        raise TranscriptError("the journal does not start with the sandbox's beginning")
    start = datetime.fromisoformat(entries[0]["at"])
    steps: list[dict[str, Any]] = []
    for index, entry in enumerate(entries):
        until = entries[index + 1]["calls"] if index + 1 < len(entries) else len(calls)
        step: dict[str, Any] = {"at": format_duration(datetime.fromisoformat(entry["at"]) - start)}
        if entry["do"] == "begin":
            step["begin"] = True
        elif entry["do"] == "clock":
            step["clock"] = True
        else:
            step["who"] = entry["who"]
            step[entry["do"]] = _action_value(entry)
            if entry["do"] == "join" and entry.get("new"):
                step["new"] = True
            if entry["do"] in ("say", "press"):
                step["chat"] = entry["chat"]
        step["bot"] = bot_did(calls[entry["calls"] : until], chat_name)
        steps.append(step)
    document = {
        "transcript": FORMAT,
        "language": meta["language"],
        "start": entries[0]["at"],
        "steps": steps,
    }
    return HEADER + dump(document)


class _Dumper(yaml.SafeDumper):
    """Texts of several lines as literal blocks, as they read in a chat."""


def _text(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = (
        "|"
        if "\n" in value and not any(line != line.rstrip() for line in value.split("\n"))
        else None
    )
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _text)


def dump(document: dict[str, Any]) -> str:
    return yaml.dump(document, Dumper=_Dumper, allow_unicode=True, sort_keys=False, width=100)


def parse(text: str) -> dict[str, Any]:
    """A transcript read and checked; TranscriptError names what is wrong."""
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise TranscriptError(f"not YAML: {exc}") from None
    if not isinstance(document, dict) or document.get("transcript") != FORMAT:
        raise TranscriptError(f"not a transcript: the file must start with 'transcript: {FORMAT}'")
    steps = document.get("steps")
    if not isinstance(steps, list) or not steps or not steps[0].get("begin"):
        raise TranscriptError("'steps' must be a list starting with the 'begin' step")
    try:
        datetime.fromisoformat(str(document.get("start")))
    except ValueError:
        raise TranscriptError(
            "'start' must be a date-time such as 2026-12-07T10:00:00+08:00"
        ) from None
    for number, step in enumerate(steps):
        if not isinstance(step, dict):
            raise TranscriptError(f"steps[{number}]: must be a mapping")
        actions = [key for key in (*ACTIONS, "begin") if key in step]
        if len(actions) != 1:
            raise TranscriptError(
                f"steps[{number}]: needs exactly one of {', '.join(ACTIONS)} (found {actions})"
            )
        try:
            parse_duration(str(step.get("at", "0s")))
        except ValueError as exc:
            raise TranscriptError(f"steps[{number}].at: {exc}") from None
        if actions[0] not in ("begin", "clock") and not isinstance(step.get("who"), str):
            raise TranscriptError(f"steps[{number}]: 'who' must name the person acting")
        if not isinstance(step.get("bot", []), list):
            raise TranscriptError(f"steps[{number}].bot: must be a list")
    return document


def format_duration(delta: timedelta) -> str:
    """`1d2h3m4s` (whole seconds; `0s` for none)."""
    seconds = max(0, int(delta.total_seconds()))
    parts: list[str] = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if seconds >= size or (unit == "s" and not parts):
            parts.append(f"{seconds // size}{unit}")
            seconds %= size
    return "".join(parts)


def parse_duration(text: str) -> timedelta:
    """The inverse of `format_duration`."""
    total = 0
    number = ""
    for char in text.strip():
        if char.isdigit():
            number += char
        elif char in "dhms" and number:
            total += int(number) * {"d": 86400, "h": 3600, "m": 60, "s": 1}[char]
            number = ""
        else:
            raise ValueError(f"{text!r} is not a duration like 1d2h3m4s")
    if number:
        raise ValueError(f"{text!r} is not a duration like 1d2h3m4s (a unit is missing)")
    return timedelta(seconds=total)


def _action_value(entry: Entry) -> Any:
    if entry["do"] == "say":
        return entry["text"]
    if entry["do"] == "press":
        return entry["button"]
    return entry["chat"] if entry["do"] in ("join", "leave", "admin") else True


def _buttons(markup: Any) -> list[list[str]]:
    if isinstance(markup, str):
        try:
            markup = json.loads(markup)
        except ValueError:
            return []
    rows = (markup or {}).get("inline_keyboard") or [] if isinstance(markup, dict) else []
    return [[str(button.get("text", "")) for button in row] for row in rows]


def _int(value: Any) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return 0
