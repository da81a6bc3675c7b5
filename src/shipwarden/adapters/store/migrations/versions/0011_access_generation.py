"""access_generation: one counter, bumped by every change that can alter a credential's verdict

Revoking a token and changing a user (roles, address allowlist, disabling, password, MFA) bump
it in the same transaction as the change.  ``serve`` keeps the API tokens it has verified in
memory, each with the generation it was read at; the group commit of access entries reads the
counter in the transaction that stores a request's access entry, and refuses to commit a
decision made from a cached token of another generation (the request is then judged again from
the database).  So a revocation takes effect for every request committed after it, in every
process, without a database read per request.

Revision ID: 0011_access_generation
Revises: 0010_incidents
Create Date: 2026-12-03
"""

import sqlalchemy as sa
from alembic import op

revision = "0011_access_generation"
down_revision = "0010_incidents"
branch_labels = None
depends_on = None


def upgrade() -> None:
    table = op.create_table(
        "access_generation",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("value", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.bulk_insert(table, [{"id": 1, "value": 0}])


def downgrade() -> None:
    op.drop_table("access_generation")
