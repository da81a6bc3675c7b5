"""webhook_deliveries: the sha256 of each accepted body, unique per provider (replay guard)

GitHub signs neither a timestamp nor the delivery id, so a captured signed body could be sent
again under a new ``X-GitHub-Delivery`` and be accepted as new.  The digest of every accepted
body is kept beside its delivery id, and a unique index refuses a second row with the same
digest even when two copies race.  Rows accepted before this revision have no digest (NULL is
never equal to anything, so they do not collide).

Revision ID: 0007_webhook_body_digest
Revises: 0006_auth_throttle
Create Date: 2026-11-25
"""

import sqlalchemy as sa
from alembic import op

revision = "0007_webhook_body_digest"
down_revision = "0006_auth_throttle"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("webhook_deliveries", schema=None) as batch_op:
        batch_op.add_column(sa.Column("body_sha256", sa.String(length=64), nullable=True))
        batch_op.create_index("ux_webhook_deliveries_body", ["provider", "body_sha256"], unique=True)


def downgrade() -> None:
    with op.batch_alter_table("webhook_deliveries", schema=None) as batch_op:
        batch_op.drop_index("ux_webhook_deliveries_body")
        batch_op.drop_column("body_sha256")
