"""Database access: engine, sessions, migrations and the tables."""

from bot.db.engine import (
    create_engine,
    current_revision,
    insert_for,
    session_factory,
    upgrade,
)
from bot.db.models import (
    DELIVERIES,
    EVENTS,
    GROUPS,
    MEMBERS,
    Delivery,
    DeliveryStatus,
    Event,
    EventType,
    Group,
    GroupStatus,
    Member,
    MemberStatus,
    UTCDateTime,
    utcnow,
)

__all__ = [
    "DELIVERIES",
    "EVENTS",
    "GROUPS",
    "MEMBERS",
    "Delivery",
    "DeliveryStatus",
    "Event",
    "EventType",
    "Group",
    "GroupStatus",
    "Member",
    "MemberStatus",
    "UTCDateTime",
    "create_engine",
    "current_revision",
    "insert_for",
    "session_factory",
    "upgrade",
    "utcnow",
]
