"""What lotteries say: the post, its rules, refusals and the announcement, in the group's
language and on its clock."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from aiogram.types import InlineKeyboardButton, InlineKeyboardMarkup
from markupsafe import Markup

from bot.db import LotteryStatus
from bot.lottery.rules import Refusal
from bot.lottery.store import Lottery
from bot.registry import Registry
from bot.sop.format import LotteryRules, Wording, format_duration
from bot.sop.templates import mention
from bot.texts import Texts, popup

NAME = 32  # characters of a winner's name in the announcement
BUTTON = "lottery:enter:"


def in_language(wording: Wording, language: str) -> str:
    """An SOP text given once or per language, in `language` (else the first one given)."""
    if isinstance(wording, str):
        return wording
    return wording.get(language) or next(iter(wording.values()))  # type: ignore[call-overload]


def _short(name: str) -> str:
    """A name short enough that 50 winners' mentions fit in one message."""
    return name if len(name) <= NAME else name[: NAME - 1] + "…"


class LotteryWording:
    """The texts of lotteries in each group's language, with times on the group's clock."""

    def __init__(self, texts: Texts, registry: Registry, default_timezone: ZoneInfo) -> None:
        self.texts = texts
        self.registry = registry
        self.default_timezone = default_timezone

    def language(self, chat_id: int) -> str:
        known = self.registry.groups.get(chat_id)
        return (known.language if known else None) or self.texts.default_language

    def zone(self, chat_id: int) -> ZoneInfo:
        return self.registry.zone(chat_id, self.default_timezone)

    def say(self, chat_id: int, key: str, **values: Any) -> str:
        return self.texts(key, self.language(chat_id), **values)

    def when(self, chat_id: int, moment: datetime) -> str:
        local = moment.astimezone(self.zone(chat_id))
        return f"{local:%m-%d %H:%M} ({local.tzname()})"

    def post_text(self, lottery: Lottery) -> str:
        chat_id = lottery.chat_id
        values = {
            "id": lottery.id,
            "prize": lottery.prize,
            "winners": lottery.winners,
            "draws_at": self.when(chat_id, lottery.draws_at),
            "rules": self.rules_text(chat_id, lottery.rules),
            "count": lottery.entry_count,
            "commitment": lottery.commitment,
        }
        if lottery.status == LotteryStatus.OPEN:
            return self.say(chat_id, "lottery.post", **values)
        return self.say(chat_id, f"lottery.post_{lottery.status.value}", **values)

    def rules_text(self, chat_id: int, rules: LotteryRules) -> Markup:
        """The rules as lines for the post (empty: everyone in the group may enter)."""
        lines = []
        say = self.say
        if rules.min_tenure is not None:
            needed = format_duration(rules.min_tenure)
            lines.append(say(chat_id, "lottery.rule.tenure", needed=needed))
        for kind, wanted in (("messages", rules.min_messages), ("checkins", rules.min_checkins)):
            if wanted is not None:
                lines.append(
                    say(
                        chat_id,
                        f"lottery.rule.{kind}",
                        needed=wanted.count,
                        window=format_duration(wanted.window),
                    )
                )
        if rules.min_points:
            lines.append(say(chat_id, "lottery.rule.points", needed=rules.min_points))
        if rules.tiers:
            tiers = ", ".join(say(chat_id, f"boards.tiers.{tier}") for tier in rules.tiers)
            lines.append(say(chat_id, "lottery.rule.tiers", tiers=tiers))
        if rules.tags:
            lines.append(say(chat_id, "lottery.rule.tags", tags=", ".join(rules.tags)))
        if rules.exclude_winners_within is not None:
            window = format_duration(rules.exclude_winners_within)
            lines.append(say(chat_id, "lottery.rule.recent_winners", window=window))
        if rules.entry_cost:
            lines.append(say(chat_id, "lottery.rule.cost", cost=rules.entry_cost))
        if rules.max_entries:
            lines.append(say(chat_id, "lottery.rule.cap", cap=rules.max_entries))
        return Markup("\n").join(Markup(line) for line in lines)  # each line is rendered HTML

    def enter_button(self, lottery: Lottery) -> InlineKeyboardMarkup:
        label = self.say(lottery.chat_id, "lottery.enter_button")
        button = InlineKeyboardButton(text=label, callback_data=f"{BUTTON}{lottery.id}")
        return InlineKeyboardMarkup(inline_keyboard=[[button]])

    def refusal_text(self, chat_id: int, refusal: Refusal) -> str:
        """Why a member may not enter, for a popup (plain text: no HTML entities)."""
        values = dict(refusal.values)
        if refusal.reason == "tier":
            values["tier"] = self.say(chat_id, f"boards.tiers.{values['tier']}")
            names = [self.say(chat_id, f"boards.tiers.{t}") for t in values["tiers"].split(", ")]
            values["tiers"] = ("、" if self.language(chat_id) == "zh" else ", ").join(names)
        return popup(self.say(chat_id, f"lottery.refused.{refusal.reason}", **values))

    def announcement_text(self, lottery: Lottery, winners: list[int], names: dict[int, str]) -> str:
        chat_id = lottery.chat_id
        mentions = Markup("、" if self.language(chat_id) == "zh" else ", ").join(
            mention(user_id, _short(names.get(user_id, str(user_id)))) for user_id in winners
        )
        claim = lottery.claim or Markup(self.say(chat_id, "lottery.claim_default"))
        return self.say(
            chat_id,
            "lottery.announce" if winners else "lottery.announce_none",
            id=lottery.id,
            prize=lottery.prize,
            winners=mentions,
            winner_count=len(winners),
            claim=claim,
            entrants=lottery.entrants or 0,
            seed=lottery.seed,
            digest=lottery.entrants_digest or "",
            commitment=lottery.commitment,
        )
