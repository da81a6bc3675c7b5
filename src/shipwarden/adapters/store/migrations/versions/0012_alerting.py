"""alerting (E8): alerts by fingerprint, groups with their notification log, the outbox, silences

Revision ID: 0012_alerting
Revises: 0011_access_generation
Create Date: 2026-12-03
"""

import sqlalchemy as sa
from alembic import op

revision = "0012_alerting"
down_revision = "0011_access_generation"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "alerting_alerts",
        sa.Column("fingerprint", sa.String(length=16), nullable=False),
        sa.Column("labels", sa.JSON(), nullable=False),
        sa.Column("annotations", sa.JSON(), nullable=False),
        sa.Column("state", sa.String(length=8), nullable=False),
        sa.Column("starts_at", sa.Double(), nullable=False),
        sa.Column("ends_at", sa.Double(), nullable=True),
        sa.Column("generator_url", sa.Text(), nullable=False),
        sa.Column("source", sa.String(length=32), nullable=False),
        sa.Column("updated_at", sa.Double(), nullable=False),
        sa.PrimaryKeyConstraint("fingerprint"),
    )
    op.create_index("ix_alerting_alerts_state", "alerting_alerts", ["state"])
    op.create_table(
        "alerting_groups",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("group_key", sa.Text(), nullable=False),
        sa.Column("receiver", sa.String(length=64), nullable=False),
        sa.Column("route_id", sa.String(length=255), nullable=False),
        sa.Column("group_labels", sa.JSON(), nullable=False),
        sa.Column("first_at", sa.Double(), nullable=False),
        sa.Column("last_flush_at", sa.Double(), nullable=True),
        sa.Column("next_flush_at", sa.Double(), nullable=True),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("firing", sa.JSON(), nullable=False),
        sa.Column("resolved", sa.JSON(), nullable=False),
        sa.Column("sent_at", sa.Double(), nullable=True),
        sa.Column("opened_at", sa.Double(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_alerting_groups_next_flush_at", "alerting_groups", ["next_flush_at"])
    op.create_table(
        "alerting_members",
        sa.Column("group_id", sa.String(length=32), nullable=False),
        sa.Column("fingerprint", sa.String(length=16), nullable=False),
        sa.ForeignKeyConstraint(["group_id"], ["alerting_groups.id"]),
        sa.PrimaryKeyConstraint("group_id", "fingerprint"),
    )
    op.create_index("ix_alerting_members_fingerprint", "alerting_members", ["fingerprint"])
    op.create_table(
        "alerting_outbox",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("notice_id", sa.String(length=200), nullable=False),
        sa.Column("target", sa.String(length=200), nullable=False),
        sa.Column("group_id", sa.String(length=32), nullable=True),
        sa.Column("receiver", sa.String(length=64), nullable=True),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.Double(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", sa.Double(), nullable=True),
        sa.Column("delivered_at", sa.Double(), nullable=True),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("notice_id", "target", name="uq_alerting_outbox_notice"),
    )
    op.create_index("ix_alerting_outbox_group_id", "alerting_outbox", ["group_id"])
    op.create_index("ix_alerting_outbox_next_attempt_at", "alerting_outbox", ["next_attempt_at"])
    op.create_table(
        "alerting_silences",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("matchers", sa.JSON(), nullable=False),
        sa.Column("owner", sa.String(length=128), nullable=False),
        sa.Column("comment", sa.Text(), nullable=False),
        sa.Column("starts_at", sa.Double(), nullable=False),
        sa.Column("ends_at", sa.Double(), nullable=False),
        sa.Column("created_at", sa.Double(), nullable=False),
        sa.Column("created_by", sa.String(length=256), nullable=False),
        sa.Column("expired_by", sa.String(length=256), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_alerting_silences_ends_at", "alerting_silences", ["ends_at"])


def downgrade() -> None:
    op.drop_table("alerting_silences")
    op.drop_table("alerting_outbox")
    op.drop_table("alerting_members")
    op.drop_table("alerting_groups")
    op.drop_table("alerting_alerts")
