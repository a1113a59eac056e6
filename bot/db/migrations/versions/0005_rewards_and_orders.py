"""check-ins remember the SOP run that made them; reward stock and orders

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-23 19:29:55.578954
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "orders",
        sa.Column("id", ID, nullable=False),
        sa.Column("chat_id", sa.BigInteger(), nullable=False),
        sa.Column("user_id", sa.BigInteger(), nullable=False),
        sa.Column("reward_id", sa.String(), nullable=False),
        sa.Column("reward_name", sa.String(), nullable=False),
        sa.Column("cost", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("closed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("closed_by", sa.BigInteger(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("orders", schema=None) as batch_op:
        batch_op.create_index("ix_orders_group_status", ["chat_id", "status"], unique=False)
        batch_op.create_index("ix_orders_reward_member", ["reward_id", "user_id"], unique=False)

    op.create_table(
        "reward_stock",
        sa.Column("reward_id", sa.String(), nullable=False),
        sa.Column("taken", sa.Integer(), nullable=False),
        sa.CheckConstraint("taken >= 0", name="ck_reward_stock_not_negative"),
        sa.PrimaryKeyConstraint("reward_id"),
    )
    with op.batch_alter_table("checkins", schema=None) as batch_op:
        batch_op.add_column(sa.Column("run_id", ID, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("checkins", schema=None) as batch_op:
        batch_op.drop_column("run_id")

    op.drop_table("reward_stock")
    with op.batch_alter_table("orders", schema=None) as batch_op:
        batch_op.drop_index("ix_orders_reward_member")
        batch_op.drop_index("ix_orders_group_status")

    op.drop_table("orders")
