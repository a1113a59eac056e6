"""Tables: groups, members, the activity log, what the bot sent, and the SOP engine's state."""

from __future__ import annotations

from datetime import UTC, date, datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    CheckConstraint,
    DateTime,
    Index,
    Integer,
    Table,
    UniqueConstraint,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator
from sqlmodel import Field, SQLModel


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware datetimes stored as UTC; SQLite gets naive UTC, PostgreSQL timestamptz."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is not UTC:  # aiogram's dates are already UTC: the common case is cheap
            if value.tzinfo is None:
                raise ValueError("naive datetime given to a UTC column")
            value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


ChatId = BigInteger
EventId = BigInteger().with_variant(Integer(), "sqlite")


def utcnow() -> datetime:
    """The current time, timezone-aware, in UTC."""
    return datetime.now(UTC)


class GroupStatus(StrEnum):
    """Whether the bot is in a group."""

    ACTIVE = "active"
    LEFT = "left"
    KICKED = "kicked"
    MIGRATED = "migrated"


class MemberStatus(StrEnum):
    """A member's standing in a group, as Telegram reports it."""

    CREATOR = "creator"
    ADMINISTRATOR = "administrator"
    MEMBER = "member"
    RESTRICTED = "restricted"
    LEFT = "left"
    KICKED = "kicked"

    @property
    def is_present(self) -> bool:
        return self in PRESENT


PRESENT = frozenset(
    {MemberStatus.CREATOR, MemberStatus.ADMINISTRATOR, MemberStatus.MEMBER, MemberStatus.RESTRICTED}
)


class EventType(StrEnum):
    """What an event in the activity log records."""

    MESSAGE = "message"
    COMMAND = "command"
    BOT_MESSAGE = "bot_message"
    CALLBACK = "callback"
    MEMBER_JOINED = "member_joined"
    MEMBER_LEFT = "member_left"
    MEMBER_KICKED = "member_kicked"
    BOT_ADDED = "bot_added"
    BOT_PROMOTED = "bot_promoted"
    BOT_DEMOTED = "bot_demoted"
    BOT_LEFT = "bot_left"
    BOT_KICKED = "bot_kicked"
    GROUP_MIGRATED = "group_migrated"
    SOP_SENT = "sop_sent"
    EMITTED = "emitted"
    LOTTERY_ENTERED = "lottery_entered"
    LIVE_SUBSCRIBED = "live_subscribed"  # a member asked for a private reminder of a live
    LIVE_CLICKED = "live_clicked"  # a member opened a live's link through the bot


class DeliveryStatus(StrEnum):
    """How a delivery ended."""

    SENT = "sent"
    FAILED = "failed"


class Group(SQLModel, table=True):
    """A group or supergroup the bot has been in; `id` is Telegram's chat id."""

    __tablename__ = "groups"

    id: int = Field(sa_type=ChatId, primary_key=True, sa_column_kwargs={"autoincrement": False})
    title: str = ""
    type: str = "supergroup"
    username: str | None = None
    status: str = Field(default=GroupStatus.ACTIVE, index=True)
    bot_status: str | None = None
    timezone: str | None = None
    language: str | None = None
    tags: list[str] = Field(default_factory=list, sa_type=JSON)
    quiet_hours: str | None = None  # "22:00-08:00", "off"; None: the QUIET_HOURS setting
    daily_cap: int | None = None  # bot-initiated messages a day, 0: no cap; None: DAILY_CAP
    missing_rights: list[str] = Field(default_factory=list, sa_type=JSON)
    migrated_from_id: int | None = Field(default=None, sa_type=ChatId)
    migrated_to_id: int | None = Field(default=None, sa_type=ChatId)
    first_seen_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class Member(SQLModel, table=True):
    """A user's membership of one group, with joins, leaves and activity totals."""

    __tablename__ = "members"

    chat_id: int = Field(
        sa_type=ChatId, primary_key=True, sa_column_kwargs={"autoincrement": False}
    )
    user_id: int = Field(
        sa_type=ChatId, primary_key=True, sa_column_kwargs={"autoincrement": False}
    )
    first_name: str = ""
    last_name: str | None = None
    username: str | None = None
    is_bot: bool = False
    status: str = MemberStatus.MEMBER
    joined_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    left_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    invite_link: str | None = None
    first_activity_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    last_activity_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    message_count: int = 0
    tier: str = Field(default="new", sa_column_kwargs={"server_default": "new", "default": None})


class Event(SQLModel, table=True):
    """One thing that happened in a group. Rows are only ever appended.

    The log is written thousands of rows a second, so it carries one index, on time, which
    grows at its end like the primary key. Readers go by `id` (incremental rollups) or by a
    time window; an index per chat or member cost four to eight times as much per write.
    """

    __tablename__ = "events"
    __table_args__ = (Index("ix_events_at", "at"),)

    id: int | None = Field(default=None, sa_type=EventId, primary_key=True)
    chat_id: int = Field(sa_type=ChatId)
    user_id: int | None = Field(default=None, sa_type=ChatId)
    at: datetime = Field(sa_type=UTCDateTime)
    type: str
    kind: str | None = None
    message_id: int | None = None
    text_length: int | None = None
    is_reply: bool = False
    is_forward: bool = False
    text: str | None = None
    data: dict[str, Any] | None = Field(default=None, sa_type=JSON)


class Delivery(SQLModel, table=True):
    """One message the bot sent (or edited, deleted, pinned), or failed to, and who asked.

    Rows are appended in batches once a delivery is over. `chat_id` is where it went in the
    end (a group may have become a supergroup meanwhile); `sent_at` is empty for failures.
    """

    __tablename__ = "deliveries"

    id: int | None = Field(default=None, sa_type=EventId, primary_key=True)
    chat_id: int = Field(sa_type=ChatId)
    requested_chat_id: int = Field(sa_type=ChatId)
    method: str
    source: str
    status: str
    error: str | None = None
    message_id: int | None = None
    attempts: int = 0
    queued_at: datetime = Field(sa_type=UTCDateTime)
    sent_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


class RunStatus(StrEnum):
    """Where an SOP run is in its life."""

    SCHEDULED = "scheduled"  # runs its current step at `wake_at`
    WAITING = "waiting"  # inside a wait step: finishes it at `wake_at` or on `wait_event`
    RUNNING = "running"  # a step is being executed
    SENDING = "sending"  # a send step was claimed; its outcome is not recorded yet
    QUEUED = "queued"  # mode `queued`: starts when the run before it ends
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"
    SKIPPED = "skipped"  # came due while the bot was down, beyond the SOP's catch-up grace

    @property
    def is_over(self) -> bool:
        return self in OVER


OVER = frozenset({RunStatus.DONE, RunStatus.FAILED, RunStatus.CANCELLED, RunStatus.SKIPPED})
LIVE = frozenset({RunStatus.SCHEDULED, RunStatus.WAITING, RunStatus.RUNNING, RunStatus.SENDING})


class SopRun(SQLModel, table=True):
    """One run of an SOP for a member (or a whole group): its position, variables and status.

    `position` is the path of the current step (`3`, `3.then.0`); `seq` counts the steps the
    run has begun, and `sop_steps` has one row per begun step keyed by (run, seq), so a step
    is never begun twice. Runs started by one trigger together (joins within a minute, a daily
    digest) share a `batch` and send their shared message once.
    """

    __tablename__ = "sop_runs"
    __table_args__ = (
        Index("ix_sop_runs_due", "status", "wake_at"),
        Index("ix_sop_runs_who", "sop_id", "chat_id", "user_id"),
    )

    id: int | None = Field(default=None, sa_type=EventId, primary_key=True)
    sop_id: str
    chat_id: int = Field(sa_type=ChatId)
    user_id: int | None = Field(default=None, sa_type=ChatId)
    status: str
    position: str = "0"
    seq: int = 0
    variables: dict[str, Any] = Field(default_factory=dict, sa_type=JSON)
    batch: str | None = None
    trigger: str
    sop_digest: str = ""
    wake_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    wait_event: str | None = None
    error: str | None = None
    created_at: datetime = Field(sa_type=UTCDateTime)
    updated_at: datetime = Field(sa_type=UTCDateTime)
    finished_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


class SopStep(SQLModel, table=True):
    """A step a run began: claimed before it acts, so a restart never repeats it."""

    __tablename__ = "sop_steps"

    run_id: int = Field(
        sa_type=EventId, primary_key=True, sa_column_kwargs={"autoincrement": False}
    )
    seq: int = Field(primary_key=True, sa_column_kwargs={"autoincrement": False})
    step: str
    action: str
    status: str  # started, done, failed, interrupted, disabled
    variant: str | None = None
    chat_id: int | None = Field(default=None, sa_type=ChatId)
    message_id: int | None = None
    error: str | None = None
    started_at: datetime = Field(sa_type=UTCDateTime)
    finished_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


class SopGroupSetting(SQLModel, table=True):
    """An SOP switched on or off in one group by an admin (`/sop_on`, `/sop_off`)."""

    __tablename__ = "sop_group_settings"

    sop_id: str = Field(primary_key=True)
    chat_id: int = Field(
        sa_type=ChatId, primary_key=True, sa_column_kwargs={"autoincrement": False}
    )
    enabled: bool
    changed_by: int | None = Field(default=None, sa_type=ChatId)
    changed_at: datetime = Field(sa_type=UTCDateTime)


class MemberTag(SQLModel, table=True):
    """A tag on a member in one group (`newcomer`, `vip`), set by SOPs or admins."""

    __tablename__ = "member_tags"

    chat_id: int = Field(
        sa_type=ChatId, primary_key=True, sa_column_kwargs={"autoincrement": False}
    )
    user_id: int = Field(
        sa_type=ChatId, primary_key=True, sa_column_kwargs={"autoincrement": False}
    )
    tag: str = Field(primary_key=True)
    source: str = ""
    added_at: datetime = Field(sa_type=UTCDateTime)


class PointsEntry(SQLModel, table=True):
    """One change of a member's points, with its reason. Rows are only ever appended."""

    __tablename__ = "points_ledger"
    __table_args__ = (Index("ix_points_ledger_member", "chat_id", "user_id"),)

    id: int | None = Field(default=None, sa_type=EventId, primary_key=True)
    chat_id: int = Field(sa_type=ChatId)
    user_id: int = Field(sa_type=ChatId)
    delta: int
    reason: str
    source: str
    at: datetime = Field(sa_type=UTCDateTime)


class PointsBalance(SQLModel, table=True):
    """A member's points in a group: the sum of their ledger rows, kept with every change.

    Spending checks and moves the balance in one conditional UPDATE, so two spends at once can
    never both pass, and the check constraint keeps it from going below zero whatever happens.
    """

    __tablename__ = "points_balances"
    __table_args__ = (CheckConstraint("balance >= 0", name="ck_points_balances_not_negative"),)

    chat_id: int = Field(
        sa_type=ChatId, primary_key=True, sa_column_kwargs={"autoincrement": False}
    )
    user_id: int = Field(
        sa_type=ChatId, primary_key=True, sa_column_kwargs={"autoincrement": False}
    )
    balance: int = 0
    updated_at: datetime = Field(sa_type=UTCDateTime)


class Checkin(SQLModel, table=True):
    """A member's check-in in a group for one day (the group's day, see bot.checkin.days).

    The unique key is what makes a double tap count once. The latest row of a member holds
    their streak, so the next check-in reads one row."""

    __tablename__ = "checkins"
    __table_args__ = (
        UniqueConstraint("chat_id", "user_id", "day", name="uq_checkins_member_day"),
        Index("ix_checkins_group_day", "chat_id", "day"),
    )

    id: int | None = Field(default=None, sa_type=EventId, primary_key=True)
    chat_id: int = Field(sa_type=ChatId)
    user_id: int = Field(sa_type=ChatId)
    day: date
    at: datetime = Field(sa_type=UTCDateTime)
    streak: int  # check-in days in a row, this one included
    frozen: int = 0  # missed days of this day's month that the streak got over
    points: int = 0  # credited for it, streak bonus included
    run_id: int | None = Field(default=None, sa_type=EventId)  # the SOP run that made it


class OrderStatus(StrEnum):
    """Where a reward order stands."""

    OPEN = "open"
    FULFILLED = "fulfilled"
    CANCELLED = "cancelled"


class RewardStock(SQLModel, table=True):
    """How many of a reward (from the catalogue in content/) are taken by orders not cancelled.

    The catalogue says the stock; taking one is a conditional UPDATE of `taken`, so two members
    redeeming the last one at once cannot both get it, and raising the stock in the file simply
    makes more available."""

    __tablename__ = "reward_stock"
    __table_args__ = (CheckConstraint("taken >= 0", name="ck_reward_stock_not_negative"),)

    reward_id: str = Field(primary_key=True)
    taken: int = 0


class Order(SQLModel, table=True):
    """A member's redemption of a reward: points spent, waiting for an admin to hand it over."""

    __tablename__ = "orders"
    __table_args__ = (
        Index("ix_orders_group_status", "chat_id", "status"),
        Index("ix_orders_reward_member", "reward_id", "user_id"),
    )

    id: int | None = Field(default=None, sa_type=EventId, primary_key=True)
    chat_id: int = Field(sa_type=ChatId)
    user_id: int = Field(sa_type=ChatId)
    reward_id: str
    reward_name: str  # as the catalogue named it when ordered
    cost: int
    status: str = OrderStatus.OPEN
    created_at: datetime = Field(sa_type=UTCDateTime)
    closed_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    closed_by: int | None = Field(default=None, sa_type=ChatId)  # the admin who closed it


class LotteryStatus(StrEnum):
    """Where a lottery is in its life."""

    OPEN = "open"  # taking entries until `draws_at`
    DRAWN = "drawn"
    CANCELLED = "cancelled"


class PickOutcome(StrEnum):
    """What became of one pick of a lottery's draw (see bot.lottery.draw)."""

    WON = "won"
    REPLACED = "replaced"  # a winner replaced by a reroll
    SKIPPED = "skipped"  # picked by a reroll but no longer eligible (left the group)


class Lottery(SQLModel, table=True):
    """A lottery in a group: its prize, rules, the committed seed, and how it ended.

    `seed` stays secret until the draw; `commitment` (its SHA-256) is published when the
    lottery opens, so the draw can be checked against it afterwards. `entry_count` is kept with
    every entry, in the transaction that adds it, so the cap holds when members press at once.
    """

    __tablename__ = "lotteries"
    __table_args__ = (Index("ix_lotteries_due", "status", "draws_at"),)

    id: int | None = Field(default=None, sa_type=EventId, primary_key=True)
    chat_id: int = Field(sa_type=ChatId, index=True)
    prize: str
    winners: int
    status: str = LotteryStatus.OPEN
    rules: dict[str, Any] = Field(default_factory=dict, sa_type=JSON)
    entry_cost: int = 0
    max_entries: int | None = None
    entry_count: int = 0
    claim: str = ""  # how winners claim the prize; empty: the default text
    seed: str
    commitment: str
    source: str  # command:<user id>, sop:<id>
    created_by: int | None = Field(default=None, sa_type=ChatId)
    run_id: int | None = Field(default=None, sa_type=EventId)  # the SOP run that opened it
    created_at: datetime = Field(sa_type=UTCDateTime)
    draws_at: datetime = Field(sa_type=UTCDateTime)
    message_id: int | None = None  # the post with the Enter button
    drawn_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    entrants: int | None = None  # eligible entrants at the draw
    entrants_digest: str | None = None
    announced_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    announcement_id: int | None = None
    closed_by: int | None = Field(default=None, sa_type=ChatId)  # who drew early or cancelled


class LotteryEntry(SQLModel, table=True):
    """A member's entry to a lottery: one per member, by the primary key.

    `in_draw` is empty until the draw, then says whether the entry was in the drawn list;
    `out_reason` says why not (the member left the group)."""

    __tablename__ = "lottery_entries"

    lottery_id: int = Field(
        sa_type=EventId, primary_key=True, sa_column_kwargs={"autoincrement": False}
    )
    user_id: int = Field(
        sa_type=ChatId, primary_key=True, sa_column_kwargs={"autoincrement": False}
    )
    entered_at: datetime = Field(sa_type=UTCDateTime)
    cost: int = 0
    in_draw: bool | None = None
    out_reason: str | None = None


class LotteryPick(SQLModel, table=True):
    """One pick of a lottery's draw, in order: the winners, then each reroll's picks."""

    __tablename__ = "lottery_picks"

    lottery_id: int = Field(
        sa_type=EventId, primary_key=True, sa_column_kwargs={"autoincrement": False}
    )
    pick: int = Field(primary_key=True, sa_column_kwargs={"autoincrement": False})
    user_id: int = Field(sa_type=ChatId)
    outcome: str
    reason: str | None = None  # why replaced or skipped
    at: datetime = Field(sa_type=UTCDateTime)
    by: int | None = Field(default=None, sa_type=ChatId)  # the admin who rerolled
    replaces: int | None = None  # the pick a reroll's winner replaces


class ScheduledDeletion(SQLModel, table=True):
    """A message the bot sent that it deletes at `due_at` (kept tidy, survives restarts)."""

    __tablename__ = "scheduled_deletions"

    id: int | None = Field(default=None, sa_type=EventId, primary_key=True)
    chat_id: int = Field(sa_type=ChatId)
    message_id: int
    source: str
    due_at: datetime = Field(sa_type=UTCDateTime, index=True)


class PushStatus(StrEnum):
    """Where a queued push (a broadcast's message, a live's announcement or reminder) is."""

    PENDING = "pending"  # waiting for `due_at` (maybe moved on by quiet hours or the cap)
    QUEUED = "queued"  # handed to the delivery service, which has not tried it yet
    SENDING = "sending"  # Telegram was asked; after a crash it may have arrived
    SENT = "sent"
    FAILED = "failed"
    DROPPED = "dropped"  # not sent on purpose: over the daily cap, or too late
    CANCELLED = "cancelled"


class PushKind(StrEnum):
    """What a push sends; live pushes are rendered when they go, from the live as it is then."""

    TEXT = "text"  # `text` as stored (a broadcast, an SOP's broadcast step)
    LIVE_ANNOUNCE = "live_announce"
    LIVE_REMINDER = "live_reminder"
    LIVE_PRIVATE = "live_private"  # a subscriber's private reminder
    LIVE_UNPIN = "live_unpin"  # unpin the announcement once the live is over


class Broadcast(SQLModel, table=True):
    """A message pushed to many groups at once; its pushes say how far it got in each."""

    __tablename__ = "broadcasts"

    id: int | None = Field(default=None, sa_type=EventId, primary_key=True)
    template: str | None = None  # the text key, or None for a text given as is
    text: str | None = None  # the text given as is (HTML)
    target: str  # "all", or "tags:a,b", or "ids:-100…,-100…"
    urgent: bool = False  # sent in quiet hours and over the daily cap
    over_cap: str = "postpone"  # postpone | drop
    pin: bool = False
    source: str  # cli, command:<user id>
    created_by: int | None = Field(default=None, sa_type=ChatId)
    created_at: datetime = Field(sa_type=UTCDateTime)
    confirmed_at: datetime | None = Field(default=None, sa_type=UTCDateTime)  # None: a draft
    groups: int = 0  # pushes created when confirmed


class Push(SQLModel, table=True):
    """One message the bot starts on its own, queued so that it goes once, when allowed.

    `key` makes it unique (a broadcast reaches a group once; a live's reminder at one offset
    once). The queue claims due pushes (status `sending`) before handing them to the delivery
    service, so a restart never sends one twice; `group_id` is the group whose quiet hours and
    daily cap apply (the live's group for a private reminder).
    """

    __tablename__ = "pushes"
    __table_args__ = (
        Index("ix_pushes_due", "status", "due_at"),
        Index("ix_pushes_group_claimed", "group_id", "claimed_at"),
    )

    id: int | None = Field(default=None, sa_type=EventId, primary_key=True)
    key: str = Field(unique=True)
    kind: str
    chat_id: int = Field(sa_type=ChatId)  # where it goes
    group_id: int = Field(sa_type=ChatId)
    broadcast_id: int | None = Field(default=None, sa_type=EventId, index=True)
    live_id: int | None = Field(default=None, sa_type=EventId, index=True)
    before: str | None = None  # a live reminder: how long before the start (1d, 1h, 10m, 0s)
    text: str | None = None
    markup: dict[str, Any] | None = Field(default=None, sa_type=JSON)
    pin: bool = False
    urgent: bool = False
    over_cap: str = "postpone"
    counts: bool = True  # counts toward the group's daily cap
    source: str
    status: str = PushStatus.PENDING
    planned_at: datetime = Field(sa_type=UTCDateTime)  # when it was meant to go
    due_at: datetime = Field(sa_type=UTCDateTime)  # when it may go (later when postponed)
    expires_at: datetime | None = Field(default=None, sa_type=UTCDateTime)  # dropped after
    note: str | None = None  # why postponed, dropped or failed
    attempts: int = 0
    message_id: int | None = None
    created_at: datetime = Field(sa_type=UTCDateTime)
    claimed_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    sent_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


class LiveStatus(StrEnum):
    SCHEDULED = "scheduled"
    CANCELLED = "cancelled"


class Live(SQLModel, table=True):
    """A live-stream session in a group: its announcement (pinned until it ends) and reminders.

    `revision` goes up when the live moves; reminders carry it in their key, so the moved
    live gets a fresh set and the old pending ones are cancelled."""

    __tablename__ = "lives"
    __table_args__ = (Index("ix_lives_group_starts", "chat_id", "starts_at"),)

    id: int | None = Field(default=None, sa_type=EventId, primary_key=True)
    key: str | None = Field(default=None, unique=True)  # an SOP step's run and step
    chat_id: int = Field(sa_type=ChatId)
    title: str
    host: str = ""
    url: str | None = None
    timezone: str  # the wall clock of its start and day-long reminder offsets
    starts_at: datetime = Field(sa_type=UTCDateTime)
    ends_at: datetime = Field(sa_type=UTCDateTime)
    reminders: list[str] = Field(default_factory=list, sa_type=JSON)  # offsets: 1d, 1h, 0s
    pin: bool = True
    status: str = LiveStatus.SCHEDULED
    revision: int = 0
    message_id: int | None = None  # the announcement
    source: str  # command:<user id>, sop:<id>
    created_by: int | None = Field(default=None, sa_type=ChatId)
    created_at: datetime = Field(sa_type=UTCDateTime)


class LiveSubscription(SQLModel, table=True):
    """A member who pressed "Remind me": they get the live's reminders privately too."""

    __tablename__ = "live_subscriptions"

    live_id: int = Field(
        sa_type=EventId, primary_key=True, sa_column_kwargs={"autoincrement": False}
    )
    user_id: int = Field(
        sa_type=ChatId, primary_key=True, sa_column_kwargs={"autoincrement": False}
    )
    at: datetime = Field(sa_type=UTCDateTime)


class BotUser(SQLModel, table=True):
    """A person who started the bot in private, so it may write to them (until blocked)."""

    __tablename__ = "bot_users"

    user_id: int = Field(
        sa_type=ChatId, primary_key=True, sa_column_kwargs={"autoincrement": False}
    )
    started_at: datetime = Field(sa_type=UTCDateTime)
    blocked_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


class Rotation(SQLModel, table=True):
    """How far a group is through a list of content items (the daily tip): the next to send."""

    __tablename__ = "rotations"

    chat_id: int = Field(
        sa_type=ChatId, primary_key=True, sa_column_kwargs={"autoincrement": False}
    )
    name: str = Field(primary_key=True)
    position: int = 0


class GroupDay(SQLModel, table=True):
    """A group's totals for one day of its own calendar, kept up to date from the events."""

    __tablename__ = "group_days"

    chat_id: int = Field(
        sa_type=ChatId, primary_key=True, sa_column_kwargs={"autoincrement": False}
    )
    day: date = Field(primary_key=True)
    messages: int = 0
    joins: int = 0
    leaves: int = 0
    presses: int = 0
    lottery_entries: int = 0
    live_subscriptions: int = 0
    live_clicks: int = 0


class MemberDay(SQLModel, table=True):
    """A member's activity in a group on one day of the group's calendar (messages, presses)."""

    __tablename__ = "member_days"
    # Covering: a window's rows of a group are read from the index alone.
    __table_args__ = (
        Index("ix_member_days_group_day", "chat_id", "day", "user_id", "messages", "presses"),
    )

    chat_id: int = Field(
        sa_type=ChatId, primary_key=True, sa_column_kwargs={"autoincrement": False}
    )
    user_id: int = Field(
        sa_type=ChatId, primary_key=True, sa_column_kwargs={"autoincrement": False}
    )
    day: date = Field(primary_key=True)
    messages: int = 0
    presses: int = 0


class GroupHour(SQLModel, table=True):
    """Messages in a group per hour of a day of its calendar: the hour-of-week heatmap."""

    __tablename__ = "group_hours"

    chat_id: int = Field(
        sa_type=ChatId, primary_key=True, sa_column_kwargs={"autoincrement": False}
    )
    day: date = Field(primary_key=True)
    hour: int = Field(primary_key=True, sa_column_kwargs={"autoincrement": False})
    messages: int = 0


class SopSend(SQLModel, table=True):
    """A message an SOP sent to one member, and when the member first answered it (wrote in
    the group or pressed a button there) within the response window."""

    __tablename__ = "sop_sends"
    __table_args__ = (Index("ix_sop_sends_group_sent", "chat_id", "sent_at"),)

    id: int | None = Field(default=None, sa_type=EventId, primary_key=True)
    chat_id: int = Field(sa_type=ChatId)
    user_id: int = Field(sa_type=ChatId)
    sop: str
    step: str
    variant: str | None = None
    sent_at: datetime = Field(sa_type=UTCDateTime)
    responded_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


class RollupState(SQLModel, table=True):
    """How far the rollups have read the events: the id of the last event counted."""

    __tablename__ = "rollup_state"

    name: str = Field(primary_key=True)
    position: int = Field(default=0, sa_type=EventId)


class TierChange(SQLModel, table=True):
    """A member's move from one tier to another, on the day the daily computation saw it."""

    __tablename__ = "tier_changes"
    __table_args__ = (Index("ix_tier_changes_group_at", "chat_id", "at"),)

    id: int | None = Field(default=None, sa_type=EventId, primary_key=True)
    chat_id: int = Field(sa_type=ChatId)
    user_id: int = Field(sa_type=ChatId)
    old: str
    new: str
    at: datetime = Field(sa_type=UTCDateTime)


class GroupCheck(SQLModel, table=True):
    """The last day whose daily work (tiers, health, alerts) is done for a group."""

    __tablename__ = "group_checks"

    chat_id: int = Field(
        sa_type=ChatId, primary_key=True, sa_column_kwargs={"autoincrement": False}
    )
    day: date


class HealthScore(SQLModel, table=True):
    """A group's health score for the 7 days ending on `day`, as the daily job computed it."""

    __tablename__ = "health_scores"

    chat_id: int = Field(
        sa_type=ChatId, primary_key=True, sa_column_kwargs={"autoincrement": False}
    )
    day: date = Field(primary_key=True)
    score: int
    parts: dict[str, Any] = Field(default_factory=dict, sa_type=JSON)


class HealthAlert(SQLModel, table=True):
    """An alert raised for a group, once per kind and period (a week, a silent spell)."""

    __tablename__ = "health_alerts"

    chat_id: int = Field(
        sa_type=ChatId, primary_key=True, sa_column_kwargs={"autoincrement": False}
    )
    kind: str = Field(primary_key=True)  # drop | silent
    period: str = Field(primary_key=True)  # 2026-W47, or the day the silence began
    at: datetime = Field(sa_type=UTCDateTime)
    detail: dict[str, Any] = Field(default_factory=dict, sa_type=JSON)


# The tables as SQLAlchemy Core sees them, for bulk writes and exports.
GROUPS: Table = Group.__table__  # type: ignore[attr-defined]
MEMBERS: Table = Member.__table__  # type: ignore[attr-defined]
EVENTS: Table = Event.__table__  # type: ignore[attr-defined]
DELIVERIES: Table = Delivery.__table__  # type: ignore[attr-defined]
SOP_RUNS: Table = SopRun.__table__  # type: ignore[attr-defined]
SOP_STEPS: Table = SopStep.__table__  # type: ignore[attr-defined]
SOP_GROUP_SETTINGS: Table = SopGroupSetting.__table__  # type: ignore[attr-defined]
MEMBER_TAGS: Table = MemberTag.__table__  # type: ignore[attr-defined]
POINTS: Table = PointsEntry.__table__  # type: ignore[attr-defined]
SCHEDULED_DELETIONS: Table = ScheduledDeletion.__table__  # type: ignore[attr-defined]
CHECKINS: Table = Checkin.__table__  # type: ignore[attr-defined]
REWARD_STOCK: Table = RewardStock.__table__  # type: ignore[attr-defined]
ORDERS: Table = Order.__table__  # type: ignore[attr-defined]
BALANCES: Table = PointsBalance.__table__  # type: ignore[attr-defined]
LOTTERIES: Table = Lottery.__table__  # type: ignore[attr-defined]
LOTTERY_ENTRIES: Table = LotteryEntry.__table__  # type: ignore[attr-defined]
LOTTERY_PICKS: Table = LotteryPick.__table__  # type: ignore[attr-defined]
BROADCASTS: Table = Broadcast.__table__  # type: ignore[attr-defined]
PUSHES: Table = Push.__table__  # type: ignore[attr-defined]
LIVES: Table = Live.__table__  # type: ignore[attr-defined]
LIVE_SUBSCRIPTIONS: Table = LiveSubscription.__table__  # type: ignore[attr-defined]
BOT_USERS: Table = BotUser.__table__  # type: ignore[attr-defined]
ROTATIONS: Table = Rotation.__table__  # type: ignore[attr-defined]
GROUP_DAYS: Table = GroupDay.__table__  # type: ignore[attr-defined]
MEMBER_DAYS: Table = MemberDay.__table__  # type: ignore[attr-defined]
GROUP_HOURS: Table = GroupHour.__table__  # type: ignore[attr-defined]
SOP_SENDS: Table = SopSend.__table__  # type: ignore[attr-defined]
ROLLUP_STATE: Table = RollupState.__table__  # type: ignore[attr-defined]
TIER_CHANGES: Table = TierChange.__table__  # type: ignore[attr-defined]
GROUP_CHECKS: Table = GroupCheck.__table__  # type: ignore[attr-defined]
HEALTH_ALERTS: Table = HealthAlert.__table__  # type: ignore[attr-defined]
HEALTH_SCORES: Table = HealthScore.__table__  # type: ignore[attr-defined]
