"""one outbox: SOP sends and lottery posts and announcements are pushes too

A push may now be a photo, a reply, a text that shares a message with others alike (`combine`),
and carries what its owner needs once it went (`ref`: the SOP runs it answers). Private live
reminders and unpins were held by neither quiet hours nor the cap by their kind; that is now
the entry's own `urgent`.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-07 03:40:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("pushes", schema=None) as batch_op:
        batch_op.add_column(sa.Column("photo", sa.String(), nullable=True))
        batch_op.add_column(sa.Column("reply_to", sa.BigInteger(), nullable=True))
        batch_op.add_column(sa.Column("combine", sa.String(), nullable=True))
        batch_op.add_column(sa.Column("ref", sa.JSON(), nullable=True))
    op.execute(
        "UPDATE pushes SET urgent = true, counts = false"
        " WHERE kind IN ('live_private', 'live_unpin')"
    )


def downgrade() -> None:
    with op.batch_alter_table("pushes", schema=None) as batch_op:
        batch_op.drop_column("ref")
        batch_op.drop_column("combine")
        batch_op.drop_column("reply_to")
        batch_op.drop_column("photo")
