"""oncall (E8): overrides made from the CLI/API, and calendar feed tokens

``oncall_overrides``: an override of a schedule made by a person (``shipwarden oncall override
add``), beside the policy's own; removing one keeps the row (``removed_at``), so the answer to
"who was on call at T" stays reproducible.  ``oncall_feed_tokens``: a per-person calendar feed
URL's token, stored as its SHA-256 only; revoked by ``revoked_at``.

Revision ID: 0018_ops13
Revises: 0016_zones
Create Date: 2026-12-03
"""

import sqlalchemy as sa
from alembic import op

revision = "0018_ops13"
down_revision = "0016_zones"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "oncall_overrides",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("schedule", sa.String(length=64), nullable=False),
        sa.Column("person", sa.String(length=128), nullable=False),
        sa.Column("start_at", sa.Double(), nullable=False),
        sa.Column("end_at", sa.Double(), nullable=False),
        sa.Column("reason", sa.String(length=500), nullable=False),
        sa.Column("created_at", sa.Double(), nullable=False),
        sa.Column("created_by", sa.String(length=256), nullable=False),
        sa.Column("removed_at", sa.Double(), nullable=True),
        sa.Column("removed_by", sa.String(length=256), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_oncall_overrides_schedule", "oncall_overrides", ["schedule"])
    op.create_table(
        "oncall_feed_tokens",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("person", sa.String(length=128), nullable=False),
        sa.Column("secret_sha256", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.Double(), nullable=False),
        sa.Column("created_by", sa.String(length=256), nullable=False),
        sa.Column("revoked_at", sa.Double(), nullable=True),
        sa.Column("revoked_by", sa.String(length=256), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )


def downgrade() -> None:
    op.drop_table("oncall_feed_tokens")
    op.drop_index("ix_oncall_overrides_schedule", table_name="oncall_overrides")
    op.drop_table("oncall_overrides")
