"""The `referral` section: when a member's invitation has earned them something (老带新).

An SOP that rewards referrals (the shipped `sops/referral.yaml`) says here what a referral must
show before it counts. The first SOP running in a group with this section sets the group's rule;
a group without one uses the defaults.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Literal

from pydantic import Field, model_validator

from ._common import Duration, LongDuration, Strict


class JoinRequests(Strict):
    """What the bot does with a request to join (a link that needs approval).

    `approve`: `links`, requests through the bot's own links (a member's or a campaign's);
    `all`, every request; `none`, none (they are declined). Someone removed from the group
    before, or a bot account, is always declined. Requests through other links, or without a
    link, are left to the admins unless `approve` is `all`."""

    approve: Literal["links", "all", "none"] = "links"


class ReferralRule(Strict):
    """When a referral qualifies, and what undoes it.

    A member brought through someone's `/invite` link qualifies once still in the group `stay`
    after joining with at least `messages` messages (commands aside) or `checkins` check-ins
    since; a referral that has not by `within` is void, as is one whose member left before.
    Leaving within `clawback` of qualifying reverses it. An inviter gets at most `daily_cap`
    qualified referrals a day (the group's day); the rest wait for the next. A member who left
    within `min_stay` of joining never counts. A link with `quiet_joins` joins or more, of whom
    more than `quiet_share` never wrote once `stay` had passed, is reported to the admins once.
    """

    stay: Duration = timedelta(days=3)
    messages: int = Field(default=3, ge=0, le=10_000)
    checkins: int = Field(default=2, ge=0, le=10_000)
    within: LongDuration = timedelta(days=14)
    clawback: LongDuration = timedelta(days=7)
    daily_cap: int = Field(default=10, ge=1, le=100_000)
    min_stay: Duration = timedelta(minutes=10)
    quiet_joins: int = Field(default=5, ge=1, le=100_000)
    quiet_share: float = Field(default=0.5, ge=0, le=1)
    join_requests: JoinRequests = JoinRequests()

    @model_validator(mode="after")
    def _in_order(self) -> ReferralRule:
        if self.within < self.stay:
            raise ValueError("`within` must be at least `stay`: a referral could never qualify")
        return self
