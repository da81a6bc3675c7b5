"""audit_log: index service and deployment_id only where they are set (SQLite, PostgreSQL)

Kubernetes events — the bulk of the audit log — have neither a service nor a deployment, so
these two indexes held one NULL entry per event, paid for on every insert and never used: the
queries filter with ``service = ?`` / ``deployment_id = ?``, which imply ``IS NOT NULL``, so both
databases use the partial indexes for them.  MariaDB has no partial indexes; there the indexes
stay as they were.

Revision ID: 0005_audit_partial_indexes
Revises: 0004_audit_widths
Create Date: 2026-11-24
"""

import sqlalchemy as sa
from alembic import op

revision = "0005_audit_partial_indexes"
down_revision = "0004_audit_widths"
branch_labels = None
depends_on = None

_COLUMNS = ("service", "deployment_id")


def _partial() -> bool:
    return op.get_bind().dialect.name in ("sqlite", "postgresql")


def upgrade() -> None:
    if not _partial():
        return
    for col in _COLUMNS:
        where = sa.text(f"{col} IS NOT NULL")
        op.drop_index(f"ix_audit_log_{col}", table_name="audit_log")
        op.create_index(f"ix_audit_log_{col}", "audit_log", [col], sqlite_where=where, postgresql_where=where)


def downgrade() -> None:
    if not _partial():
        return
    for col in _COLUMNS:
        op.drop_index(f"ix_audit_log_{col}", table_name="audit_log")
        op.create_index(f"ix_audit_log_{col}", "audit_log", [col])
