"""The sandboxed Jinja2 environment of SOP texts and conditions, and the variables they can use.

Texts are sent with parse_mode HTML, so autoescape is on: names, usernames and group titles from
Telegram are escaped, while HTML written in the text catalogue stays as written.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from datetime import datetime
from functools import lru_cache
from pathlib import Path
from types import MappingProxyType
from typing import Any
from zoneinfo import ZoneInfo

import yaml
from jinja2 import StrictUndefined, Template, meta
from jinja2.sandbox import SandboxedEnvironment
from markupsafe import Markup

from bot.texts import flatten_keys

LANGUAGES = ("en", "zh")

ENVIRONMENT = SandboxedEnvironment(undefined=StrictUndefined, autoescape=True)


@lru_cache(maxsize=1024)
def _template(source: str) -> Template:
    return ENVIRONMENT.from_string(source)


def render(source: str, context: Mapping[str, Any]) -> str:
    """Render a text with `context`, escaping values for HTML; surrounding blank space is cut."""
    return _template(source).render(context).strip()


@lru_cache(maxsize=1024)
def compile_expression(source: str) -> Callable[..., Any]:
    """Compile a `template` condition such as `member.messages_7d > 3`; call it with the context.

    An unknown variable raises jinja2.UndefinedError when called; bad syntax raises
    jinja2.TemplateSyntaxError here. Compiled once per expression (every check-in's `if`
    evaluates the same one).
    """
    return ENVIRONMENT.compile_expression(source, undefined_to_none=False)


@lru_cache(maxsize=1024)
def expression_names(source: str) -> frozenset[str]:
    """The variables a `template` condition reads (`member`, `checkin`, …); bad syntax raises
    jinja2.TemplateSyntaxError."""
    return frozenset(meta.find_undeclared_variables(ENVIRONMENT.parse(f"{{{{ {source} }}}}")))


def mention(user_id: int, name: str) -> Markup:
    """An HTML link to the member that Telegram shows as a mention; the name is escaped."""
    return Markup('<a href="tg://user?id={}">{}</a>').format(int(user_id), name)


def member_context(
    *,
    id: int,
    first_name: str,
    last_name: str | None = None,
    username: str | None = None,
    tags: Iterable[str] = (),
    points: int = 0,
    streak: int = 0,
    tier: str = "new",
    messages_7d: int = 0,
    tenure_days: int = 0,
) -> dict[str, Any]:
    """The `member` variable of SOP texts, built from what the bot knows about a member."""
    name = f"{first_name} {last_name}" if last_name else first_name
    return {
        "id": id,
        "name": name,
        "first_name": first_name,
        "username": username,
        "mention": mention(id, name),
        "tags": sorted(tags),
        "points": points,
        "streak": streak,
        "tier": tier,
        "messages_7d": messages_7d,
        "tenure_days": tenure_days,
    }


def group_context(*, id: int, title: str, members: int) -> dict[str, Any]:
    """The `group` variable of SOP texts."""
    return {"id": id, "title": title, "members": members}


_SAMPLE_MEMBER = member_context(
    id=100001,
    first_name="Lin",
    last_name="Xiao",
    username="linxiao",
    tags=["newcomer"],
    points=120,
    streak=3,
    tier="ordinary",
    messages_7d=5,
    tenure_days=30,
)

_SAMPLE_ENTRY = {
    "rank": 1,
    "user_id": 100001,
    "name": "Lin Xiao",
    "value": 7,
    "mention": mention(100001, "Lin Xiao"),
}
_OTHER_ENTRY = {
    "rank": 2,
    "user_id": 100002,
    "name": "Ada",
    "value": 6,
    "mention": mention(100002, "Ada"),
}

# Who invited whom, as invite events carry them (bot/invites/referrals.py).
_INVITER = {
    "id": 100001,
    "name": "Lin Xiao",
    "first_name": "Lin",
    "username": "linxiao",
    "mention": mention(100001, "Lin Xiao"),
    "reachable": True,
}
_INVITEE = {
    "id": 100003,
    "name": "Mei",
    "first_name": "Mei",
    "username": None,
    "mention": mention(100003, "Mei"),
    "reachable": False,
}
_INVITE = {"inviter": _INVITER, "invitee": _INVITEE, "campaign": None, "reason": None}

# What each event the bot emits carries as `trigger.data`, with example values; `tidepool
# simulate` emits these. Producers: `checkin` steps (bot/sop/steps/_checkin.py), the lotteries'
# draw and reroll (bot/lottery/service.py), the daily tiers (bot/stats/service.py), referrals
# (bot/invites/referrals.py).
EVENT_EXAMPLES: Mapping[str, Mapping[str, Any]] = MappingProxyType(
    {
        "checkin.done": {"streak": 3, "points": 10, "rank": 2},
        "checkin.milestone": {"streak": 7, "points": 60, "days": 7},
        "lottery.won": {"lottery": 1, "prize": "A signed book", "place": 1},
        "tier.changed": {"from": "ordinary", "to": "dormant"},
        "invite.joined": {"referral": 1, **_INVITE},
        "invite.qualified": {"referral": 1, **_INVITE},
        "invite.voided": {"referral": 1, **_INVITE, "reason": "left"},
        "invite.reversed": {"referral": 1, **_INVITE, "reason": "left"},
    }
)

SAMPLE_CONTEXT: Mapping[str, Any] = MappingProxyType(
    {
        "member": _SAMPLE_MEMBER,
        "members": [_SAMPLE_MEMBER, member_context(id=100002, first_name="Ada")],
        "group": group_context(id=-1001234567890, title="Tidepool Readers", members=250),
        "sop": {"id": "sample", "name": "Sample SOP"},
        "vars": {},
        "trigger": {
            "type": "event",
            "event": "checkin.milestone",
            "data": {"days": 7, "streak": 7, "points": 60, "rank": 3},
            "message_id": None,
        },
        "run": {"id": 1, "timed_out": False, "pressed": None},
        # invite.* events: who invited (None for a campaign's join) and who came; None else.
        "inviter": _INVITER,
        "invitee": _INVITEE,
        # Set by a `checkin` step for the steps after it (None before one).
        "checkin": {
            "new": True,
            "day": "2026-11-02",
            "streak": 7,
            "points": 60,
            "bonus": 50,
            "rank": 3,
            "balance": 480,
            "milestone": 7,
        },
        # Set by a `leaderboard` step; `shown` mentions a member the first time only.
        "leaderboard": {
            "period": "last_week",
            "first_day": "2026-10-26",
            "last_day": "2026-11-01",
            "checkins": [
                {**_SAMPLE_ENTRY, "shown": _SAMPLE_ENTRY["mention"]},
                {**_OTHER_ENTRY, "shown": _OTHER_ENTRY["mention"]},
            ],
            "points": [
                {**_OTHER_ENTRY, "value": 120, "shown": "Ada"},
                {**_SAMPLE_ENTRY, "rank": 2, "value": 90, "shown": "Lin Xiao"},
            ],
        },
        # Set by a `lottery` step: the lottery it opened (its post is sent by the bot).
        "lottery": {
            "id": 12,
            "prize": "Three course vouchers",
            "winners": 3,
            "draws_at": "11-04 20:00 (CST)",  # in the group's time zone
            "commitment": "9f2c…",
        },
        # Set by a `live` step: the live it planned (the bot posts its announcement).
        "live": {"id": 3, "title": "Weekly live Q&A"},
        # Set by a `review` step: the week's figures (bot/stats/review.py), the week before's
        # (`before`), how each changed (`change`), peak hours, the best and worst SOP step.
        "review": {
            "first_day": "2026-10-26",
            "last_day": "2026-11-01",
            "members": 250,
            "active": 86,
            "messages": 1240,
            "checkins": 410,
            "checkin_members": 95,
            "joins": 18,
            "leaves": 4,
            "active_pct": 34,
            "before": {
                "members": 236,
                "active": 74,
                "messages": 1010,
                "checkins": 388,
                "checkin_members": 90,
                "joins": 12,
                "leaves": 6,
            },
            "change": {
                "members": "+6%",
                "active": "+16%",
                "messages": "+23%",
                "checkins": "+6%",
                "checkin_members": "+6%",
                "joins": "+50%",
                "leaves": "-33%",
            },
            "peak_hours": [
                {"hour": 20, "label": "20:00-21:00", "messages": 210},
                {"hour": 12, "label": "12:00-13:00", "messages": 150},
                {"hour": 9, "label": "09:00-10:00", "messages": 96},
            ],
            "steps": 5,
            "best": {"sop": "welcome", "step": "greet", "sent": 18, "answered": 12, "rate": 67},
            "worst": {"sop": "welcome", "step": "nudge", "sent": 9, "answered": 1, "rate": 11},
        },
        "now": datetime(2026, 11, 2, 9, 30, tzinfo=ZoneInfo("Asia/Shanghai")),
    }
)
"""Example values of every variable SOP texts can use; `tidepool check` renders texts with it."""


def context_names() -> set[str]:
    """The names of the variables available to SOP texts and `template` conditions."""
    return set(SAMPLE_CONTEXT)


def load_catalogues(content_dir: Path) -> dict[str, dict[str, str]]:
    """Every language's texts as flat `{"welcome.greeting": source}`; OSError or YAMLError."""
    catalogues: dict[str, dict[str, str]] = {}
    for language in LANGUAGES:
        path = content_dir / "texts" / f"{language}.yaml"
        tree = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        catalogues[language] = flatten_keys(tree) if isinstance(tree, dict) else {}
    return catalogues
