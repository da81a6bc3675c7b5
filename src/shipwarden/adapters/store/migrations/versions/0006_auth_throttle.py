"""auth_throttle: one lockable row per lockout key (``user:NAME``, ``mfa:NAME``, ``ip:ADDRESS``)

A login (or second-factor) attempt locks its keys' rows, counts their recent attempts in
``auth_failures`` and, when the lockout rule allows one more, records the attempt there before
the password is checked — all in one transaction.  Concurrent attempts on the same key thus
queue on the row instead of all reading "not locked yet".

Revision ID: 0006_auth_throttle
Revises: 0005_audit_partial_indexes
Create Date: 2026-12-01
"""

import sqlalchemy as sa
from alembic import op

revision = "0006_auth_throttle"
down_revision = "0005_audit_partial_indexes"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "auth_throttle",
        sa.Column("key", sa.String(length=160), nullable=False),
        sa.Column("attempts", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("key"),
    )


def downgrade() -> None:
    op.drop_table("auth_throttle")
