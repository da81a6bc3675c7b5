"""audit checkpoints chain: entries, prev (unique) and every on each checkpoint

A checkpoint now signs the entry count, the digest of the checkpoint before it and the interval
within which the next one is due (``domain.audit.checkpoints``, format v2), so deleting
checkpoints is found.  Existing rows stay as they are (v1: the three columns NULL) and verify as
before.  ``prev`` is unique: one successor per checkpoint, so concurrent signers cannot fork it.

Revision ID: 0008_audit_checkpoint_chain
Revises: 0007_webhook_body_digest
Create Date: 2026-12-01
"""

import sqlalchemy as sa
from alembic import op

revision = "0008_audit_checkpoint_chain"
down_revision = "0007_webhook_body_digest"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("audit_checkpoints") as batch:
        big = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
        batch.add_column(sa.Column("entries", big, nullable=True))
        batch.add_column(sa.Column("prev", sa.String(length=64), nullable=True))
        batch.add_column(sa.Column("every", sa.Integer(), nullable=True))
        batch.create_unique_constraint("uq_audit_checkpoints_prev", ["prev"])


def downgrade() -> None:
    # Dropping the columns would leave v2 rows whose signatures no longer verify: refuse if any exist.
    bind = op.get_bind()
    if bind.execute(sa.text("SELECT COUNT(*) FROM audit_checkpoints WHERE prev IS NOT NULL")).scalar():
        raise RuntimeError("chained (v2) checkpoints exist: downgrading would make them unverifiable")
    with op.batch_alter_table("audit_checkpoints") as batch:
        batch.drop_constraint("uq_audit_checkpoints_prev", type_="unique")
        batch.drop_column("every")
        batch.drop_column("prev")
        batch.drop_column("entries")
