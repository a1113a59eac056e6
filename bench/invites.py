"""Invites benchmark: 10,000 joins through 500 members' links in one minute, each credited once;
then one sweep that qualifies 10,000 referrals, against the issue's targets.

    python -m bench.invites [--links 500] [--per-link 20] [--cap 20] [--background 200000]
                            [--plain 2000] [--no-shipped]

(Run it from the repository root with `-m`: it imports bench/sop.py.) The bot is the whole
application as `tidepool run` assembles it (bot.factory), on its own SQLite file, Telegram
played by the emulator in this process, the clock a `SteppedClock` the bench moves. Its only
SOP is the shipped `sops/referral.yaml` (its texts too), whose `daily_cap` is set to `--cap`.

1. Links and joins: 500 members of one group (the bot an administrator there) each get their
   personal link from `app.invites.links.personal`, which asks the emulator's
   `createChatInviteLink`. Then 10,000 new users join through them, 20 a link, as the
   `chat_member` updates Telegram sends an admin bot (the link as the emulator stored it), dated
   evenly over one minute of the clock, fed to the bot's dispatcher one after the other as its
   Poller feeds one chat's updates; after every 100, 5 of them come again, as Telegram sends a
   batch twice after a restart. The SQL of 200 updates in the middle is timed by statement.
   Checked: one referral per invitee, credited to its link's owner, 20 joins counted on each
   link, none for the repeats. Baselines: `--plain` joins without a link, through the same
   dispatcher, and the rate of plain group messages (part 2).
2. Activity: every invitee writes 3 group messages over the next two days, through the same
   dispatcher (so their member rows count them too, which the quiet-link report reads); then
   the background, bulk inserted: `--background` messages of 5,000 other members from the first
   join to the sweep, and half as many in the 30 days before.
3. Qualification: the bot's rollup, daily analytics and referral loops are stopped (the bench
   drives them); the rollup counts what is new and the days' analytics are done, as a bot that
   has been running has; the clock moves to 3 days and 10 minutes after the last join; then one
   `app.invites.referrals.sweep(now)`, timed whole: the flush of the activity log, the pending
   query, the decisions, the updates, the 10,000 `invite.qualified` events handed to the bus,
   and the quiet-link report (the SOP runs those events start begin meanwhile, in the same event
   loop). Its SQL is timed statement by statement, and the plans of its two reads of many rows
   shown. Baselines: a `SELECT 1` round trip, and one indexed scan that counts each invitee's
   messages in the window. Then the referral SOP's work (+50 points to the inviter for each
   referral) is waited for and checked.
4. The shipped rule: the database as it was before part 3, copied, under the shipped
   `referral.yaml` (daily_cap 10). One sweep qualifies 10 of each inviter's 20 and holds the rest
   for the daily cap; one a day later (the SOP's runs of the first done by then) qualifies those.

With `--cap 20` (the default) one sweep has all 10,000 to qualify, which is the issue's figure;
with the shipped cap of 10 an inviter of 20 qualifies over two days, which part 4 shows.
Figures are printed with PASS or MISS against the targets; nothing here is a test.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import random
import re
import sqlite3
import tempfile
import time
import weakref
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from aiogram import Bot
from aiogram.types import (
    Chat,
    ChatInviteLink,
    ChatMemberLeft,
    ChatMemberMember,
    ChatMemberUpdated,
    Message,
    Update,
    User,
)
from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncEngine

from bench._app import ROOT, TOKEN, running, seed_chats
from bench._sql import Statement, plan, sql_table, statements
from bench._traffic import BATCH
from bench.sop import ERRORS, Verdicts, runs_line, statuses, until
from bench.stats import peak_rss, percentile, store
from bot.activity import EVENT_COLUMNS, event_row
from bot.clock import wait_for_wake
from bot.db import (
    BALANCES,
    EVENTS,
    INVITE_LINKS,
    MEMBERS,
    POINTS,
    REFERRALS,
    EventType,
    LinkKind,
    MemberStatus,
    ReferralState,
    writing,
)
from bot.emulator import EmulatorServer
from bot.emulator._objects import invite_obj
from bot.factory import Tidepool
from bot.invites import Link, Swept

TARGET_JOINS = 60.0  # s: 10,000 joins in one minute
TARGET_SWEEP = 2.0  # s: qualification of 10,000 referrals
CHAT_ID = -1006000000000
TITLE = "Invites bench group"
START = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)  # the clock when the bot starts
JOIN_SPAN = timedelta(minutes=1)
MESSAGES_EACH = 3  # the rule's `messages`
OTHERS = 5000  # members who were there before, who write the background
FIRST_INVITER = 400_000
FIRST_INVITEE = 500_000
FIRST_OTHER = 700_000
REPEAT_EVERY, REPEATS = 100, 5  # of every 100 joins, 5 come again
HISTORY_DAYS = 30
BACKGROUND_CHUNK = 50_000  # rows generated and written at a time
FIRST_PLAIN = 800_000  # the baseline's joiners, who come without a link
# The sweep's statements whose plans are shown, told by words of their SQL.
PLANNED = {
    "pending query": ("FROM referrals", "JOIN events"),
    "quiet links query": ("JOIN invite_links", "message_count"),
}
JOIN_SAMPLE = 200  # updates in the middle of the joins whose SQL is shown
SOP_DEADLINE = 120.0  # s to wait for the referral SOP's runs after a sweep


class SteppedClock:
    """The bench's clock: it says what time it is, and moves only when the bench says.

    `follow(at)` is time going by (the date of the update in hand): no loop is woken, as none
    is by the real time passing. `jump(at)` moves it as a test clock file moves the
    ShiftedClock: every wait ends and its loop looks again. A wait otherwise lasts the real
    seconds asked for. (The ManualClock ends every wait after 10 ms, so its loops look a hundred
    times a second; the referral loop would then sweep a hundred times a second beside the
    joins, which the real bot never does.)"""

    max_sleep = 0.2

    def __init__(self, start: datetime) -> None:
        self._now = start
        self._moves = 0
        self._looked_with: weakref.WeakKeyDictionary[asyncio.Event, int] = (
            weakref.WeakKeyDictionary()
        )

    def now(self) -> datetime:
        return self._now

    def follow(self, at: datetime) -> None:
        self._now = max(self._now, at)

    def jump(self, at: datetime) -> None:
        self._now = at
        self._moves += 1

    async def wait(self, wake: asyncio.Event, seconds: float | None) -> None:
        loop = asyncio.get_running_loop()
        end = math.inf if seconds is None else loop.time() + seconds
        moves = self._looked_with.get(wake, self._moves)
        try:
            while not wake.is_set() and self._moves == moves:
                left = end - loop.time()
                if left <= 0:
                    return
                await wait_for_wake(wake, min(left, self.max_sleep))
        finally:
            self._looked_with[wake] = self._moves


def referral_sop(cap: int) -> str:
    """The shipped referral.yaml with its `daily_cap` set to `cap`."""
    shipped = (ROOT / "sops" / "referral.yaml").read_text()
    changed, found = re.subn(r"(?m)^(\s+daily_cap:) \d+", rf"\1 {cap}", shipped)
    if found != 1:
        raise SystemExit("sops/referral.yaml changed: cannot find its daily_cap")
    return changed


# -- the people --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Crowd:
    """Who takes part: `links` inviters, each bringing `per_link` friends; the others who write
    the background have ids from FIRST_OTHER."""

    links: int
    per_link: int

    @property
    def joins(self) -> int:
        return self.links * self.per_link

    def inviters(self) -> list[User]:
        return [
            User(id=FIRST_INVITER + n, is_bot=False, first_name=f"Inviter {n}")
            for n in range(self.links)
        ]

    def invitees(self) -> list[User]:
        return [
            User(id=FIRST_INVITEE + n, is_bot=False, first_name=f"Friend {n}", username=f"f{n}")
            for n in range(self.joins)
        ]

    def inviter_of(self, n: int) -> int:
        """The inviter whose link invitee `n` comes through (joins take the links in turn)."""
        return FIRST_INVITER + n % self.links


async def seed(db: AsyncEngine, crowd: Crowd) -> None:
    """The group's members before the bench: the inviters and the others, there two months."""
    since = START - timedelta(days=60)
    rows = [
        {
            "chat_id": CHAT_ID,
            "user_id": user_id,
            "first_name": f"Member {user_id}",
            "status": MemberStatus.MEMBER.value,
            "joined_at": since,
            "message_count": 40,
        }
        for user_id in [
            *range(FIRST_INVITER, FIRST_INVITER + crowd.links),
            *range(FIRST_OTHER, FIRST_OTHER + OTHERS),
        ]
    ]
    async with writing(db) as conn:
        for at in range(0, len(rows), 2000):
            await conn.execute(MEMBERS.insert(), rows[at : at + 2000])


# -- feeding -----------------------------------------------------------------------------------


def bound(update: Update, bot: Bot) -> Update:
    """Bound to `bot`, as updates from getUpdates are (else feed_update copies each one)."""
    return Update.model_validate(update.model_dump(), context={"bot": bot})


def join_update(
    update_id: int, user: User, at: datetime, invite: ChatInviteLink | None, bot: Bot
) -> Update:
    """The `chat_member` update Telegram sends an admin bot when `user` joins."""
    change = ChatMemberUpdated(
        chat=Chat(id=CHAT_ID, type="supergroup", title=TITLE),
        from_user=user,
        date=at,
        old_chat_member=ChatMemberLeft(user=user),
        new_chat_member=ChatMemberMember(user=user),
        invite_link=invite,
    )
    return bound(Update(update_id=update_id, chat_member=change), bot)


def join_updates(
    crowd: Crowd, links: Sequence[Link], server: EmulatorServer, bot: Bot
) -> tuple[list[Update], list[bool]]:
    """The joins through the links, dated over one minute, each naming its link as the
    emulator stored it; after every REPEAT_EVERY, REPEATS of them again. Returns the updates
    and which of them are repeats."""
    world = server.emulator.world
    gap = JOIN_SPAN / crowd.joins
    fresh = [
        join_update(
            n + 1,
            user,
            START + n * gap,
            invite_obj(
                world.invites[links[n % crowd.links].link],
                world.bot_user(),
                viewer_id=world.bot_id,
            ),
            bot,
        )
        for n, user in enumerate(crowd.invitees())
    ]
    updates, repeats = [], []
    pick = random.Random(19)
    for at in range(0, len(fresh), REPEAT_EVERY):
        block = fresh[at : at + REPEAT_EVERY]
        updates += block
        repeats += [False] * len(block)
        again = pick.sample(block, min(REPEATS, len(block)))
        updates += again
        repeats += [True] * len(again)
    return updates, repeats


def plain_joins(count: int, bot: Bot) -> list[Update]:
    """The baseline: `count` joins without a link, dated over the minute after the others."""
    gap = JOIN_SPAN / max(count, 1)
    return [
        join_update(
            50_000 + n,
            User(id=FIRST_PLAIN + n, is_bot=False, first_name=f"Walk-in {n}"),
            START + JOIN_SPAN + n * gap,
            None,
            bot,
        )
        for n in range(count)
    ]


def message_updates(crowd: Crowd, after: datetime, bot: Bot) -> list[Update]:
    """MESSAGES_EACH group messages of every invitee, spread over the two days after `after`."""
    chat = Chat(id=CHAT_ID, type="supergroup", title=TITLE)
    invitees = crowd.invitees()
    total = len(invitees) * MESSAGES_EACH
    gap = timedelta(days=2) / total
    updates = []
    for i in range(total):
        sender = invitees[i % len(invitees)]
        message = Message(
            message_id=i + 1,
            date=after + (i + 1) * gap,
            chat=chat,
            from_user=sender,
            text=f"hello everyone, message {i}",
        )
        updates.append(bound(Update(update_id=100_000 + i, message=message), bot))
    return updates


async def feed_timed(app: Tidepool, clock: SteppedClock, updates: Sequence[Update]) -> list[float]:
    """Feed the updates to the dispatcher one after the other, as the Poller feeds one chat's,
    yielding to the event loop after every BATCH as polling does; the clock follows their
    dates. Returns how long each took."""
    took = []
    for start in range(0, len(updates), BATCH):
        for update in updates[start : start + BATCH]:
            event = update.chat_member or update.message
            assert event is not None
            clock.follow(event.date)
            began = time.perf_counter()
            await app.dispatcher.feed_update(app.bot, update)
            took.append(time.perf_counter() - began)
        await asyncio.sleep(0)
    return took


# -- checking ----------------------------------------------------------------------------------


@dataclass
class Credited:
    referrals: int = 0
    invitees: int = 0
    right_inviter: int = 0
    link_joins: Counter[int] = field(default_factory=Counter)  # joins -> links with that many
    other_links: int = 0
    members_joined: int = 0
    join_events: int = 0

    def exact(self, crowd: Crowd) -> bool:
        return (
            self.referrals == self.invitees == self.right_inviter == crowd.joins
            and self.link_joins == Counter({crowd.per_link: crowd.links})
            and self.other_links == 0
            and self.members_joined == self.join_events == crowd.joins
        )


async def credited(db: AsyncEngine, crowd: Crowd) -> Credited:
    found = Credited()
    async with db.connect() as conn:
        rows = (
            await conn.execute(
                select(REFERRALS.c.invitee_id, REFERRALS.c.inviter_id, INVITE_LINKS.c.owner_id)
                .select_from(REFERRALS.join(INVITE_LINKS, INVITE_LINKS.c.id == REFERRALS.c.link_id))
                .where(REFERRALS.c.chat_id == CHAT_ID)
            )
        ).all()
        found.referrals = len(rows)
        found.invitees = len({row.invitee_id for row in rows})
        found.right_inviter = sum(
            row.inviter_id == row.owner_id == crowd.inviter_of(row.invitee_id - FIRST_INVITEE)
            for row in rows
        )
        links = (await conn.execute(select(INVITE_LINKS.c.kind, INVITE_LINKS.c.joins))).all()
        found.link_joins = Counter(joins for kind, joins in links if kind == LinkKind.MEMBER)
        found.other_links = sum(kind != LinkKind.MEMBER for kind, _ in links)
        found.members_joined = (
            await conn.execute(
                select(func.count()).where(
                    MEMBERS.c.chat_id == CHAT_ID,
                    MEMBERS.c.user_id >= FIRST_INVITEE,
                    MEMBERS.c.user_id < FIRST_INVITEE + crowd.joins,
                    MEMBERS.c.invite_link.is_not(None),
                )
            )
        ).scalar_one()
        found.join_events = (
            await conn.execute(
                select(func.count()).where(
                    EVENTS.c.type == EventType.MEMBER_JOINED.value,
                    EVENTS.c.user_id >= FIRST_INVITEE,
                    EVENTS.c.user_id < FIRST_INVITEE + crowd.joins,
                )
            )
        ).scalar_one()
    return found


async def referral_states(db: AsyncEngine) -> Counter[tuple[str, str | None]]:
    async with db.connect() as conn:
        rows = await conn.execute(
            select(REFERRALS.c.state, REFERRALS.c.reason, func.count()).group_by(
                REFERRALS.c.state, REFERRALS.c.reason
            )
        )
        return Counter({(state, reason): n for state, reason, n in rows})


def states_line(states: Counter[tuple[str, str | None]]) -> str:
    return ", ".join(
        f"{n:,} {state}" + (f" ({reason})" if reason else "")
        for (state, reason), n in sorted(states.items(), key=lambda item: str(item[0]))
    )


# -- the background ----------------------------------------------------------------------------


async def background(db: AsyncEngine, window: int, first: datetime, last: datetime) -> int:
    """`window` messages of the other members between `first` and `last`, and half as many in
    the HISTORY_DAYS before `first`, bulk inserted in time order (as the log appends them);
    the rows written."""
    pick = random.Random(7)
    span = (last - first).total_seconds()
    before = timedelta(days=HISTORY_DAYS).total_seconds()
    offsets = sorted(
        [-pick.random() * before for _ in range(window // 2)]
        + [pick.random() * span for _ in range(window)]
    )
    for start in range(0, len(offsets), BACKGROUND_CHUNK):
        rows = [
            event_row(
                chat_id=CHAT_ID,
                user_id=FIRST_OTHER + pick.randrange(OTHERS),
                at=first + timedelta(seconds=offset),
                type=EventType.MESSAGE,
                kind="text",
                message_id=1_000_000 + n,
                text_length=pick.randint(2, 120),
            )
            for n, offset in enumerate(offsets[start : start + BACKGROUND_CHUNK], start)
        ]
        await store(db, EVENTS, EVENT_COLUMNS, rows)
    return len(offsets)


# -- the sweep ---------------------------------------------------------------------------------


async def baselines(db: AsyncEngine, crowd: Crowd, first: datetime) -> tuple[float, float]:
    """A SELECT 1 round trip (the median of 50) and one indexed scan counting each invitee's
    messages since `first` (the best of 3), in seconds."""
    ones = []
    for _ in range(50):
        began = time.perf_counter()
        async with db.connect() as conn:
            await conn.execute(text("SELECT 1"))
        ones.append(time.perf_counter() - began)
    scan = (
        select(EVENTS.c.user_id, func.count())
        .where(
            EVENTS.c.at >= first,
            EVENTS.c.chat_id == CHAT_ID,
            EVENTS.c.type == EventType.MESSAGE.value,
            EVENTS.c.user_id >= FIRST_INVITEE,
            EVENTS.c.user_id < FIRST_INVITEE + crowd.joins,
        )
        .group_by(EVENTS.c.user_id)
    )
    best = math.inf
    for _ in range(3):
        began = time.perf_counter()
        async with db.connect() as conn:
            counted = (await conn.execute(scan)).all()
        best = min(best, time.perf_counter() - began)
    if len(counted) != crowd.joins:
        raise SystemExit(f"the baseline scan found {len(counted)} invitees")
    return percentile(ones, 0.5), best


@dataclass
class Sweep:
    swept: Swept
    began: float  # perf_counter
    seconds: float
    statements: list[Statement]


async def timed_sweep(app: Tidepool, now: datetime) -> Sweep:
    with statements(app.db) as seen:
        began = time.perf_counter()
        swept = await app.invites.referrals.sweep(now)
        seconds = time.perf_counter() - began
    return Sweep(swept, began, seconds, seen)


async def settle_history(app: Tidepool) -> None:
    """Stop the loops the bench drives, and do what they would have done by now."""
    await app.invites.referrals.close()
    await app.rollup.close()
    await app.analytics.close()
    await app.activity.flush()
    await app.rollup.catch_up()
    await app.analytics.run_due()


async def sop_work(app: Tidepool, began: float) -> float:
    """Wait until the runs the sweep's events started are over (at most SOP_DEADLINE); the
    seconds since `began`. Runs left unfinished show in the report."""
    await app.bus.settle()
    await app.engine.starts_written()

    async def over() -> bool:
        return not set(await statuses(app.db)) - {"done", "failed", "cancelled"}

    await until(over, time.perf_counter() + SOP_DEADLINE, 0.05)
    await app.engine.settle()
    return time.perf_counter() - began


async def points_of(db: AsyncEngine) -> tuple[int, Counter[int]]:
    """Ledger rows for referrals, and the inviters' balances."""
    async with db.connect() as conn:
        rows = (
            await conn.execute(select(func.count()).where(POINTS.c.reason == "referral"))
        ).scalar_one()
        balances = Counter(
            dict((await conn.execute(select(BALANCES.c.user_id, BALANCES.c.balance))).all())
        )
    return int(rows), balances


def copy_database(source: Path, target: Path) -> None:
    """A consistent copy of a live SQLite database (its WAL included)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    with (
        contextlib.closing(sqlite3.connect(source)) as src,
        contextlib.closing(sqlite3.connect(target)) as dst,
    ):
        src.backup(dst)


# -- the parts ---------------------------------------------------------------------------------


@dataclass
class Joins:
    links_made: float  # seconds for the links
    each: list[float]  # seconds per first join
    repeats: list[float]  # seconds per repeated join
    total: float  # seconds for all of them, written and told
    credited: Credited
    sample: list[Statement]  # the SQL while JOIN_SAMPLE updates in the middle were handled
    sample_updates: int
    plain: list[float]  # seconds per join without a link (the baseline)


async def links_and_joins(
    app: Tidepool, server: EmulatorServer, clock: SteppedClock, crowd: Crowd, plain: int
) -> Joins:
    """Part 1: the links, the joins through them (the SQL of a sample in the middle timed),
    then the joins without a link (the baseline)."""
    began = time.perf_counter()
    links = [await app.invites.links.personal(CHAT_ID, user) for user in crowd.inviters()]
    links_made = time.perf_counter() - began
    if len({link.link for link in links}) != crowd.links:
        raise SystemExit("the links are not one per inviter")
    updates, repeats = join_updates(crowd, links, server, app.bot)
    middle = slice(len(updates) // 2, len(updates) // 2 + JOIN_SAMPLE)
    began = time.perf_counter()
    took = await feed_timed(app, clock, updates[: middle.start])
    with statements(app.db) as sample:
        took += await feed_timed(app, clock, updates[middle])
    took += await feed_timed(app, clock, updates[middle.stop :])
    await app.bus.settle()  # the invite.joined events, told without waiting
    await app.activity.flush()
    total = time.perf_counter() - began
    walk_ins = await feed_timed(app, clock, plain_joins(plain, app.bot))
    await app.bus.settle()
    each = [t for t, repeat in zip(took, repeats, strict=True) if not repeat]
    repeated = [t for t, repeat in zip(took, repeats, strict=True) if repeat]
    return Joins(
        links_made,
        each,
        repeated,
        total,
        await credited(app.db, crowd),
        sample,
        len(updates[middle]),
        walk_ins,
    )


@dataclass
class Activity:
    messages: int
    rate: float  # messages/s through the dispatcher, written
    background: int  # events bulk inserted


async def activity(
    app: Tidepool, clock: SteppedClock, crowd: Crowd, window: int, first: datetime, last: datetime
) -> Activity:
    """Part 2: the invitees' messages through the dispatcher, then the background."""
    updates = message_updates(crowd, clock.now(), app.bot)
    began = time.perf_counter()
    await feed_timed(app, clock, updates)
    await app.activity.flush()
    rate = len(updates) / (time.perf_counter() - began)
    written = await background(app.db, window, first, last)
    return Activity(len(updates), rate, written)


@dataclass
class Qualified:
    sweep: Sweep
    select_one: float
    scan: float
    plans: dict[str, list[str]]  # EXPLAIN QUERY PLAN of the PLANNED statements
    states: Counter[tuple[str, str | None]]
    sop_seconds: float
    runs: Counter[str]
    ledger: int
    balances: Counter[int]


async def qualification(
    app: Tidepool, clock: SteppedClock, crowd: Crowd, at: datetime
) -> Qualified:
    """Part 3: the loops the bench drives settled, the clock moved, the sweep timed, then the
    SOP's work it started waited for."""
    await settle_history(app)
    clock.jump(at)
    await asyncio.sleep(0.5)  # the other loops see the move and look (nothing is due)
    select_one, scan = await baselines(app.db, crowd, START)
    sweep = await timed_sweep(app, at)
    began = time.perf_counter() - sweep.seconds
    sop_seconds = await sop_work(app, began)
    plans = {}
    for name, words in PLANNED.items():
        found = [s for s in sweep.statements if all(word in s.sql for word in words)]
        plans[name] = (
            await plan(app.db, found[0])
            if len(found) == 1
            else [f"(found {len(found)} times among the sweep's statements, not once)"]
        )
    ledger, balances = await points_of(app.db)
    return Qualified(
        sweep,
        select_one,
        scan,
        plans,
        await referral_states(app.db),
        sop_seconds,
        await statuses(app.db),
        ledger,
        balances,
    )


@dataclass
class Capped:
    first: Sweep
    second: Sweep
    most_a_day: int  # the most one inviter had qualified on one day
    ledger: int
    runs: Counter[str]


async def shipped_rule(
    server: EmulatorServer, folder: Path, crowd: Crowd, since: datetime, at: datetime
) -> Capped:
    """Part 4: on the copy in `folder`, under the shipped referral.yaml."""
    clock = SteppedClock(since)
    async with running(
        server,
        folder,
        clock,
        sops={"referral": (ROOT / "sops" / "referral.yaml").read_text()},
        timezone="UTC",
    ) as app:
        await settle_history(app)
        clock.jump(at)
        await asyncio.sleep(0.5)
        first = await timed_sweep(app, at)
        await sop_work(app, time.perf_counter())  # a day passes before the next sweep
        later = at + timedelta(days=1)
        clock.jump(later)
        await asyncio.sleep(0.5)
        second = await timed_sweep(app, later)
        await sop_work(app, time.perf_counter())
        async with app.db.connect() as conn:
            days = Counter(
                (inviter, when.date())
                for inviter, when in await conn.execute(
                    select(REFERRALS.c.inviter_id, REFERRALS.c.qualified_at).where(
                        REFERRALS.c.state == ReferralState.QUALIFIED.value
                    )
                )
            )
        ledger, _ = await points_of(app.db)
        runs = await statuses(app.db)
    return Capped(first, second, max(days.values(), default=0), ledger, runs)


# -- the report --------------------------------------------------------------------------------


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.2f} ms"


def spread(values: Sequence[float]) -> str:
    return (
        f"p50 {ms(percentile(values, 0.5))}, p95 {ms(percentile(values, 0.95))}, "
        f"max {ms(max(values))}"
    )


def report_joins(crowd: Crowd, joins: Joins, rate: float, verdicts: Verdicts) -> None:
    found = joins.credited
    print(
        f"-- 1. {crowd.links} personal links from createChatInviteLink (the emulator) in "
        f"{joins.links_made:.2f} s; {crowd.joins:,} joins through them over one minute of the "
        f"clock, {len(joins.repeats):,} of them told twice"
    )
    print(
        f"   all handled in       {joins.total:.2f} s = {crowd.joins / joins.total:,.0f} joins/s "
        f"({joins.total / TARGET_JOINS:.0%} of the minute)"
    )
    print(f"   each first join      {spread(joins.each)}")
    print(f"   each repeat          {spread(joins.repeats)}")
    fresh = joins.sample_updates * REPEAT_EVERY // (REPEAT_EVERY + REPEATS)
    in_sql = sum(s.seconds for s in joins.sample)
    print(
        f"   SQL of a join        in a sample of {joins.sample_updates} updates in the middle "
        f"(the bot's loops included): {len(joins.sample) / fresh:.1f} statements, "
        f"{ms(in_sql / fresh)} in SQL a join, of {ms(percentile(joins.each, 0.5))}; by kind:"
    )
    print("\n".join(sql_table(joins.sample, per=fresh, top=10)))
    plain = percentile(joins.plain, 0.5)
    print(
        f"   baselines            {len(joins.plain):,} joins without a link through the same "
        f"dispatcher: {spread(joins.plain)}; a join through a link costs "
        f"{percentile(joins.each, 0.5) / plain:.1f}x one without (p50); plain group messages "
        f"(part 2) {rate:,.0f}/s: a join through a link costs "
        f"{rate / (crowd.joins / joins.total):.0f} messages"
    )
    print(
        f"   credited             {found.referrals:,} referrals of {found.invitees:,} invitees, "
        f"{found.right_inviter:,} to their link's owner; joins on the links "
        f"{dict(found.link_joins)}; {found.other_links} other links; {found.members_joined:,} "
        f"members with their link, {found.join_events:,} member_joined events"
    )
    verdicts.add(
        f"{crowd.joins:,} joins through {crowd.links} links each credited once",
        found.exact(crowd),
        f"{found.referrals:,} referrals, {found.right_inviter:,} to the right inviter, "
        f"{len(joins.repeats):,} repeats credited 0 times, every link {crowd.per_link} joins: "
        f"{'yes' if found.link_joins == Counter({crowd.per_link: crowd.links}) else 'NO'}",
    )
    verdicts.add(
        f"{crowd.joins:,} joins within one minute",
        joins.total <= TARGET_JOINS,
        f"{joins.total:.1f} s, {crowd.joins / joins.total:,.0f} joins/s, p95 "
        f"{ms(percentile(joins.each, 0.95))} a join ({percentile(joins.each, 0.5) / plain:.1f}x "
        f"a join without a link, p50)",
    )


def report_qualification(
    crowd: Crowd, cap: int, act: Activity, q: Qualified, verdicts: Verdicts
) -> None:
    print(
        f"-- 2. activity: {act.messages:,} messages of the invitees through the dispatcher at "
        f"{act.rate:,.0f}/s; background bulk inserted: {act.background:,} messages of {OTHERS:,} "
        f"other members ({act.background * 2 // 3:,} from the first join to the sweep, the rest "
        f"in the {HISTORY_DAYS} days before)"
    )
    swept = q.sweep.swept
    print(
        f"-- 3. one sweep, 3 days after the joins (daily_cap {cap}): {swept.qualified:,} "
        f"qualified, {swept.capped:,} held by the cap, {swept.voided:,} voided, "
        f"{swept.reported} links reported quiet"
    )
    print(f"   took                 {q.sweep.seconds:.3f} s (target {TARGET_SWEEP:g} s)")
    print(
        f"   baselines            SELECT 1 {ms(q.select_one)} (the sweep: "
        f"{q.sweep.seconds / q.select_one:,.0f}x); one indexed scan counting each invitee's "
        f"messages since the joins {ms(q.scan)} (the sweep: {q.sweep.seconds / q.scan:.1f}x)"
    )
    in_sql = sum(s.seconds for s in q.sweep.statements)
    print(
        f"   its SQL              {len(q.sweep.statements)} statements, {ms(in_sql)} in SQL (the "
        f"rest, {ms(q.sweep.seconds - in_sql)}, in Python and waiting for turns); by kind:"
    )
    print("\n".join(sql_table(q.sweep.statements, top=10, origin=q.sweep.began)))
    for name, lines in q.plans.items():
        print(f"   plan of the {name} (EXPLAIN QUERY PLAN):")
        print("\n".join(f"     {line}" for line in lines))
    print(f"   referrals after      {states_line(q.states)}")
    right = crowd.per_link * 50
    paid = sum(q.balances[FIRST_INVITER + n] == right for n in range(crowd.links))
    print(
        f"   the SOP's work       all runs done {q.sop_seconds:.1f} s after the sweep began "
        f"({runs_line(q.runs)}); {q.ledger:,} ledger rows 'referral', {paid} of "
        f"{crowd.links} inviters at {right} points"
    )
    verdicts.add(
        f"one sweep qualifies {crowd.joins:,} referrals within {TARGET_SWEEP:g} s",
        swept.qualified == crowd.joins and q.sweep.seconds <= TARGET_SWEEP,
        f"{swept.qualified:,} qualified in {q.sweep.seconds:.3f} s "
        f"({q.sweep.seconds / q.scan:.1f}x the window's indexed scan, "
        f"{q.sweep.seconds / q.select_one:,.0f}x SELECT 1)",
    )
    verdicts.add(
        "each qualified referral rewarded once by referral.yaml",
        q.ledger == swept.qualified and paid == crowd.links and set(q.runs) <= {"done"},
        f"{q.ledger:,} ledger rows, {paid}/{crowd.links} inviters at {right}",
    )


def report_capped(crowd: Crowd, capped: Capped, verdicts: Verdicts) -> None:
    a, b = capped.first, capped.second
    print(
        "-- 4. the shipped referral.yaml (daily_cap 10) on a copy of the database as it was "
        "before part 3"
    )
    print(
        f"   first sweep          {a.seconds:.3f} s: {a.swept.qualified:,} qualified, "
        f"{a.swept.capped:,} held by the cap"
    )
    print(
        f"   a day later          {b.seconds:.3f} s: {b.swept.qualified:,} qualified, "
        f"{b.swept.capped:,} held; the most one inviter had on a day: {capped.most_a_day}; "
        f"{capped.ledger:,} ledger rows; SOP runs: {runs_line(capped.runs)}"
    )
    half = crowd.links * min(10, crowd.per_link)
    verdicts.add(
        "shipped rule: 10 a day per inviter, the rest the next day",
        a.swept.qualified == half
        and a.swept.capped == crowd.joins - half
        and a.swept.qualified + b.swept.qualified == crowd.joins
        and capped.most_a_day <= 10
        and capped.ledger == crowd.joins
        and set(capped.runs) <= {"done"},
        f"{a.swept.qualified:,} + {b.swept.qualified:,} over two days in {a.seconds:.3f} s and "
        f"{b.seconds:.3f} s",
    )


async def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--links", type=int, default=500)
    parser.add_argument("--per-link", type=int, default=20)
    parser.add_argument("--cap", type=int, default=20, help="daily_cap of the bench's rule")
    parser.add_argument("--background", type=int, default=200_000, help="messages in the window")
    parser.add_argument(
        "--plain", type=int, default=2000, help="joins without a link (the baseline), at least 1"
    )
    parser.add_argument("--no-shipped", action="store_true", help="skip part 4")
    args = parser.parse_args()
    if args.plain < 1 or args.links < 1 or args.per_link < 1:
        parser.error("--plain, --links and --per-link must be at least 1")
    if args.links * args.per_link > FIRST_OTHER - FIRST_INVITEE:
        parser.error(f"at most {FIRST_OTHER - FIRST_INVITEE:,} joins")

    from loguru import logger

    from bot.logs import setup_logging

    setup_logging("CRITICAL")
    logger.add(ERRORS, level="ERROR", format="{message}")
    crowd = Crowd(args.links, args.per_link)
    verdicts = Verdicts()
    print(
        f"invites: {crowd.joins:,} joins through {crowd.links} links, then their qualification "
        "(the whole bot as tidepool run builds it; emulator; SteppedClock; SQLite)"
    )
    began = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        clock = SteppedClock(START - timedelta(minutes=5))
        async with EmulatorServer(token=TOKEN) as server:
            seed_chats(server, [(CHAT_ID, TITLE)])
            async with running(
                server,
                folder / "main",
                clock,
                sops={"referral": referral_sop(args.cap)},
                groups=[(CHAT_ID, TITLE)],
                group_columns={"bot_status": "administrator"},
                prefill=lambda db: seed(db, crowd),
                timezone="UTC",
            ) as app:
                joins = await links_and_joins(app, server, clock, crowd, args.plain)
                sweep_at = START + JOIN_SPAN + timedelta(days=3, minutes=10)
                act = await activity(app, clock, crowd, args.background, START, sweep_at)
                copied_at = clock.now()
                await asyncio.to_thread(
                    copy_database, folder / "main" / "bench.db", folder / "shipped" / "bench.db"
                )
                q = await qualification(app, clock, crowd, sweep_at)
            errors = ERRORS.take()
            capped = None
            if not args.no_shipped:
                capped = await shipped_rule(server, folder / "shipped", crowd, copied_at, sweep_at)
    report_joins(crowd, joins, act.rate, verdicts)
    report_qualification(crowd, args.cap, act, q, verdicts)
    if capped is not None:
        report_capped(crowd, capped, verdicts)
    print(
        f"summary ({time.perf_counter() - began:.0f} s; peak RSS {peak_rss():,.0f} MiB; errors "
        f"logged: {errors}; in part 4: {ERRORS.take()}):"
    )
    print("\n".join(verdicts.lines))


if __name__ == "__main__":
    asyncio.run(main())
