"""moderation: each group's mode, newcomers' approval, the moderation log, checks' verdicts

Members already in a group are approved ("before"): the first-message checks are for those who
join from now on.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-08 00:40:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BIGINT_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
WHEN = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "moderation_groups",
        sa.Column("chat_id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("mode", sa.String(), nullable=False),
        sa.Column("changed_at", WHEN, nullable=True),
        sa.Column("changed_by", sa.BigInteger(), nullable=True),
        sa.Column("summary_at", WHEN, nullable=True),
        sa.Column("rights_told_at", WHEN, nullable=True),
        sa.PrimaryKeyConstraint("chat_id"),
    )
    op.create_table(
        "moderation_members",
        sa.Column("chat_id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("user_id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("joined_at", WHEN, nullable=True),
        sa.Column("checked", sa.Integer(), nullable=False),
        sa.Column("approved_at", WHEN, nullable=True),
        sa.Column("approved_by", sa.String(), nullable=True),
        sa.PrimaryKeyConstraint("chat_id", "user_id"),
    )
    op.create_index("ix_moderation_members_pending", "moderation_members", ["approved_at"])
    op.create_table(
        "moderation_actions",
        sa.Column("id", BIGINT_ID, nullable=False),
        sa.Column("chat_id", sa.BigInteger(), nullable=False),
        sa.Column("user_id", sa.BigInteger(), nullable=True),
        sa.Column("action", sa.String(), nullable=False),
        sa.Column("by", sa.String(), nullable=False),
        sa.Column("reason", sa.String(), nullable=False),
        sa.Column("check", sa.String(), nullable=True),
        sa.Column("message_id", sa.Integer(), nullable=True),
        sa.Column("text", sa.String(), nullable=True),
        sa.Column("until", WHEN, nullable=True),
        sa.Column("dry", sa.Boolean(), nullable=False),
        sa.Column("ok", sa.Boolean(), nullable=False),
        sa.Column("error", sa.String(), nullable=True),
        sa.Column("at", WHEN, nullable=False),
        sa.Column("undone_at", WHEN, nullable=True),
        sa.Column("undone_by", sa.String(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_moderation_actions_chat", "moderation_actions", ["chat_id", "at"])
    op.create_index(
        "ix_moderation_actions_member", "moderation_actions", ["chat_id", "user_id", "action"]
    )
    op.create_table(
        "moderation_verdicts",
        sa.Column("id", BIGINT_ID, nullable=False),
        sa.Column("chat_id", sa.BigInteger(), nullable=False),
        sa.Column("user_id", sa.BigInteger(), nullable=False),
        sa.Column("message_id", sa.Integer(), nullable=False),
        sa.Column("at", WHEN, nullable=False),
        sa.Column("edited", sa.Boolean(), nullable=False),
        sa.Column("spam", sa.Boolean(), nullable=False),
        sa.Column("judgement", sa.JSON(), nullable=False),
        sa.Column("action_id", BIGINT_ID, nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_moderation_verdicts_chat", "moderation_verdicts", ["chat_id", "at"])
    op.create_table(
        "moderation_samples",
        sa.Column("id", BIGINT_ID, nullable=False),
        sa.Column("kind", sa.String(), nullable=False),
        sa.Column("text", sa.String(), nullable=False),
        sa.Column("chat_id", sa.BigInteger(), nullable=True),
        sa.Column("added_by", sa.BigInteger(), nullable=True),
        sa.Column("at", WHEN, nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.execute(
        "INSERT INTO moderation_members (chat_id, user_id, joined_at, checked, approved_at,"
        " approved_by) SELECT chat_id, user_id, joined_at, 0, CURRENT_TIMESTAMP, 'before'"
        " FROM members WHERE status IN ('creator', 'administrator', 'member', 'restricted')"
    )


def downgrade() -> None:
    op.drop_table("moderation_samples")
    op.drop_table("moderation_verdicts")
    op.drop_table("moderation_actions")
    op.drop_table("moderation_members")
    op.drop_table("moderation_groups")
