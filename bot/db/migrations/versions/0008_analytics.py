"""rollups of the events, SOP sends and answers, tier changes, daily group checks, health alerts

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-23 23:25:20.962766
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "health_scores",
        sa.Column("chat_id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("score", sa.Integer(), nullable=False),
        sa.Column("parts", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("chat_id", "day"),
    )
    op.create_table(
        "group_checks",
        sa.Column("chat_id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.PrimaryKeyConstraint("chat_id"),
    )
    op.create_table(
        "group_days",
        sa.Column("chat_id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("messages", sa.Integer(), nullable=False),
        sa.Column("joins", sa.Integer(), nullable=False),
        sa.Column("leaves", sa.Integer(), nullable=False),
        sa.Column("presses", sa.Integer(), nullable=False),
        sa.Column("lottery_entries", sa.Integer(), nullable=False),
        sa.Column("live_subscriptions", sa.Integer(), nullable=False),
        sa.Column("live_clicks", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("chat_id", "day"),
    )
    op.create_table(
        "group_hours",
        sa.Column("chat_id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("hour", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("messages", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("chat_id", "day", "hour"),
    )
    op.create_table(
        "health_alerts",
        sa.Column("chat_id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("kind", sa.String(), nullable=False),
        sa.Column("period", sa.String(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("detail", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("chat_id", "kind", "period"),
    )
    op.create_table(
        "member_days",
        sa.Column("chat_id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("user_id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("messages", sa.Integer(), nullable=False),
        sa.Column("presses", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("chat_id", "user_id", "day"),
    )
    with op.batch_alter_table("member_days", schema=None) as batch_op:
        batch_op.create_index(
            "ix_member_days_group_day",
            ["chat_id", "day", "user_id", "messages", "presses"],
            unique=False,
        )

    op.create_table(
        "rollup_state",
        sa.Column("name", sa.String(), nullable=False),
        sa.Column("position", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.PrimaryKeyConstraint("name"),
    )
    op.create_table(
        "sop_sends",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("chat_id", sa.BigInteger(), nullable=False),
        sa.Column("user_id", sa.BigInteger(), nullable=False),
        sa.Column("sop", sa.String(), nullable=False),
        sa.Column("step", sa.String(), nullable=False),
        sa.Column("variant", sa.String(), nullable=True),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("responded_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("sop_sends", schema=None) as batch_op:
        batch_op.create_index("ix_sop_sends_group_sent", ["chat_id", "sent_at"], unique=False)

    op.create_table(
        "tier_changes",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("chat_id", sa.BigInteger(), nullable=False),
        sa.Column("user_id", sa.BigInteger(), nullable=False),
        sa.Column("old", sa.String(), nullable=False),
        sa.Column("new", sa.String(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("tier_changes", schema=None) as batch_op:
        batch_op.create_index("ix_tier_changes_group_at", ["chat_id", "at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("tier_changes", schema=None) as batch_op:
        batch_op.drop_index("ix_tier_changes_group_at")

    op.drop_table("tier_changes")
    with op.batch_alter_table("sop_sends", schema=None) as batch_op:
        batch_op.drop_index("ix_sop_sends_group_sent")

    op.drop_table("sop_sends")
    op.drop_table("rollup_state")
    with op.batch_alter_table("member_days", schema=None) as batch_op:
        batch_op.drop_index("ix_member_days_group_day")

    op.drop_table("member_days")
    op.drop_table("health_alerts")
    op.drop_table("health_scores")
    op.drop_table("group_hours")
    op.drop_table("group_days")
    op.drop_table("group_checks")
