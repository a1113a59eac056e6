"""Invite links and referrals: attribution of joins, every change of a referral's state and the
rules that move it (stay, activity, the 14 days, the claw-back, the daily cap, the 10 minutes),
the quiet-link report, campaigns and the numbers. The bot is assembled by `bot.factory`, Telegram
is the in-process emulator and the clock is manual."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from aiogram.exceptions import TelegramBadRequest
from aiogram.types import User
from sqlalchemy import insert, select
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.activity import event_row
from bot.db import CHECKINS, INVITE_LINKS, REFERRALS, EventType, LinkKind
from bot.events import Happened
from bot.invites import CampaignError, numbers
from tests.console_harness import ConsoleHarness, console_harness

pytestmark = pytest.mark.asyncio


@pytest.fixture
async def h(engine: AsyncEngine, tmp_path: Path) -> AsyncIterator[ConsoleHarness]:
    async with console_harness(engine, tmp_path) as harness:
        yield harness


class Heard:
    """The invite.* events the referrals told SOPs."""

    def __init__(self, h: ConsoleHarness) -> None:
        self.events: list[Happened] = []
        h.app.bus.subscribe(Happened, self._heard)
        # Referrals tell only events an SOP listens to (the shipped SOPs: two of the four).
        h.app.invites.referrals.listens = lambda *_: True
        self.bus = h.app.bus

    def _heard(self, event: Happened) -> None:
        if event.name.startswith("invite."):
            self.events.append(event)

    async def names(self) -> list[str]:
        await self.bus.settle()
        return [event.name for event in self.events]


async def setup(h: ConsoleHarness, joiners: int = 1) -> tuple[int, User, list[User]]:
    inviter = await h.person("Ada", 501)
    chat_id = await h.group("Readers", members=[inviter])
    people = [await h.person(f"Friend{n}", 600 + n) for n in range(joiners)]
    return chat_id, inviter, people


async def join(
    h: ConsoleHarness, chat_id: int, person: User, link: str | None, name: str | None = None
) -> None:
    await h.ctl.join(chat_id, person.id, invite_link=link)
    await h.app.registry.member_joined(
        chat_id, person, h.clock.now(), invite_link=link, invite_name=name, source="test"
    )


async def leave(h: ConsoleHarness, chat_id: int, person: User) -> None:
    await h.ctl.leave(chat_id, person.id)
    await h.app.registry.member_left(chat_id, person, h.clock.now(), source="test")


def write(h: ConsoleHarness, chat_id: int, person: User, count: int, **kind: Any) -> None:
    for _ in range(count):
        h.app.activity.add(
            event_row(
                chat_id=chat_id,
                user_id=person.id,
                at=h.clock.now(),
                type=kind.get("type", EventType.MESSAGE),
            )
        )
        h.app.activity.touch(chat_id, person, h.clock.now(), 1)


async def referral(h: ConsoleHarness, chat_id: int, person: User) -> Any:
    async with h.app.db.connect() as conn:
        return (
            await conn.execute(
                select(REFERRALS).where(
                    REFERRALS.c.chat_id == chat_id, REFERRALS.c.invitee_id == person.id
                )
            )
        ).first()


async def sweep(h: ConsoleHarness) -> Any:
    return await h.app.invites.referrals.sweep(h.clock.now())


async def test_a_first_join_through_a_members_link_is_a_pending_referral(h: ConsoleHarness) -> None:
    heard = Heard(h)
    chat_id, inviter, (friend,) = await setup(h)
    link = await h.app.invites.links.personal(chat_id, inviter)
    assert link.name == "Ada" and link.kind is LinkKind.MEMBER
    again = await h.app.invites.links.personal(chat_id, inviter)
    assert again.link == link.link  # the same link each time
    made = [c for c in await h.ctl.calls() if c["method"] == "createChatInviteLink"]
    assert len(made) == 1 and made[0]["params"]["name"] == "Tidepool · Ada"
    await join(h, chat_id, friend, link.link)
    row = await referral(h, chat_id, friend)
    assert row.state == "pending" and row.inviter_id == inviter.id and row.link_id == link.id
    assert await heard.names() == ["invite.joined"]
    joined = heard.events[0]
    assert joined.user_id == friend.id
    assert joined.data["inviter"]["id"] == inviter.id and joined.data["invitee"]["id"] == friend.id


async def test_rejoins_own_links_and_others_links_are_never_credited(h: ConsoleHarness) -> None:
    heard = Heard(h)
    chat_id, inviter, (friend, other) = await setup(h, 2)
    link = await h.app.invites.links.personal(chat_id, inviter)
    await join(h, chat_id, friend, None)  # first came without a link
    await leave(h, chat_id, friend)
    await join(h, chat_id, friend, link.link)  # a rejoin through the link
    assert await referral(h, chat_id, friend) is None
    foreign = await h.ctl.create_invite_link(chat_id, name="admin's")
    await join(h, chat_id, other, foreign["invite_link"], "admin's")
    assert await referral(h, chat_id, other) is None
    async with h.app.db.connect() as conn:
        links = {row.kind: row for row in await conn.execute(select(INVITE_LINKS))}
    assert links["other"].joins == 1 and links["other"].name == "admin's"
    assert links["member"].joins == 1  # the rejoin is a join through it, not a referral
    await leave(h, chat_id, inviter)
    await join(h, chat_id, inviter, link.link)  # one's own link
    assert await referral(h, chat_id, inviter) is None
    assert await heard.names() == []


async def test_a_join_told_twice_is_credited_once(h: ConsoleHarness) -> None:
    chat_id, inviter, (friend,) = await setup(h)
    link = await h.app.invites.links.personal(chat_id, inviter)
    await join(h, chat_id, friend, link.link)
    await h.app.registry.member_joined(
        chat_id, friend, h.clock.now(), invite_link=link.link, source="test"
    )
    async with h.app.db.connect() as conn:
        rows = list(await conn.execute(select(REFERRALS)))
    assert len(rows) == 1


async def test_qualifies_after_the_stay_with_messages_once(h: ConsoleHarness) -> None:
    heard = Heard(h)
    chat_id, inviter, (friend,) = await setup(h)
    link = await h.app.invites.links.personal(chat_id, inviter)
    await join(h, chat_id, friend, link.link)
    h.later(hours=1)
    write(h, chat_id, friend, 2)
    write(h, chat_id, friend, 5, type=EventType.COMMAND)  # commands are not taking part
    h.later(days=3)
    swept = await sweep(h)
    assert swept.qualified == 0 and (await referral(h, chat_id, friend)).state == "pending"
    write(h, chat_id, friend, 1)
    swept = await sweep(h)
    assert swept.qualified == 1
    row = await referral(h, chat_id, friend)
    assert row.state == "qualified" and row.qualified_at == h.clock.now()
    assert (await sweep(h)).qualified == 0
    assert await heard.names() == ["invite.joined", "invite.qualified"]
    qualified = heard.events[1]
    assert qualified.user_id == inviter.id and qualified.data["invitee"]["name"] == "Friend0"


async def test_not_before_the_stay_and_check_ins_count_too(h: ConsoleHarness) -> None:
    chat_id, inviter, (friend,) = await setup(h)
    link = await h.app.invites.links.personal(chat_id, inviter)
    await join(h, chat_id, friend, link.link)
    write(h, chat_id, friend, 10)
    h.later(days=2, hours=23)
    assert (await sweep(h)).qualified == 0  # plenty of messages, not three days yet
    h.later(hours=1)
    assert (await sweep(h)).qualified == 1
    friend2 = await h.person("Bo", 700)
    await join(h, chat_id, friend2, link.link)
    h.later(days=3)
    async with h.app.db.begin() as conn:
        for day in range(2):
            at = h.clock.now() - timedelta(days=day)
            await conn.execute(
                insert(CHECKINS).values(
                    chat_id=chat_id, user_id=friend2.id, day=at.date(), at=at, streak=1
                )
            )
    assert (await sweep(h)).qualified == 1
    assert (await referral(h, chat_id, friend2)).state == "qualified"


async def test_leaving_voids_and_leaving_soon_never_counts(h: ConsoleHarness) -> None:
    heard = Heard(h)
    chat_id, inviter, (early, late) = await setup(h, 2)
    link = await h.app.invites.links.personal(chat_id, inviter)
    await join(h, chat_id, early, link.link)
    await join(h, chat_id, late, link.link)
    h.later(minutes=9)
    await leave(h, chat_id, early)
    row = await referral(h, chat_id, early)
    assert (row.state, row.reason) == ("void", "left_quickly")
    h.later(days=2)
    write(h, chat_id, late, 5)
    await leave(h, chat_id, late)
    row = await referral(h, chat_id, late)
    assert (row.state, row.reason) == ("void", "left")
    await join(h, chat_id, late, link.link)  # and coming back does not count again
    h.later(days=3)
    write(h, chat_id, late, 5)
    await sweep(h)
    assert (await referral(h, chat_id, late)).state == "void"
    names = await heard.names()
    assert names.count("invite.voided") == 2 and "invite.qualified" not in names


async def test_leaving_within_the_clawback_reverses_after_it_does_not(h: ConsoleHarness) -> None:
    heard = Heard(h)
    chat_id, inviter, (soon, later) = await setup(h, 2)
    link = await h.app.invites.links.personal(chat_id, inviter)
    for person in (soon, later):
        await join(h, chat_id, person, link.link)
        write(h, chat_id, person, 3)
    h.later(days=3)
    assert (await sweep(h)).qualified == 2
    h.later(days=6)
    await leave(h, chat_id, soon)
    row = await referral(h, chat_id, soon)
    assert (row.state, row.reason) == ("reversed", "left")
    h.later(days=2)
    await leave(h, chat_id, later)
    row = await referral(h, chat_id, later)
    assert row.state == "qualified" and row.left_at == h.clock.now()
    names = await heard.names()
    assert names.count("invite.reversed") == 1
    reversed_event = next(e for e in heard.events if e.name == "invite.reversed")
    assert reversed_event.user_id == inviter.id and reversed_event.data["reason"] == "left"


async def test_never_taking_part_within_14_days_voids(h: ConsoleHarness) -> None:
    heard = Heard(h)
    chat_id, inviter, (friend,) = await setup(h)
    link = await h.app.invites.links.personal(chat_id, inviter)
    await join(h, chat_id, friend, link.link)
    h.later(days=13, hours=23)
    assert (await sweep(h)).voided == 0
    h.later(hours=1)
    assert (await sweep(h)).voided == 1
    row = await referral(h, chat_id, friend)
    assert (row.state, row.reason) == ("void", "not_qualified")
    assert (await heard.names())[-1] == "invite.voided"


async def test_the_daily_cap_holds_the_rest_for_the_next_day(h: ConsoleHarness) -> None:
    chat_id, inviter, friends = await setup(h, 12)
    link = await h.app.invites.links.personal(chat_id, inviter)
    for friend in friends:
        await join(h, chat_id, friend, link.link)
        write(h, chat_id, friend, 3)
    h.later(days=3)
    swept = await sweep(h)
    assert (swept.qualified, swept.capped) == (10, 2)
    held = [await referral(h, chat_id, friend) for friend in friends[10:]]
    assert [(row.state, row.reason) for row in held] == [("pending", "daily_cap")] * 2
    h.later(hours=2)
    assert (await sweep(h)).qualified == 0  # still the same day in Shanghai
    h.later(days=1)
    assert (await sweep(h)).qualified == 2


async def test_a_link_whose_joiners_never_speak_is_reported_once(h: ConsoleHarness) -> None:
    told: list[tuple[int, str, dict[str, Any]]] = []
    referrals = h.app.invites.referrals

    async def tell(chat_id: int, key: str, values: dict[str, Any]) -> None:
        told.append((chat_id, key, values))

    referrals.tell_admins = tell
    chat_id, inviter, friends = await setup(h, 6)
    link = await h.app.invites.links.personal(chat_id, inviter)
    for friend in friends:
        await join(h, chat_id, friend, link.link)
    write(h, chat_id, friends[0], 3)
    h.later(days=3)
    assert (await sweep(h)).reported == 1
    assert told == [
        (chat_id, "invite.quiet_link", {"link": "Ada", "owner": "Ada", "joins": 6, "quiet": 5})
    ]
    assert (await sweep(h)).reported == 0


async def test_campaigns_are_counted_but_credit_nobody(h: ConsoleHarness) -> None:
    heard = Heard(h)
    chat_id, inviter, friends = await setup(h, 3)
    links = h.app.invites.links
    made = await links.campaign(chat_id, "spring", inviter.id, limit=50, lasts=timedelta(days=7))
    assert made.member_limit == 50 and made.expires_at == h.clock.now() + timedelta(days=7)
    call = [c for c in await h.ctl.calls() if c["method"] == "createChatInviteLink"][-1]
    assert call["params"]["name"] == "Tidepool # spring"
    with pytest.raises(CampaignError) as taken:
        await links.campaign(chat_id, "SPRING", inviter.id)
    assert taken.value.key == "invite.campaign_exists"
    with pytest.raises(CampaignError) as bad:
        await links.campaign(chat_id, "no spaces", inviter.id)
    assert bad.value.key == "invite.campaign_bad_name"
    with pytest.raises(CampaignError):
        await links.campaign(chat_id, "both", inviter.id, limit=5, approval=True)
    for friend in friends:
        await join(h, chat_id, friend, made.link)
    row = await referral(h, chat_id, friends[0])
    assert row.inviter_id is None and row.state == "pending"
    h.later(hours=12)
    await leave(h, chat_id, friends[2])
    h.later(days=1)
    write(h, chat_id, friends[0], 3)
    h.later(days=2)
    await sweep(h)
    (line,) = await numbers.campaigns(h.app.db, chat_id, h.clock.now())
    assert (line.name, line.joins, line.tally.qualified, line.tally.pending) == ("spring", 3, 1, 1)
    assert line.day1 == pytest.approx(2 / 3) and line.day7 is None
    qualified = [e for e in heard.events if e.name == "invite.qualified"]
    assert [e.user_id for e in qualified] == [friends[0].id]  # the invitee's run: no inviter
    assert qualified[0].data["inviter"] is None and qualified[0].data["campaign"] == "spring"
    revoked = await links.revoke_campaign(chat_id, "spring")
    assert revoked.name == "spring"
    assert await links.find_campaign(chat_id, "spring") is None
    with pytest.raises(CampaignError):
        await links.revoke_campaign(chat_id, "spring")


async def test_fission_coefficient_and_cycle_time(h: ConsoleHarness) -> None:
    chat_id, inviter, friends = await setup(h, 2)
    link = await h.app.invites.links.personal(chat_id, inviter)
    h.later(days=1)
    for friend in friends:
        await join(h, chat_id, friend, link.link)
        write(h, chat_id, friend, 3)
    h.later(days=3)
    await sweep(h)
    await h.app.rollup.catch_up()
    first_day = (h.clock.now() - timedelta(days=29)).date()
    fission = await numbers.fission(h.app.db, chat_id, h.clock.now(), first_day)
    assert fission.qualified == 2 and fission.active == 2
    assert fission.k == pytest.approx(1.0)
    assert fission.cycle_days == pytest.approx(4.0)  # joined at START, first qualified 4 days on


async def test_a_campaign_telegram_forgot_is_revoked_here_too(
    h: ConsoleHarness, monkeypatch: pytest.MonkeyPatch
) -> None:
    chat_id, inviter, _ = await setup(h, 0)
    links = h.app.invites.links
    await links.campaign(chat_id, "autumn", inviter.id)

    async def forgotten(*_args: Any, **_kwargs: Any) -> None:
        raise TelegramBadRequest(method=None, message="Bad Request: INVITE_HASH_EXPIRED")  # type: ignore[arg-type]

    monkeypatch.setattr(links.bot, "revoke_chat_invite_link", forgotten)
    await links.revoke_campaign(chat_id, "autumn")
    assert await links.find_campaign(chat_id, "autumn") is None

    async def refused(*_args: Any, **_kwargs: Any) -> None:
        raise TelegramBadRequest(method=None, message="Bad Request: not enough rights")  # type: ignore[arg-type]

    await links.campaign(chat_id, "winter", inviter.id)
    monkeypatch.setattr(links.bot, "revoke_chat_invite_link", refused)
    with pytest.raises(TelegramBadRequest):
        await links.revoke_campaign(chat_id, "winter")
    assert await links.find_campaign(chat_id, "winter") is not None
