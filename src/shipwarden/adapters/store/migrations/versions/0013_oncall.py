"""oncall (E8): escalations with their due times, the pages they sent, spent link nonces

An escalation's next step is a stored due time (``next_due``, indexed), so an engine that
restarts during a wait fires the step at that time; ``open_key`` is the alert group's key while
the escalation is open (NULL once resolved), unique, so one group never escalates twice.  Pages
are written in the step's transaction and delivered after it (``dedupe_key`` unique: once).

Revision ID: 0013_oncall
Revises: 0011_access_generation
Create Date: 2026-12-03
"""

import sqlalchemy as sa
from alembic import op

revision = "0013_oncall"
down_revision = "0017_deployment_list_indexes"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "oncall_escalations",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("group_key", sa.String(length=255), nullable=False),
        sa.Column("open_key", sa.String(length=255), nullable=True),
        sa.Column("service", sa.String(length=64), nullable=True),
        sa.Column("title", sa.String(length=200), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("snapshot", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("step", sa.Integer(), nullable=False),
        sa.Column("next_due", sa.Double(), nullable=True),
        sa.Column("opened_at", sa.Double(), nullable=False),
        sa.Column("acked_at", sa.Double(), nullable=True),
        sa.Column("acked_by", sa.String(length=256), nullable=True),
        sa.Column("resolved_at", sa.Double(), nullable=True),
        sa.Column("resolved_by", sa.String(length=256), nullable=True),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("open_key", name="uq_oncall_escalations_open_key"),
    )
    op.create_index("ix_oncall_escalations_next_due", "oncall_escalations", ["next_due"])
    op.create_index("ix_oncall_escalations_service", "oncall_escalations", ["service"])
    op.create_index("ix_oncall_escalations_opened_at", "oncall_escalations", ["opened_at"])
    op.create_table(
        "oncall_pages",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("escalation_id", sa.String(length=32), nullable=False),
        sa.Column("step", sa.Integer(), nullable=False),
        sa.Column("person", sa.String(length=128), nullable=True),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("address", sa.String(length=320), nullable=False),
        sa.Column("subject", sa.String(length=300), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("dedupe_key", sa.String(length=255), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.Double(), nullable=False),
        sa.Column("next_attempt_at", sa.Double(), nullable=True),
        sa.Column("sent_at", sa.Double(), nullable=True),
        sa.Column("detail", sa.String(length=500), nullable=False),
        sa.ForeignKeyConstraint(["escalation_id"], ["oncall_escalations.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("dedupe_key", name="uq_oncall_pages_dedupe_key"),
    )
    op.create_index("ix_oncall_pages_escalation_id", "oncall_pages", ["escalation_id"])
    op.create_index("ix_oncall_pages_next_attempt_at", "oncall_pages", ["next_attempt_at"])
    op.create_table(
        "oncall_link_nonces",
        sa.Column("nonce", sa.String(length=64), nullable=False),
        sa.Column("escalation_id", sa.String(length=32), nullable=False),
        sa.Column("used_at", sa.Double(), nullable=False),
        sa.PrimaryKeyConstraint("nonce"),
    )


def downgrade() -> None:
    op.drop_table("oncall_link_nonces")
    op.drop_index("ix_oncall_pages_next_attempt_at", table_name="oncall_pages")
    op.drop_index("ix_oncall_pages_escalation_id", table_name="oncall_pages")
    op.drop_table("oncall_pages")
    op.drop_index("ix_oncall_escalations_opened_at", table_name="oncall_escalations")
    op.drop_index("ix_oncall_escalations_service", table_name="oncall_escalations")
    op.drop_index("ix_oncall_escalations_next_due", table_name="oncall_escalations")
    op.drop_table("oncall_escalations")
