"""disaster recovery: backup catalogue, restore verifications, drills, current topology

Revision ID: 0009_dr_catalogue
Revises: 0008_audit_checkpoint_chain
Create Date: 2026-12-03
"""

import sqlalchemy as sa
from alembic import op

revision = "0009_dr_catalogue"
down_revision = "0008_audit_checkpoint_chain"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "dr_backups",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("service", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("created_at", sa.Double(), nullable=False),
        sa.Column("finished_at", sa.Double(), nullable=True),
        sa.Column("source", sa.String(length=256), nullable=False),
        sa.Column("location", sa.String(length=512), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("raw_size", sa.BigInteger(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("key_id", sa.String(length=64), nullable=False),
        sa.Column("gtid", sa.Text(), nullable=False),
        sa.Column("gtid_end", sa.Text(), nullable=False),
        sa.Column("binlog_file", sa.String(length=128), nullable=True),
        sa.Column("binlog_pos", sa.BigInteger(), nullable=True),
        sa.Column("detail", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_dr_backups_service", "dr_backups", ["service"])
    op.create_table(
        "dr_verifications",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("service", sa.String(length=64), nullable=False),
        sa.Column("backup_id", sa.String(length=32), nullable=False),
        sa.Column("started_at", sa.Double(), nullable=False),
        sa.Column("finished_at", sa.Double(), nullable=False),
        sa.Column("ok", sa.Boolean(), nullable=False),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.Column("tables", sa.Integer(), nullable=False),
        sa.Column("mismatches", sa.JSON(), nullable=False),
        sa.Column("gtid", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_dr_verifications_service", "dr_verifications", ["service"])
    op.create_table(
        "dr_drills",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("service", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("started_at", sa.Double(), nullable=False),
        sa.Column("finished_at", sa.Double(), nullable=False),
        sa.Column("passed", sa.Boolean(), nullable=False),
        sa.Column("rto_s", sa.Double(), nullable=True),
        sa.Column("rpo_lost", sa.Integer(), nullable=True),
        sa.Column("report", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_dr_drills_service", "dr_drills", ["service"])
    op.create_table(
        "dr_topology",
        sa.Column("service", sa.String(length=64), nullable=False),
        sa.Column("primary_endpoint", sa.String(length=256), nullable=False),
        sa.Column("replicas", sa.JSON(), nullable=False),
        sa.Column("fenced", sa.JSON(), nullable=False),
        sa.Column("epoch", sa.Integer(), nullable=False),
        sa.Column("updated_at", sa.Double(), nullable=False),
        sa.PrimaryKeyConstraint("service"),
    )


def downgrade() -> None:
    op.drop_table("dr_topology")
    op.drop_index("ix_dr_drills_service", table_name="dr_drills")
    op.drop_table("dr_drills")
    op.drop_index("ix_dr_verifications_service", table_name="dr_verifications")
    op.drop_table("dr_verifications")
    op.drop_index("ix_dr_backups_service", table_name="dr_backups")
    op.drop_table("dr_backups")
