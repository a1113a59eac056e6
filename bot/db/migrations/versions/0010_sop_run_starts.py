"""SOP run starts: the runs of an SOP per member are indexed with when they started

A trigger's `cooldown` reads the last start of an SOP for a member (or a group); the index on
(sop, chat, member) gains `created_at`, so that read is one seek. It replaces the old index,
whose queries it serves as well.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-07 15:10:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("sop_runs", schema=None) as batch_op:
        batch_op.create_index(
            "ix_sop_runs_started", ["sop_id", "chat_id", "user_id", "created_at"], unique=False
        )
        batch_op.drop_index("ix_sop_runs_who")


def downgrade() -> None:
    with op.batch_alter_table("sop_runs", schema=None) as batch_op:
        batch_op.create_index("ix_sop_runs_who", ["sop_id", "chat_id", "user_id"], unique=False)
        batch_op.drop_index("ix_sop_runs_started")
