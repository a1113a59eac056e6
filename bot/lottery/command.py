"""Reading `/lottery WINNERS DURATION PRIZE [option=value …]` into what a lottery needs."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from pydantic import ValidationError

from bot.sop.format import LotteryRules, parse_duration

MAX_WINNERS = 50  # the announcement mentions them all within Telegram's 4096 characters
MAX_PRIZE = 200
LONGEST = timedelta(days=60)
SHORTEST = timedelta(minutes=1)
DEFAULT_WINDOW = "7d"
_OPTION = re.compile(r"(?P<name>[a-z_]+)=(?P<value>\S+)")
_NUMBER = re.compile(r"[0-9]{1,12}")

# option in the command -> key of LotteryRules, and how its value is read
OPTIONS: dict[str, str] = {
    "tenure": "min_tenure",
    "messages": "min_messages",
    "checkins": "min_checkins",
    "points": "min_points",
    "tier": "tiers",
    "tag": "tags",
    "exclude_winners": "exclude_winners_within",
    "cost": "entry_cost",
    "max": "max_entries",
}


@dataclass(frozen=True, slots=True)
class LotteryOrder:
    """An admin's /lottery command, read."""

    winners: int
    duration: timedelta
    prize: str
    rules: LotteryRules


class BadCommand(ValueError):
    """The command cannot be read: `key` (under `lottery.`) and values say why."""

    def __init__(self, key: str, **values: Any) -> None:
        super().__init__(key)
        self.key, self.values = key, values


def read_lottery(args: str) -> LotteryOrder:
    """`3 2h Three course vouchers tenure=7d messages=3/7d` → LotteryOrder, or BadCommand."""
    words = args.split()
    if len(words) < 3:
        raise BadCommand("usage")
    winners_text, duration_text, *rest = words
    if not _NUMBER.fullmatch(winners_text) or not 1 <= int(winners_text) <= MAX_WINNERS:
        raise BadCommand("bad_winners", value=winners_text, most=MAX_WINNERS)
    try:
        duration = parse_duration(duration_text)
    except ValueError:
        raise BadCommand("bad_duration", value=duration_text) from None
    if not SHORTEST <= duration <= LONGEST:
        raise BadCommand("bad_duration", value=duration_text)
    prize_words, raw = [], {}
    for word in rest:
        match = _OPTION.fullmatch(word)
        if match is None:
            prize_words.append(word)
            continue
        name, value = match["name"], match["value"]
        if name not in OPTIONS:
            raise BadCommand("bad_option", option=name, options=", ".join(OPTIONS))
        raw[OPTIONS[name]] = _value(name, value)
    prize = " ".join(prize_words).strip()
    if not prize:
        raise BadCommand("no_prize")
    if len(prize) > MAX_PRIZE:
        raise BadCommand("long_prize", most=MAX_PRIZE)
    try:
        rules = LotteryRules.model_validate(raw)
    except ValidationError as invalid:
        error = invalid.errors()[0]
        key = str(error["loc"][0]) if error["loc"] else ""
        option = next((name for name, field in OPTIONS.items() if field == key), key)
        raise BadCommand("bad_value", option=option, problem=error["msg"]) from None
    return LotteryOrder(int(winners_text), duration, prize, rules)


def read_id(text: str) -> int | None:
    """A lottery's number as an admin writes it (`12` or `#12`), or None."""
    number = text.removeprefix("#")
    return int(number) if _NUMBER.fullmatch(number) else None


def _value(name: str, value: str) -> Any:
    if name in ("messages", "checkins"):
        count, _, window = value.partition("/")
        number = int(count) if _NUMBER.fullmatch(count) else count
        return {"count": number, "window": window or DEFAULT_WINDOW}
    if name in ("tier", "tag"):
        return [part for part in value.split(",") if part]
    if name in ("points", "cost", "max"):
        return int(value) if _NUMBER.fullmatch(value) else value
    return value
