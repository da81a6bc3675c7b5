"""analysis records (resume and replay) and the time traffic was restored on rollback

Revision ID: 0003_analysis
Revises: 0002
Create Date: 2026-11-23
"""

import sqlalchemy as sa
from alembic import op

revision = "0003_analysis"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "analysis_records",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("deployment_id", sa.String(length=32), nullable=False),
        sa.Column("key", sa.String(length=32), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("at", sa.Double(), nullable=False),
        sa.Column("step_index", sa.Integer(), nullable=False),
        sa.Column("baseline", sa.JSON(), nullable=True),
        sa.Column("canary", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(["deployment_id"], ["deployments.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("analysis_records") as batch:
        batch.create_index("ix_analysis_records_deployment_id", ["deployment_id"], unique=False)
    with op.batch_alter_table("deployments") as batch:
        batch.add_column(sa.Column("traffic_restored_at", sa.Double(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("deployments") as batch:
        batch.drop_column("traffic_restored_at")
    with op.batch_alter_table("analysis_records") as batch:
        batch.drop_index("ix_analysis_records_deployment_id")
    op.drop_table("analysis_records")
