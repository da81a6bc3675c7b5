"""audit widths: actor and action hold 256 characters, deployment_id 64, checkpoint key_id 128

Kubernetes user names (a service account's is up to 339 characters) and actions derived from
request URLs outgrew VARCHAR(128), which MariaDB and PostgreSQL refuse to exceed (SQLite does not
enforce lengths).  The Kubernetes converter now bounds both to 256 characters, keeping the whole
value in the entry's detail; these columns take everything domain.audit accepts.  A checkpoint's
key_id is the signing key's fingerprint, ``sha256:`` + 64 hex digits = 71 characters, which
VARCHAR(64) refused on MariaDB and PostgreSQL: no checkpoint could be stored there.

Revision ID: 0004_audit_widths
Revises: 0003_analysis
Create Date: 2026-11-24
"""

import sqlalchemy as sa
from alembic import op

revision = "0004_audit_widths"
down_revision = "0003_analysis"
branch_labels = None
depends_on = None

_WIDTHS = (
    # column, old, new, nullable
    ("actor", 128, 256, False),
    ("action", 128, 256, False),
    ("deployment_id", 32, 64, True),
)


def upgrade() -> None:
    with op.batch_alter_table("audit_log") as batch:
        for name, old, new, nullable in _WIDTHS:
            batch.alter_column(
                name,
                existing_type=sa.String(length=old),
                type_=sa.String(length=new),
                existing_nullable=nullable,
            )
    with op.batch_alter_table("audit_checkpoints") as batch:
        batch.alter_column(
            "key_id", existing_type=sa.String(length=64), type_=sa.String(length=128), existing_nullable=False
        )


def downgrade() -> None:
    # Fails on MariaDB/PostgreSQL if longer values were stored since: the chain must not be cut.
    with op.batch_alter_table("audit_checkpoints") as batch:
        batch.alter_column(
            "key_id", existing_type=sa.String(length=128), type_=sa.String(length=64), existing_nullable=False
        )
    with op.batch_alter_table("audit_log") as batch:
        for name, old, new, nullable in _WIDTHS:
            batch.alter_column(
                name,
                existing_type=sa.String(length=new),
                type_=sa.String(length=old),
                existing_nullable=nullable,
            )
