"""Invite links and referrals: who brought whom, and whether it counts (see referrals.py)."""

from bot.invites.links import CampaignError, InviteLinks, Link
from bot.invites.referrals import Referrals, Swept
from bot.invites.requests import JoinRequests
from bot.invites.service import Invites

__all__ = ["CampaignError", "InviteLinks", "Invites", "JoinRequests", "Link", "Referrals", "Swept"]
