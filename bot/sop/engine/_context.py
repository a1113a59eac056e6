"""What the engine knows of a group, and the variables of texts and `template` conditions.

Besides the member, the group and the trigger, texts see the variables that steps before them
set (`checkin`, `leaderboard`, …): each step type names its own (`StepType.output`).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from bot.checkin.service import CheckinRules
from bot.registry import Registry
from bot.sop.conditions import GroupFacts
from bot.sop.facts import MemberFacts
from bot.sop.format import ModerationRule, ReferralRule
from bot.sop.library import Library, Procedure
from bot.sop.steps import STEPS, group_checkin_rules
from bot.sop.templates import group_context


class Context:
    """Groups as SOPs see them: facts, language, the SOPs running there; texts' variables."""

    def __init__(self, registry: Registry, library: Library, default_timezone: ZoneInfo) -> None:
        self.registry = registry
        self.library = library
        self.default_timezone = default_timezone
        self._outputs = STEPS.outputs

    def group_facts(self, chat_id: int, members: int = 0) -> GroupFacts:
        known = self.registry.groups.get(chat_id)
        zone = self.registry.zone(chat_id, self.default_timezone)
        return GroupFacts(
            chat_id,
            known.title if known else "",
            list(known.tags) if known else [],
            members,
            zone,
        )

    def title(self, chat_id: int) -> str:
        """The group as owners' notices name it."""
        known = self.registry.groups.get(chat_id)
        return known.title if known is not None and known.title else str(chat_id)

    def language(self, chat_id: int) -> str | None:
        """The group's language, if it has one set."""
        known = self.registry.groups.get(chat_id)
        return known.language if known is not None else None

    def runs_in(self, procedure: Procedure, chat_id: int) -> bool:
        known = self.registry.groups.get(chat_id)
        tags = known.tags if known is not None else []
        return self.library.runs_in(procedure, chat_id, tags)

    def checkin_rules(self, chat_id: int) -> CheckinRules:
        """The check-in rules of a group: those of the first SOP running there that checks
        members in (the defaults when none does)."""
        return group_checkin_rules(
            procedure for procedure in self.library if self.runs_in(procedure, chat_id)
        )

    def referral_rule(self, chat_id: int) -> ReferralRule:
        """When referrals count in a group: the `referral` section of the first SOP running
        there that has one (the defaults when none does)."""
        for procedure in self.library:
            if procedure.sop.referral is not None and self.runs_in(procedure, chat_id):
                return procedure.sop.referral
        return ReferralRule()

    def moderation_rule(self, chat_id: int) -> ModerationRule:
        """How moderation goes in a group: the `moderation` section of the first SOP running
        there that has one (the defaults when none does)."""
        for procedure in self.library:
            if procedure.sop.moderation is not None and self.runs_in(procedure, chat_id):
                return procedure.sop.moderation
        return ModerationRule()

    def build(
        self,
        procedure: Procedure,
        chat_id: int,
        group: GroupFacts,
        members: list[MemberFacts],
        variables: dict[str, Any],
        now: datetime,
        run_id: int | None = None,
    ) -> dict[str, Any]:
        """The variables of a text or condition of `procedure` for these members."""
        people = [member.context(now) for member in members]
        trigger: dict[str, Any] = {"type": None, "event": None, "data": {}, "message_id": None}
        context: dict[str, Any] = {
            "member": people[0] if people else None,
            "members": people,
            "group": group_context(id=chat_id, title=group.title, members=group.members),
            "sop": {"id": procedure.id, "name": procedure.sop.name},
            "vars": procedure.sop.variables,
            "trigger": {**trigger, **variables.get("trigger", {})},
            "run": {
                "id": run_id,
                "timed_out": bool(variables.get("timed_out", False)),
                "pressed": variables.get("pressed"),
            },
        }
        data = context["trigger"].get("data") or {}
        context["inviter"] = data.get("inviter")  # invite.* events: who invited, who came
        context["invitee"] = data.get("invitee")
        for name, shown in self._outputs:  # what steps before set: checkin, leaderboard, …
            context[name] = shown(variables.get(name))
        context["now"] = now.astimezone(group.timezone)
        return context
