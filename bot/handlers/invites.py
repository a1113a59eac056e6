"""Invitations in the chat: a member's own link, admins' campaigns, the numbers, join requests.

/invite                                   a member's personal link (privately when possible)
/invites                                  a member's referrals; for admins, the month's inviters,
                                          the campaigns and the fission coefficient
/campaign NAME [limit=N] [expires=7d] [approve]   an admin's campaign link (渠道码)
/campaign revoke NAME | /campaign list
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from aiogram import Router
from aiogram.exceptions import TelegramAPIError
from aiogram.filters import Command, CommandObject
from aiogram.types import ChatJoinRequest, Message
from loguru import logger

from bot.admins import Admins
from bot.deletions import Deletions
from bot.handlers.filters import AdminsOnly, InGroup
from bot.handlers.sops import Say
from bot.invites import numbers
from bot.invites.links import CampaignError
from bot.invites.service import Invites
from bot.outbox import Outbox
from bot.sop.format import format_duration, parse_duration

SHOWN_FOR = timedelta(minutes=2)  # a link or an answer shown in the group, then deleted
MOST_EXPIRY = timedelta(days=365)
SHOWN_REFERRALS = 20  # a member's latest referrals listed by /invites
SHOWN_INVITERS = 10

Line = tuple[str, dict[str, Any]]  # a text key and its values


def register(router: Router) -> None:
    router.message.register(
        personal_link, Command("invite"), InGroup(otherwise="invite.private_hint")
    )
    router.message.register(campaign, Command("campaign"), InGroup(), AdminsOnly())
    router.message.register(invite_numbers, Command("invites"), InGroup())
    router.chat_join_request.register(join_request)


async def _shown_briefly(
    message: Message, text: str, delivery: Outbox, deletions: Deletions, invites: Invites
) -> None:
    """Reply in the group and delete the reply after SHOWN_FOR."""
    sent = await delivery.send_message(
        message.chat.id, text, source="command", reply_to_message_id=message.message_id
    )
    if sent.ok and sent.message_id is not None:
        due = invites.clock.now() + SHOWN_FOR
        await deletions.schedule(sent.chat_id, sent.message_id, due, "invite")


async def personal_link(
    message: Message, invites: Invites, say: Say, delivery: Outbox, deletions: Deletions
) -> None:
    user, chat = message.from_user, message.chat
    if user is None or user.is_bot:
        return
    try:
        link = await invites.links.personal(chat.id, user)
    except TelegramAPIError as exc:
        logger.bind(chat_id=chat.id).warning("no invite link for {}: {}", user.id, exc)
        await say(message, ("invite.cannot_make", {}))
        return
    title = chat.title or str(chat.id)
    name = user.full_name
    if await invites.reachable(user.id):
        text = say.text(chat.id, "invite.your_link", group=title, link=link.link)
        sent = await delivery.send_message(user.id, text, source="command")
        if sent.ok:
            reply = say.text(chat.id, "invite.sent_privately", name=name)
            await _shown_briefly(message, reply, delivery, deletions, invites)
            return
    text = say.text(chat.id, "invite.in_group", name=name, link=link.link)
    await _shown_briefly(message, text, delivery, deletions, invites)


def parse_campaign(args: list[str]) -> tuple[str, int | None, timedelta | None, bool]:
    """`NAME [limit=N] [expires=7d] [approve]` → (name, limit, lasts, approval);
    CampaignError for a bad option."""
    name, limit, lasts, approval = args[0], None, None, False
    for option in args[1:]:
        key, _, value = option.partition("=")
        key = key.lower()
        if key == "limit" and value.isdigit():
            limit = int(value)
        elif key == "limit":
            raise CampaignError("invite.campaign_bad_limit", most=99_999)
        elif key == "expires":
            try:
                lasts = parse_duration(value)
            except ValueError:
                raise CampaignError("invite.campaign_bad_expiry") from None
            if lasts > MOST_EXPIRY:
                raise CampaignError("invite.campaign_bad_expiry")
        elif key == "approve" and not value:
            approval = True
        else:
            raise CampaignError("invite.campaign_usage")
    return name, limit, lasts, approval


async def campaign(message: Message, command: CommandObject, invites: Invites, say: Say) -> None:
    chat_id = message.chat.id
    args = (command.args or "").split()
    if not args:
        await say(message, ("invite.campaign_usage", {}))
        return
    try:
        if args[0].lower() == "list" and len(args) == 1:
            await say(message, *await _campaign_lines(invites, chat_id, say))
            return
        if args[0].lower() == "revoke" and len(args) == 2:
            revoked = await invites.links.revoke_campaign(chat_id, args[1])
            await say(message, ("invite.campaign_revoked", {"name": revoked.name}))
            return
        name, limit, lasts, approval = parse_campaign(args)
        by = message.from_user.id if message.from_user is not None else chat_id
        made = await invites.links.campaign(
            chat_id, name, by, limit=limit, lasts=lasts, approval=approval
        )
    except CampaignError as refused:
        await say(message, (refused.key, refused.values))
        return
    except TelegramAPIError as exc:
        logger.bind(chat_id=chat_id).warning("campaign link refused: {}", exc)
        await say(message, ("invite.cannot_make", {}))
        return
    expires = ""
    if made.expires_at is not None:
        zone = invites.zones(chat_id)
        expires = made.expires_at.astimezone(zone).strftime("%Y-%m-%d %H:%M %Z")
    details = {
        "name": made.name,
        "link": made.link,
        "limit": made.member_limit,
        "expires": expires,
        "approval": made.approval,
    }
    await say(message, ("invite.campaign_made", details))


def _share(value: float | None) -> str:
    return "–" if value is None else f"{value:.0%}"


async def _campaign_lines(invites: Invites, chat_id: int, say: Say) -> list[Line]:
    lines = await numbers.campaigns(invites.engine, chat_id, invites.clock.now())
    if not lines:
        return [("invite.campaign_none", {})]
    return [
        (
            "invite.campaign_line",
            {
                "name": line.name,
                "revoked": line.revoked,
                "joins": line.joins,
                "qualified": line.tally.qualified,
                "pending": line.tally.pending,
                "day1": _share(line.day1),
                "day7": _share(line.day7),
                "link": line.link,
            },
        )
        for line in lines
    ]


async def invite_numbers(
    message: Message,
    invites: Invites,
    say: Say,
    admins: Admins,
    delivery: Outbox,
    deletions: Deletions,
) -> None:
    """A member's own referrals (shown briefly); for admins, the group's numbers."""
    user, chat_id = message.from_user, message.chat.id
    if user is None:
        return
    if await admins.may_command(message):
        await say(message, *await admin_numbers(invites, chat_id, say))
        return
    lines = await member_numbers(invites, chat_id, user.id, say)
    text = "\n".join(say.text(chat_id, key, **values) for key, values in lines)
    await _shown_briefly(message, text, delivery, deletions, invites)


async def member_numbers(invites: Invites, chat_id: int, user_id: int, say: Say) -> list[Line]:
    link = await invites.links.of_member(chat_id, user_id)
    lines: list[Line] = []
    if link is None:
        lines.append(("invite.mine_no_link", {}))
    else:
        lines.append(("invite.mine_header", {"link": link.link}))
    referrals = await numbers.of_member(invites.engine, chat_id, user_id)
    if not referrals:
        if link is not None:
            lines.append(("invite.mine_none", {}))
        return lines
    tally = numbers.Tally()
    for referral in referrals:
        tally.add(referral.state)
    lines.append(
        (
            "invite.mine_summary",
            {
                "total": tally.total,
                "qualified": tally.qualified,
                "pending": tally.pending,
                "void": tally.void,
                "reversed": tally.reversed,
            },
        )
    )
    rule = invites.rules(chat_id)
    for referral in referrals[:SHOWN_REFERRALS]:
        why = referral.reason or ""
        if referral.state == "pending" and not why:
            why = "waiting"
        shown_why = (
            say.text(
                chat_id,
                f"invite.why.{why}",
                stay=format_duration(rule.stay),
                messages=rule.messages,
                checkins=rule.checkins,
            )
            if why
            else ""
        )
        state = say.text(chat_id, f"invite.state.{referral.state}")
        lines.append(
            ("invite.mine_line", {"name": referral.name, "state": state, "why": shown_why})
        )
    return lines


async def admin_numbers(invites: Invites, chat_id: int, say: Say) -> list[Line]:
    now = invites.clock.now()
    zone = invites.zones(chat_id)
    local = now.astimezone(zone)
    month_start = local.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    lines: list[Line] = [("invite.admin_header", {})]
    ranked = await numbers.inviters(invites.engine, chat_id, month_start)
    if not ranked:
        lines.append(("invite.admin_inviters_none", {}))
    for rank, line in enumerate(ranked[:SHOWN_INVITERS], start=1):
        lines.append(
            (
                "invite.admin_inviter_line",
                {
                    "rank": rank,
                    "name": line.name,
                    "qualified": line.tally.qualified,
                    "total": line.tally.total,
                    "pending": line.tally.pending,
                },
            )
        )
    lines.append(("invite.admin_campaigns", {}))
    lines.extend(await _campaign_lines(invites, chat_id, say))
    first_day = (local - timedelta(days=29)).date()
    fission = await numbers.fission(invites.engine, chat_id, now, first_day)
    lines.append(("invite.fission", fission.shown()))
    return lines


async def join_request(request: ChatJoinRequest, invites: Invites) -> None:
    await invites.requests.decide(request)
