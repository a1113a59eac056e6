"""Groups, their members and members' tags, and the people who started the bot in private."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import JSON, Table
from sqlmodel import Field, SQLModel

from ._columns import ChatId, UTCDateTime, id_key, utcnow


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


class Group(SQLModel, table=True):
    """A group or supergroup the bot has been in; `id` is Telegram's chat id."""

    __tablename__ = "groups"

    id: int = id_key()
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

    chat_id: int = id_key()
    user_id: int = id_key()
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


class MemberTag(SQLModel, table=True):
    """A tag on a member in one group (`newcomer`, `vip`), set by SOPs or admins."""

    __tablename__ = "member_tags"

    chat_id: int = id_key()
    user_id: int = id_key()
    tag: str = Field(primary_key=True)
    source: str = ""
    added_at: datetime = Field(sa_type=UTCDateTime)


class BotUser(SQLModel, table=True):
    """A person who started the bot in private, so it may write to them (until blocked)."""

    __tablename__ = "bot_users"

    user_id: int = id_key()
    started_at: datetime = Field(sa_type=UTCDateTime)
    blocked_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


# The tables as SQLAlchemy Core sees them, for bulk writes and exports.
GROUPS: Table = Group.__table__  # type: ignore[attr-defined]
MEMBERS: Table = Member.__table__  # type: ignore[attr-defined]
MEMBER_TAGS: Table = MemberTag.__table__  # type: ignore[attr-defined]
BOT_USERS: Table = BotUser.__table__  # type: ignore[attr-defined]
