"""Referrals: each first join through one of the bot's links, followed until it counts or not.

    pending ──(still there after `stay`, took part enough)──> qualified ──(left within
       │                                                          `clawback`)──> reversed
       └──(left; or not qualified `within`)──> void

Joins and leaves come from the registry on the bus; time moves the rest (`sweep`, run by the
loop whenever the clock reaches what is due and every few minutes). Every change of state is
one conditional UPDATE … RETURNING, so a referral changes once however many see it, and each
change is told to SOPs as an event (`invite.joined`, `invite.qualified`, `invite.voided`,
`invite.reversed`) for the inviter (a campaign's referral: for the member who came), with the
inviter and the invitee in `trigger.data` (texts see them as `inviter` and `invitee`).
"""

from __future__ import annotations

import asyncio
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, tzinfo
from typing import Any

from loguru import logger
from sqlalchemy import Subquery, Table, and_, func, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.clock import Clock
from bot.db import (
    CHECKINS,
    EVENTS,
    INVITE_LINKS,
    MEMBERS,
    PRESENT,
    REFERRALS,
    EventType,
    LinkKind,
    ReferralState,
    insert_for,
    reachable,
    writing,
)
from bot.events import Bus, Happened, MemberJoined, MemberLeft
from bot.invites.links import InviteLinks, Link
from bot.periodic import Background
from bot.sop.format import ReferralRule
from bot.sop.templates import mention

SWEEP_EVERY = timedelta(minutes=10)  # a referral past `stay` qualifies within this of its
# last message or check-in that made it count
CHUNK = 500  # ids per UPDATE … WHERE id IN (…)
QUIET_WINDOW = timedelta(days=30)  # the joins a quiet-link report looks at

Rules = Callable[[int], ReferralRule]  # chat id -> the group's rule
Zones = Callable[[int], tzinfo]  # chat id -> the group's time zone
Tell = Callable[[int, str, dict[str, Any]], Awaitable[None]]  # tell(chat, key, values): admins


@dataclass(frozen=True, slots=True)
class Swept:
    """What one sweep changed."""

    qualified: int = 0
    voided: int = 0
    capped: int = 0  # would have qualified but for the inviter's daily cap
    reported: int = 0  # quiet links told to the admins


def person(
    user_id: int, first_name: str | None, last_name: str | None, username: str | None
) -> dict[str, Any]:
    """A member as invite events carry them (`inviter`, `invitee` in texts)."""
    first = first_name or str(user_id)
    name = f"{first} {last_name}" if last_name else first
    return {
        "id": user_id,
        "name": name,
        "first_name": first,
        "username": username,
        "mention": mention(user_id, name),
        "reachable": False,  # started the bot: it may write to them privately
    }


def _since_joining(table: Table, *where: Any) -> Subquery:
    """Per pending referral, how many rows of `table` (events, check-ins) its member made in
    the group since joining (`where`: which rows count; a lower bound on `at` lets the
    database search the events by time)."""
    return (
        select(REFERRALS.c.id, func.count().label("n"))
        .select_from(
            REFERRALS.join(
                table,
                and_(
                    table.c.chat_id == REFERRALS.c.chat_id,
                    table.c.user_id == REFERRALS.c.invitee_id,
                    table.c.at >= REFERRALS.c.joined_at,
                ),
            )
        )
        .where(REFERRALS.c.state == ReferralState.PENDING.value, *where)
        .group_by(REFERRALS.c.id)
        .subquery()
    )


class Referrals(Background):
    """Credits joins through the bot's links and moves referrals through their states."""

    name = "referrals"

    def __init__(
        self,
        engine: AsyncEngine,
        links: InviteLinks,
        clock: Clock,
        bus: Bus,
        *,
        rules: Rules,
        zones: Zones,
        tell_admins: Tell,
        flush: Callable[[], Awaitable[Any]],
        listens: Callable[[str, int, int | None], bool] = lambda *_: True,
    ) -> None:
        super().__init__()
        self.engine = engine
        self.links = links
        self.clock = clock
        self.bus = bus
        self.rules = rules
        self.zones = zones
        self.tell_admins = tell_admins
        self.flush = flush  # the activity log's: messages counted are those written
        self.listens = listens  # whether an SOP waits for or starts on an event (the engine's)
        self._lock = asyncio.Lock()  # one change of state at a time: a leave amid a sweep
        self._wake = asyncio.Event()
        self._approved: dict[tuple[int, int], str] = {}  # join requests the bot approved
        bus.subscribe(MemberJoined, self._on_joined)
        bus.subscribe(MemberLeft, self._on_left)

    def approved(self, chat_id: int, user_id: int, link: str) -> None:
        """The bot approved a join request through `link`: the join that follows is its."""
        self._approved[chat_id, user_id] = link

    # -- joins and leaves ---------------------------------------------------------------------

    async def _on_joined(self, event: MemberJoined) -> None:
        await self.joined(event)

    async def _on_left(self, event: MemberLeft) -> None:
        await self.left(event.chat_id, event.user.id, event.at)

    async def joined(self, event: MemberJoined) -> int | None:
        """Count a join; return the referral's id when it is one (a first join through the
        bot's link, not one's own)."""
        chat_id, user = event.chat_id, event.user
        approved = self._approved.pop((chat_id, user.id), None)
        shown = approved or event.invite_link
        if shown is None:
            return None
        link = await self.links.joined_through(chat_id, shown, event.invite_name)
        if not (event.first and link.credited and link.owner_id != user.id):
            return None
        inviter = link.owner_id if link.kind is LinkKind.MEMBER else None
        async with writing(self.engine) as conn:
            row_id = (
                await conn.execute(
                    insert_for(conn, REFERRALS)
                    .values(
                        chat_id=chat_id,
                        invitee_id=user.id,
                        link_id=link.id,
                        inviter_id=inviter,
                        joined_at=event.at,
                        via_request=event.via_request or approved is not None,
                        state=ReferralState.PENDING.value,
                    )
                    .on_conflict_do_nothing()
                    .returning(REFERRALS.c.id)
                )
            ).scalar()
        if row_id is None:
            return None  # credited before (a join told twice)
        if self.listens("invite.joined", chat_id, user.id):  # the names only when wanted
            data = await self._event_data(chat_id, [(row_id, inviter, user.id, link)], {})
            self.bus.publish_soon(Happened("invite.joined", chat_id, user.id, data[row_id]))
        logger.bind(chat_id=chat_id).info(
            "{} joined through {} link {!r}", user.id, link.kind.value, link.name
        )
        return int(row_id)

    async def left(self, chat_id: int, user_id: int, at: datetime) -> ReferralState | None:
        """A member left: void their pending referral, reverse one qualified within the
        claw-back window; return the new state (None: nothing changed)."""
        rule = self.rules(chat_id)
        async with self._lock:
            async with self.engine.connect() as conn:
                row = (
                    await conn.execute(
                        select(REFERRALS).where(
                            REFERRALS.c.chat_id == chat_id, REFERRALS.c.invitee_id == user_id
                        )
                    )
                ).first()
            if row is None or row.state not in (ReferralState.PENDING, ReferralState.QUALIFIED):
                return None
            state, reason = None, None
            if row.state == ReferralState.PENDING:
                quick = at - row.joined_at < rule.min_stay
                state, reason = ReferralState.VOID, "left_quickly" if quick else "left"
            elif row.state == ReferralState.QUALIFIED and at - row.qualified_at <= rule.clawback:
                state, reason = ReferralState.REVERSED, "left"
            async with writing(self.engine) as conn:
                values: dict[str, Any] = {"left_at": at}
                if state is not None:
                    values.update(state=state.value, reason=reason, decided_at=at)
                await conn.execute(
                    update(REFERRALS)
                    .where(REFERRALS.c.id == row.id, REFERRALS.c.state == row.state)
                    .values(**values)
                )
        if state is None:
            return None
        name = "invite.voided" if state is ReferralState.VOID else "invite.reversed"
        await self._tell([row], name, reason)
        return state

    # -- time ---------------------------------------------------------------------------------

    async def _run(self) -> None:
        while True:
            try:
                await self.sweep(self.clock.now())
            except Exception:
                logger.exception("referrals: sweep failed; trying again later")
            self._wake.clear()
            await self.clock.wait(self._wake, SWEEP_EVERY.total_seconds())

    async def sweep(self, now: datetime) -> Swept:
        """Qualify the pending referrals that now count, void those too late; report quiet
        links. Safe to run any time: each referral changes state once."""
        await self.flush()
        async with self._lock:
            pending = await self._pending()
            qualified, capped, late = await self._decide(pending, now)
            qualified_rows = await self._move(
                qualified, ReferralState.QUALIFIED, None, now, qualified_at=now
            )
            voided_rows = await self._move(late, ReferralState.VOID, "not_qualified", now)
            await self._mark_capped(capped)
        await self._tell(qualified_rows, "invite.qualified", None)
        await self._tell(voided_rows, "invite.voided", "not_qualified")
        reported = await self._report_quiet(now)
        return Swept(len(qualified_rows), len(voided_rows), len(capped), reported)

    async def _pending(self) -> list[Any]:
        """Pending referrals with their message and check-in counts since joining."""
        pending = REFERRALS.c.state == ReferralState.PENDING.value
        first_join = select(func.min(REFERRALS.c.joined_at)).where(pending).scalar_subquery()
        messages = _since_joining(
            EVENTS, EVENTS.c.type == EventType.MESSAGE.value, EVENTS.c.at >= first_join
        )
        checkins = _since_joining(CHECKINS)
        query = (
            select(
                REFERRALS,
                func.coalesce(messages.c.n, 0).label("messages"),
                func.coalesce(checkins.c.n, 0).label("checkins"),
                MEMBERS.c.status.label("status"),
            )
            .select_from(
                REFERRALS.outerjoin(messages, messages.c.id == REFERRALS.c.id)
                .outerjoin(checkins, checkins.c.id == REFERRALS.c.id)
                .outerjoin(
                    MEMBERS,
                    and_(
                        MEMBERS.c.chat_id == REFERRALS.c.chat_id,
                        MEMBERS.c.user_id == REFERRALS.c.invitee_id,
                    ),
                )
            )
            .where(pending)
            .order_by(REFERRALS.c.joined_at, REFERRALS.c.id)
        )
        async with self.engine.connect() as conn:
            return list(await conn.execute(query))

    async def _decide(
        self, pending: Sequence[Any], now: datetime
    ) -> tuple[list[Any], list[Any], list[Any]]:
        """(qualify now, held by the daily cap, too late) among the pending referrals."""
        ready, late = [], []
        for row in pending:
            rule = self.rules(row.chat_id)
            if now - row.joined_at >= rule.within:
                late.append(row)
            elif (
                now - row.joined_at >= rule.stay
                and row.status in PRESENT
                and (
                    rule.messages == 0
                    or row.messages >= rule.messages
                    or (rule.checkins > 0 and row.checkins >= rule.checkins)
                )
            ):
                ready.append(row)
        if not ready:
            return [], [], late
        used = await self._qualified_today(ready, now)
        qualified, capped = [], []
        for row in ready:
            if row.inviter_id is None:
                qualified.append(row)
                continue
            key = (row.chat_id, row.inviter_id)
            if used[key] < self.rules(row.chat_id).daily_cap:
                used[key] += 1
                qualified.append(row)
            else:
                capped.append(row)
        return qualified, capped, late

    async def _qualified_today(self, rows: Iterable[Any], now: datetime) -> Counter[Any]:
        """Referrals each inviter had qualified today (the group's day), by (group, inviter)."""
        inviters = {(row.chat_id, row.inviter_id) for row in rows if row.inviter_id is not None}
        used: Counter[tuple[int, int]] = Counter()
        if not inviters:
            return used
        starts = {}
        for chat_id in {chat for chat, _ in inviters}:
            local = now.astimezone(self.zones(chat_id))
            starts[chat_id] = local.replace(hour=0, minute=0, second=0, microsecond=0)
        query = select(REFERRALS.c.chat_id, REFERRALS.c.inviter_id, REFERRALS.c.qualified_at).where(
            REFERRALS.c.qualified_at >= now - timedelta(days=1, hours=14),
            REFERRALS.c.inviter_id.in_(sorted({inviter for _, inviter in inviters})),
        )
        async with self.engine.connect() as conn:
            for chat_id, inviter, at in await conn.execute(query):
                if (chat_id, inviter) in inviters and at >= starts[chat_id]:
                    used[chat_id, inviter] += 1
        return used

    async def _move(
        self,
        rows: Sequence[Any],
        state: ReferralState,
        reason: str | None,
        now: datetime,
        **values: Any,
    ) -> list[Any]:
        """Move pending referrals to `state`; return those that moved (each moves once)."""
        moved_ids: set[int] = set()
        ids = [row.id for row in rows]
        for start in range(0, len(ids), CHUNK):
            async with writing(self.engine) as conn:
                result = await conn.execute(
                    update(REFERRALS)
                    .where(
                        REFERRALS.c.id.in_(ids[start : start + CHUNK]),
                        REFERRALS.c.state == ReferralState.PENDING.value,
                    )
                    .values(
                        state=state.value,
                        reason=reason,
                        decided_at=now if state is not ReferralState.QUALIFIED else None,
                        **values,
                    )
                    .returning(REFERRALS.c.id)
                )
                moved_ids.update(result.scalars())
        return [row for row in rows if row.id in moved_ids]

    async def _mark_capped(self, rows: Sequence[Any]) -> None:
        """Say why these wait (the inviter's daily cap); they are looked at again later."""
        ids = [row.id for row in rows if row.reason != "daily_cap"]
        for start in range(0, len(ids), CHUNK):
            async with writing(self.engine) as conn:
                await conn.execute(
                    update(REFERRALS)
                    .where(
                        REFERRALS.c.id.in_(ids[start : start + CHUNK]),
                        REFERRALS.c.state == ReferralState.PENDING.value,
                    )
                    .values(reason="daily_cap")
                )

    # -- telling ------------------------------------------------------------------------------

    async def _tell(self, rows: Sequence[Any], name: str, reason: str | None) -> None:
        """Emit `name` for each referral, to the inviter's runs (a campaign's: the invitee's)."""
        if not rows:
            return
        by_chat: defaultdict[int, list[Any]] = defaultdict(list)
        for row in rows:
            user = row.inviter_id if row.inviter_id is not None else row.invitee_id
            if self.listens(name, row.chat_id, user):
                by_chat[row.chat_id].append(row)
        for chat_id, in_chat in by_chat.items():
            links = await self._links([row.link_id for row in in_chat])
            items = [
                (row.id, row.inviter_id, row.invitee_id, links.get(row.link_id)) for row in in_chat
            ]
            data = await self._event_data(chat_id, items, {"reason": reason})
            for row in in_chat:
                user = row.inviter_id if row.inviter_id is not None else row.invitee_id
                self.bus.publish_soon(Happened(name, chat_id, user, data[row.id]))

    async def _links(self, ids: Iterable[int]) -> dict[int, Link]:
        wanted = sorted(set(ids))
        async with self.engine.connect() as conn:
            rows = await conn.execute(select(INVITE_LINKS).where(INVITE_LINKS.c.id.in_(wanted)))
            return {row.id: Link.of(row) for row in rows}

    async def _event_data(
        self,
        chat_id: int,
        items: Sequence[tuple[int, int | None, int, Link | None]],
        extra: dict[str, Any],
    ) -> dict[int, dict[str, Any]]:
        """`trigger.data` of each referral's event: inviter, invitee, campaign, link."""
        people: dict[int, dict[str, Any]] = {}
        wanted = sorted(
            {who for _, inviter, invitee, _ in items for who in (inviter, invitee) if who}
        )
        for start in range(0, len(wanted), CHUNK):
            query = select(
                MEMBERS.c.user_id, MEMBERS.c.first_name, MEMBERS.c.last_name, MEMBERS.c.username
            ).where(
                MEMBERS.c.chat_id == chat_id, MEMBERS.c.user_id.in_(wanted[start : start + CHUNK])
            )
            async with self.engine.connect() as conn:
                for row in await conn.execute(query):
                    people[row.user_id] = person(*row)
                for user_id in await reachable(conn, wanted[start : start + CHUNK]):
                    if user_id in people:
                        people[user_id]["reachable"] = True
        data = {}
        for referral, inviter, invitee, link in items:
            campaign = link.name if link is not None and link.kind is LinkKind.CAMPAIGN else None
            data[referral] = {
                "referral": referral,
                "inviter": people.get(inviter, person(inviter, None, None, None))
                if inviter is not None
                else None,
                "invitee": people.get(invitee, person(invitee, None, None, None)),
                "campaign": campaign,
                **extra,
            }
        return data

    async def _report_quiet(self, now: datetime) -> int:
        """Tell the admins, once per link, of a link whose joiners (of the last 30 days) mostly
        never wrote."""
        query = (
            select(
                REFERRALS.c.chat_id,
                REFERRALS.c.link_id,
                REFERRALS.c.joined_at,
                MEMBERS.c.message_count,
            )
            .select_from(
                REFERRALS.join(INVITE_LINKS, INVITE_LINKS.c.id == REFERRALS.c.link_id).join(
                    MEMBERS,
                    and_(
                        MEMBERS.c.chat_id == REFERRALS.c.chat_id,
                        MEMBERS.c.user_id == REFERRALS.c.invitee_id,
                    ),
                )
            )
            .where(
                INVITE_LINKS.c.reported_at.is_(None),
                REFERRALS.c.joined_at >= now - QUIET_WINDOW,
            )
        )
        settled: Counter[int] = Counter()
        quiet: Counter[int] = Counter()
        chats: dict[int, int] = {}
        async with self.engine.connect() as conn:
            for chat_id, link_id, joined_at, messages in await conn.execute(query):
                if now - joined_at >= self.rules(chat_id).stay:
                    chats[link_id] = chat_id
                    settled[link_id] += 1
                    quiet[link_id] += int(not messages)
        flagged = [
            link_id
            for link_id, count in settled.items()
            if count >= self.rules(chats[link_id]).quiet_joins
            and quiet[link_id] > count * self.rules(chats[link_id]).quiet_share
        ]
        if not flagged:
            return 0
        links = await self._links(flagged)
        for link_id in flagged:
            async with writing(self.engine) as conn:
                taken = await conn.execute(
                    update(INVITE_LINKS)
                    .where(INVITE_LINKS.c.id == link_id, INVITE_LINKS.c.reported_at.is_(None))
                    .values(reported_at=now)
                )
            if taken.rowcount == 0:
                continue
            link = links[link_id]
            owner = await self._event_data(link.chat_id, [(0, link.owner_id, 0, link)], {})
            inviter = owner[0]["inviter"]
            await self.tell_admins(
                link.chat_id,
                "invite.quiet_link",
                {
                    "link": link.name,
                    "owner": inviter["name"] if inviter else "",
                    "joins": settled[link_id],
                    "quiet": quiet[link_id],
                },
            )
        return len(flagged)
