"""check-ins (one row per member and day, holding the streak) and points balances

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-23 18:29:23.403618
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "points_balances",
        sa.Column("chat_id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("user_id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("balance", sa.Integer(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("balance >= 0", name="ck_points_balances_not_negative"),
        sa.PrimaryKeyConstraint("chat_id", "user_id"),
    )
    # Balances of the points awarded so far (a sum below zero, which the SOP engine never
    # allowed, would be kept as 0: the ledger keeps every row either way).
    op.execute(
        "INSERT INTO points_balances (chat_id, user_id, balance, updated_at) "
        "SELECT chat_id, user_id, CASE WHEN SUM(delta) > 0 THEN SUM(delta) ELSE 0 END, MAX(at) "
        "FROM points_ledger GROUP BY chat_id, user_id"
    )
    op.create_table(
        "checkins",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("chat_id", sa.BigInteger(), nullable=False),
        sa.Column("user_id", sa.BigInteger(), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("streak", sa.Integer(), nullable=False),
        sa.Column("frozen", sa.Integer(), nullable=False),
        sa.Column("points", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("chat_id", "user_id", "day", name="uq_checkins_member_day"),
    )
    with op.batch_alter_table("checkins", schema=None) as batch_op:
        batch_op.create_index("ix_checkins_group_day", ["chat_id", "day"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("checkins", schema=None) as batch_op:
        batch_op.drop_index("ix_checkins_group_day")

    op.drop_table("checkins")
    op.drop_table("points_balances")
