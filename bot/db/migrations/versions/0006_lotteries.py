"""lotteries, their entries and picks

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-23 20:59:58.998716
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "lotteries",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("chat_id", sa.BigInteger(), nullable=False),
        sa.Column("prize", sa.String(), nullable=False),
        sa.Column("winners", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(), nullable=False),
        sa.Column("rules", sa.JSON(), nullable=False),
        sa.Column("entry_cost", sa.Integer(), nullable=False),
        sa.Column("max_entries", sa.Integer(), nullable=True),
        sa.Column("entry_count", sa.Integer(), nullable=False),
        sa.Column("claim", sa.String(), nullable=False),
        sa.Column("seed", sa.String(), nullable=False),
        sa.Column("commitment", sa.String(), nullable=False),
        sa.Column("source", sa.String(), nullable=False),
        sa.Column("created_by", sa.BigInteger(), nullable=True),
        sa.Column("run_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("draws_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("message_id", sa.Integer(), nullable=True),
        sa.Column("drawn_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("entrants", sa.Integer(), nullable=True),
        sa.Column("entrants_digest", sa.String(), nullable=True),
        sa.Column("announced_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("announcement_id", sa.Integer(), nullable=True),
        sa.Column("closed_by", sa.BigInteger(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("lotteries", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_lotteries_chat_id"), ["chat_id"], unique=False)
        batch_op.create_index("ix_lotteries_due", ["status", "draws_at"], unique=False)

    op.create_table(
        "lottery_entries",
        sa.Column(
            "lottery_id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=False,
            nullable=False,
        ),
        sa.Column("user_id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("entered_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("cost", sa.Integer(), nullable=False),
        sa.Column("in_draw", sa.Boolean(), nullable=True),
        sa.Column("out_reason", sa.String(), nullable=True),
        sa.PrimaryKeyConstraint("lottery_id", "user_id"),
    )
    op.create_table(
        "lottery_picks",
        sa.Column(
            "lottery_id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=False,
            nullable=False,
        ),
        sa.Column("pick", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("user_id", sa.BigInteger(), nullable=False),
        sa.Column("outcome", sa.String(), nullable=False),
        sa.Column("reason", sa.String(), nullable=True),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("by", sa.BigInteger(), nullable=True),
        sa.Column("replaces", sa.Integer(), nullable=True),
        sa.PrimaryKeyConstraint("lottery_id", "pick"),
    )


def downgrade() -> None:
    op.drop_table("lottery_picks")
    op.drop_table("lottery_entries")
    with op.batch_alter_table("lotteries", schema=None) as batch_op:
        batch_op.drop_index("ix_lotteries_due")
        batch_op.drop_index(batch_op.f("ix_lotteries_chat_id"))

    op.drop_table("lotteries")
